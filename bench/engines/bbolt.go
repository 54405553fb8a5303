package main

import (
	"errors"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bOps    = []byte("ops")
	bBodies = []byte("bodies")
	bQueue  = []byte("queue")
)

type boltEngine struct{ db *bolt.DB }

func openBolt(maxBatch int, delay time.Duration) func(string) (Engine, error) {
	return func(dir string) (Engine, error) {
		e, err := openBoltDB(dir)
		if err != nil {
			return nil, err
		}
		e.db.MaxBatchSize = maxBatch
		e.db.MaxBatchDelay = delay
		return e, nil
	}
}

func openBoltDB(dir string) (*boltEngine, error) {
	// NoSync stays false: every commit fdatasyncs the data pages and then
	// the meta page.
	db, err := bolt.Open(filepath.Join(dir, "arr.db"), 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bOps, bBodies, bQueue} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltEngine{db: db}, nil
}

func boltPut(tx *bolt.Tx, s *Sub) error {
	if err := tx.Bucket(bOps).Put(s.ID[:], s.Op); err != nil {
		return err
	}
	if err := tx.Bucket(bBodies).Put(s.ID[:], s.Body); err != nil {
		return err
	}
	return tx.Bucket(bQueue).Put(s.QKey, s.QVal)
}

func (e *boltEngine) Submit(s *Sub) error {
	// db.Batch coalesces concurrent calls into one read-write transaction
	// (one commit = data fdatasync + meta fdatasync) and returns after it.
	return e.db.Batch(func(tx *bolt.Tx) error { return boltPut(tx, s) })
}

func (e *boltEngine) Get(id []byte) (n int, err error) {
	err = e.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bOps).Get(id)
		if v == nil {
			return errors.New("not found")
		}
		n = len(v)
		return nil
	})
	return
}

func (e *boltEngine) Close() error { return e.db.Close() }

func (e *boltEngine) firstQueued() (n int, err error) {
	err = e.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bQueue).Cursor().First()
		if k == nil {
			return errors.New("queue empty")
		}
		n = len(k)
		return nil
	})
	return
}

func (e *boltEngine) bulkLoad(subs []*Sub) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		for _, s := range subs {
			if err := boltPut(tx, s); err != nil {
				return err
			}
		}
		return nil
	})
}

// boltGroup uses the same application-level group commit as the SQLite
// configuration (one writer goroutine, one db.Update per group) instead of
// db.Batch, for comparison.
type boltGroup struct {
	*boltEngine
	gc *groupCommitter
}

func openBoltGroup(dir string) (Engine, error) {
	e, err := openBoltDB(dir)
	if err != nil {
		return nil, err
	}
	g := &boltGroup{boltEngine: e}
	g.gc = newGroupCommitter(e.bulkLoad)
	return g, nil
}

func (g *boltGroup) Submit(s *Sub) error { return g.gc.submit(s) }
func (g *boltGroup) Close() error {
	g.gc.close()
	return g.boltEngine.Close()
}

// dequeueHead deletes the n earliest queue entries, 1,000 per transaction.
func (e *boltEngine) dequeueHead(n int) error {
	for n > 0 {
		k := min(n, 1000)
		n -= k
		err := e.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bQueue)
			c := b.Cursor()
			for i := 0; i < k; i++ {
				key, _ := c.First()
				if key == nil {
					return errors.New("queue empty")
				}
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// dequeueOne takes the earliest queue entry and deletes it (one synced
// transaction).
func (e *boltEngine) dequeueOne() error { return e.dequeueHead(1) }
