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
	mu sync.Mutex
	m  map[string]*operation.Operation // immutable values; cloned out
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
// committed record, evicting an arbitrary entry when full.
func (c *opCache) put(op *operation.Operation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*operation.Operation, opCacheSize)
	}
	if _, ok := c.m[op.ID]; !ok && len(c.m) >= opCacheSize {
		for k := range c.m { // map iteration starts at a random entry
			delete(c.m, k)
			break
		}
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
