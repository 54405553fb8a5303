package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/arrhq/arr/internal/pgtest"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// TestLazyWritesCommitAsynchronously checks that UpdateLazy's and
// AckLazy's statements turn synchronous_commit off for their own
// transaction only, and that Update's and Ack's leave it alone.
func TestLazyWritesCommitAsynchronously(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openT(t, pgtest.URL(t)+"&pool_max_conns=1")
	s, q := db.Store(), db.Queue()
	defer s.Close()
	defer q.Close()
	var def string
	if err := db.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if def == "off" {
		t.Skip("the server's synchronous_commit is off")
	}

	op, _, err := s.Create(ctx, testOp(), nil)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := encodeOp(op)
	if err != nil {
		t.Fatal(err)
	}
	inTx := func(sql string, args pgx.NamedArgs) string {
		t.Helper()
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, sql, args); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := tx.QueryRow(ctx, "SHOW synchronous_commit").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	upd := pgx.NamedArgs{"id": op.ID, "version": int64(1), "status": string(op.Status), "expires": nil, "tombstone": nil, "doc": doc, "ops_chan": db.opsChan}
	if got := inTx(db.sql.updateLazy, upd); got != "off" {
		t.Errorf("synchronous_commit in UpdateLazy's transaction = %q, want off", got)
	}
	if got := inTx(db.sql.update, upd); got != def {
		t.Errorf("synchronous_commit in Update's transaction = %q, want %q", got, def)
	}
	if err := q.Enqueue(ctx, qdriver.Message{ID: "m1"}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ack := pgx.NamedArgs{"id": "m1", "token": ds[0].(*delivery).token}
	if got := inTx(db.sql.ackLazy, ack); got != "off" {
		t.Errorf("synchronous_commit in AckLazy's transaction = %q, want off", got)
	}
	if got := inTx(db.sql.ack, ack); got != def {
		t.Errorf("synchronous_commit in Ack's transaction = %q, want %q", got, def)
	}

	// Through the API, on the pool's one connection: the setting does not
	// outlive the lazy write's transaction.
	if err := s.UpdateLazy(ctx, op); err != nil {
		t.Fatal(err)
	}
	if err := ds[0].(qdriver.LazyAcker).AckLazy(ctx); err != nil {
		t.Fatal(err)
	}
	var after string
	if err := db.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != def {
		t.Fatalf("synchronous_commit after lazy writes = %q, want %q: the setting leaked into the pooled session", after, def)
	}
}

// TestSyncFlushesLazyWrites checks that the WAL is flushed past a lazy
// write's commit record when Sync returns. (The WAL writer may flush it
// first, so a Sync that flushes nothing could pass a round by chance, but
// hardly twenty: without a WAL record of its own, as with SELECT
// pg_current_xact_id(), about a third of the rounds fail on an idle
// server.)
func TestSyncFlushesLazyWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := openT(t, pgtest.URL(t))
	s := db.Store()
	defer s.Close()
	op, _, err := s.Create(ctx, testOp(), nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.pool.Acquire(ctx) // the LSNs, read on another connection
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for i := range 20 {
		op.PercentComplete = i
		if err := s.UpdateLazy(ctx, op); err != nil {
			t.Fatal(err)
		}
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		var flushed bool
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn", lsn).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
		if !flushed {
			t.Fatalf("round %d: the WAL is not flushed to %s, past the lazy write, after Sync", i, lsn)
		}
	}
}

// TestLazyUpdateNotifies checks that a lazy write wakes watchers, as a
// durable one does.
func TestLazyUpdateNotifies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openT(t, pgtest.URL(t))
	s := db.Store()
	defer s.Close()
	op, _, err := s.Create(ctx, testOp(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, stop, err := s.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	op.Message = "lazy"
	if err := s.UpdateLazy(ctx, op); err != nil {
		t.Fatal(err)
	}
	expectWake(t, "UpdateLazy", ch, 5*time.Second)
}
