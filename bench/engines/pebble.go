package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

type pebbleEngine struct{ db *pebble.DB }

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	fatalf("pebble: "+format, args...)
}

func pebbleOptions() *pebble.Options {
	// Defaults except for the newest on-disk format and a quiet logger. The
	// WAL is on and every submission commits with pebble.Sync.
	return &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	}
}

// pebbleTuning is a departure from Pebble's defaults: a bigger block cache,
// bloom filters on every level (Pebble has none by default), a bigger
// memtable (fewer flushes and L0 files, but bigger WAL files and replay).
type pebbleTuning struct {
	cacheBytes    int64
	bloom         bool
	memTableBytes uint64
}

// pebbleTunings are the Pebble configurations by name. Pebble charges
// memtables to the block cache: with 64 MiB memtables a 128 MiB cache is
// fully reserved and reads miss every time, hence 256 MiB for pebble-tuned.
var pebbleTunings = map[string]pebbleTuning{
	"pebble":       {},
	"pebble-cb":    {cacheBytes: 128 << 20, bloom: true},
	"pebble-tuned": {cacheBytes: 256 << 20, bloom: true, memTableBytes: 64 << 20},
}

func (t pebbleTuning) options() *pebble.Options {
	o := pebbleOptions()
	if t.cacheBytes > 0 {
		o.Cache = pebble.NewCache(t.cacheBytes)
	}
	if t.bloom {
		for i := range o.Levels {
			o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		}
	}
	if t.memTableBytes > 0 {
		o.MemTableSize = t.memTableBytes
	}
	return o
}

func openPebbleWith(t pebbleTuning) func(string) (Engine, error) {
	return func(dir string) (Engine, error) {
		db, err := openPebbleDB(dir, t)
		if err != nil {
			return nil, err
		}
		return &pebbleEngine{db: db}, nil
	}
}

func openPebbleDB(dir string, t pebbleTuning) (*pebble.DB, error) {
	o := t.options()
	db, err := pebble.Open(dir, o)
	if o.Cache != nil {
		o.Cache.Unref() // the DB holds its own reference
	}
	return db, err
}

func (e *pebbleEngine) Submit(s *Sub) error {
	b := e.db.NewBatch()
	defer b.Close()
	b.Set(s.PKOp, s.Op, nil)
	b.Set(s.PKBody, s.Body, nil)
	b.Set(s.PKQ, s.QVal, nil)
	// Concurrent synced commits share WAL fsyncs in Pebble's commit pipeline.
	return b.Commit(pebble.Sync)
}

func (e *pebbleEngine) Get(id []byte) (int, error) {
	var k [17]byte
	k[0] = 'o'
	copy(k[1:], id)
	v, closer, err := e.db.Get(k[:])
	if err != nil {
		return 0, err
	}
	n := len(v)
	return n, closer.Close()
}

func (e *pebbleEngine) Close() error { return e.db.Close() }

// firstQueued opens an iterator over the queue prefix and returns the
// earliest entry's key length (what a dequeuer does first after open).
func (e *pebbleEngine) firstQueued() (int, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'q'}, UpperBound: []byte{'r'}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		return 0, errors.New("queue empty")
	}
	return len(it.Key()), nil
}

func (e *pebbleEngine) bulkLoad(subs []*Sub) error {
	b := e.db.NewBatch()
	defer b.Close()
	for _, s := range subs {
		b.Set(s.PKOp, s.Op, nil)
		b.Set(s.PKBody, s.Body, nil)
		b.Set(s.PKQ, s.QVal, nil)
	}
	return b.Commit(pebble.Sync)
}

// settle waits (up to a minute) until no flush or compaction is running, so
// that the CPU they cost is charged to the writes that caused them and the
// read phase runs on a quiescent store.
func (e *pebbleEngine) settle() {
	deadline := time.Now().Add(time.Minute)
	quiet := 0
	for quiet < 3 && time.Now().Before(deadline) {
		m := e.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dequeueHead deletes the n earliest queue entries, 1,000 per synced batch
// (what workers leave behind after taking them).
func (e *pebbleEngine) dequeueHead(n int) error {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'q'}, UpperBound: []byte{'r'}})
	if err != nil {
		return err
	}
	defer it.Close()
	b := e.db.NewBatch()
	i := 0
	for valid := it.First(); valid && i < n; valid = it.Next() {
		b.Delete(it.Key(), nil)
		if i++; i%1000 == 0 {
			if err := b.Commit(pebble.Sync); err != nil {
				return err
			}
			b.Close()
			b = e.db.NewBatch()
		}
	}
	defer b.Close()
	return b.Commit(pebble.Sync)
}

// dequeueOne takes the earliest queue entry and deletes it (synced).
func (e *pebbleEngine) dequeueOne() error {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'q'}, UpperBound: []byte{'r'}})
	if err != nil {
		return err
	}
	if !it.First() {
		it.Close()
		return errors.New("queue empty")
	}
	k := slices.Clone(it.Key())
	if err := it.Close(); err != nil {
		return err
	}
	return e.db.Delete(k, pebble.Sync)
}
