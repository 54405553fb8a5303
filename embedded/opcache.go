package embedded

import (
	"sync"

	"github.com/arrhq/arr/operation"
)

// opCacheSize bounds the operations opCache holds (about 1 KiB each).
const opCacheSize = 8192

// opCache holds the latest record of recently written operations, so that
// the reads that follow a write (the worker's next transition, clients
// polling the status) skip Pebble's read path and the record's decoding.
//
// It is coherent with the DB because only writers fill it, holding the
// operation's stripe lock: they remove the entry before committing and put
// the written record after. A read therefore finds either nothing (and
// reads Pebble) or the latest committed record; it never sees a record
// older than one another read has already returned.
type opCache struct {
	mu   sync.Mutex
	m    map[string]*operation.Operation // immutable values; cloned out
	ring []string                        // ids in insertion order, for eviction
	hand int                             // next ring slot to evict and fill
}

func (c *opCache) get(id string) (*operation.Operation, bool) {
	c.mu.Lock()
	op, ok := c.m[id]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return op.Clone(), true
}

// put records op (which the caller no longer changes) as id's latest
// committed record. A new id takes the ring's next slot and evicts the id
// that was there (first in, first out). Every id in the map went into the
// ring when it was added and leaves the map when its slot is reused, so the
// map never holds more than opCacheSize entries. (Evicting by ranging over
// the map was 2.6% of a submit's CPU: a Go map's iterator start costs more
// as deletions accumulate.)
func (c *opCache) put(op *operation.Operation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*operation.Operation, opCacheSize)
		c.ring = make([]string, opCacheSize)
	}
	if _, ok := c.m[op.ID]; !ok {
		if old := c.ring[c.hand]; old != "" {
			delete(c.m, old) // perhaps already gone, or re-added since: a miss, never a wrong answer
		}
		c.ring[c.hand] = op.ID
		c.hand = (c.hand + 1) % len(c.ring)
	}
	c.m[op.ID] = op
}

func (c *opCache) del(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// latestOp is getOp of the DB's current state, from the cache when it
// holds the operation.
func (db *DB) latestOp(id string) (*operation.Operation, error) {
	if op, ok := db.ops.get(id); ok {
		return op, nil
	}
	return getOp(db.pdb, id)
}
