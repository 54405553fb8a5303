package embedded

import (
	"sync"

	"github.com/arrhq/arr/operation"
)

// opCacheSize bounds the operations opCache holds.
const opCacheSize = 8192

// DefaultOpCacheBytes is the default of Options.OpCacheBytes.
const DefaultOpCacheBytes = 8 << 20

// opEntryOverhead is what an entry costs beyond its encoded record: the
// map entry, the ring slot, the Operation's struct and its string
// headers (an estimate; the decoded record's strings hold about the
// encoded record's bytes).
const opEntryOverhead = 512

// opCache holds the latest record of recently written operations, so that
// the reads that follow a write (the worker's next transition, clients
// polling the status) skip Pebble's read path and the record's decoding.
// It holds at most opCacheSize entries and about maxBytes bytes (each
// entry counted as its encoded record plus opEntryOverhead); a record
// larger than a 64th of maxBytes is not cached at all, so that a few large
// records (long attempt histories, big problem details) cannot evict all
// the others or hold much memory.
//
// It is coherent with the DB because only writers fill it, holding the
// operation's stripe lock: they remove the entry before committing and put
// the written record after. A read therefore finds either nothing (and
// reads Pebble) or the latest committed record; it never sees a record
// older than one another read has already returned.
type opCache struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64                  // sum of the sizes of the entries
	m        map[string]opCacheItem // every id in the ring, once
	ring     []string               // ids in insertion order, oldest at head
	head, n  int
}

// opCacheItem is an entry: op is nil when the id is in the ring but its
// record is not cached (removed by del, or too large).
type opCacheItem struct {
	op   *operation.Operation // immutable; cloned out
	size int64
}

func (c *opCache) get(id string) (*operation.Operation, bool) {
	c.mu.Lock()
	e := c.m[id]
	c.mu.Unlock()
	if e.op == nil {
		return nil, false
	}
	return e.op.Clone(), true
}

// put records op (which the caller no longer changes), whose encoded
// record has recLen bytes, as id's latest committed record. A new id takes
// the ring's next slot; the oldest ids are evicted (first in, first out)
// while the cache holds more than opCacheSize ids or maxBytes bytes. An
// id stays in the ring once, from its put to its eviction, whatever del
// does meanwhile, so the ring never holds stale duplicates. (Evicting by
// ranging over the map was 2.6% of a submit's CPU: a Go map's iterator
// start costs more as deletions accumulate.)
func (c *opCache) put(op *operation.Operation, recLen int) {
	size := int64(recLen) + opEntryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		if c.maxBytes <= 0 {
			c.maxBytes = DefaultOpCacheBytes
		}
		c.m = make(map[string]opCacheItem)
		c.ring = make([]string, opCacheSize)
	}
	id := op.ID
	if size > c.maxBytes/64 {
		op, size = nil, 0 // too large to cache: a miss reads Pebble
	}
	if e, ok := c.m[id]; ok {
		c.bytes += size - e.size
		c.m[id] = opCacheItem{op: op, size: size}
	} else {
		if c.n == len(c.ring) {
			c.evictOldest()
		}
		c.ring[(c.head+c.n)%len(c.ring)] = id
		c.n++
		c.m[id] = opCacheItem{op: op, size: size}
		c.bytes += size
	}
	for c.bytes > c.maxBytes && c.n > 0 {
		c.evictOldest()
	}
}

// evictOldest removes the oldest id of the ring and its entry.
func (c *opCache) evictOldest() {
	id := c.ring[c.head]
	c.ring[c.head] = ""
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	c.bytes -= c.m[id].size
	delete(c.m, id)
}

// del forgets id's record (its ring slot stays until evicted).
func (c *opCache) del(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		c.bytes -= e.size
		c.m[id] = opCacheItem{}
	}
}

// latestOp is getOp of the DB's current state, from the cache when it
// holds the operation.
func (db *DB) latestOp(id string) (*operation.Operation, error) {
	if op, ok := db.ops.get(id); ok {
		return op, nil
	}
	return getOp(db.pdb, id)
}
