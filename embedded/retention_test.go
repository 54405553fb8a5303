package embedded

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// Under a steady load of operations that are submitted, run, finished,
// expire and are deleted (with their requests, results, queue entries and,
// later, tombstones), the database holds only the live ones: its key count
// and, once compacted, its disk use stay flat from round to round instead
// of growing with the total.
func TestSteadyLoadStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few thousand operations")
	}
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, q := db.Store().(*store), db.Queue()
	res := &Results{db: db}
	body := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB, like the benchmarks'
	const rounds, perRound = 12, 400
	var keys []int
	var disk []uint64
	for round := range rounds {
		now := time.Now().UTC()
		for i := range perRound {
			id := fmt.Sprintf("%08d-%04d", round, i)
			op := &operation.Operation{ID: id, Route: "r", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
			if _, _, err := st.SubmitAtomic(ctx, op, &operation.Request{Method: "POST", Body: body}, qdriver.Message{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		ds, err := q.Receive(ctx, perRound, time.Minute)
		if err != nil || len(ds) != perRound {
			t.Fatalf("receive: %d, %v", len(ds), err)
		}
		for _, d := range ds {
			id := d.Message().ID
			if _, err := res.Put(ctx, id, bytes.NewReader(body), "text/plain"); err != nil {
				t.Fatal(err)
			}
			// Finished, already past its retention; its tombstone lasts
			// a second: a few rounds.
			if _, err := st.TransitionOp(ctx, id, func(o *operation.Operation) error {
				o.Status, o.Result = operation.Succeeded, &operation.Result{Key: id, Size: int64(len(body))}
				o.ExpiresAt, o.TombstoneUntil = now.Add(-time.Second), time.Now().Add(time.Second)
				return nil
			}, false); err != nil {
				t.Fatal(err)
			}
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// The janitor's pass: expired operations, then their results.
		for {
			gone, err := st.DeleteExpired(ctx, time.Now(), 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range gone {
				if err := res.Delete(ctx, op.Result.Key); err != nil {
					t.Fatal(err)
				}
			}
			if len(gone) < 1000 {
				break
			}
		}
		time.Sleep(75 * time.Millisecond)
		if err := db.pdb.Compact(ctx, []byte{0}, []byte{0xff, 0xff}, true); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, allKeys(t, db))
		disk = append(disk, db.pdb.Metrics().DiskSpaceUsage())
	}
	t.Logf("keys per round %v; disk per round %v", keys, disk)
	// Only tombstones (and their index) of the rounds of the last second
	// remain: 2 keys each.
	maxKeys := 0
	for _, k := range keys {
		maxKeys = max(maxKeys, k)
	}
	if maxKeys < 2*perRound || maxKeys > 2*perRound*rounds/2 {
		t.Fatalf("keys left per round %v: want the tombstones of the last second, no more", keys)
	}
	// Disk use levels off (the WAL and blob files reach their steady
	// size): the second half of the rounds adds less than 512 KiB, where
	// the data written in it is over 2 MiB.
	if mid, last := disk[rounds/2], disk[rounds-1]; last > mid+512<<10 {
		t.Fatalf("disk use grew from %d to %d bytes in the second half of a steady load", mid, last)
	}
}

func allKeys(t *testing.T, db *DB) int {
	t.Helper()
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}
