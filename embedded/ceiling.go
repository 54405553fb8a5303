package embedded

import (
	"bytes"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// ceiling is an upper bound of the keys ever created under one prefix, so
// that a new key above it is known absent without a read. arr's ids are
// UUIDv7 strings, which sort by creation time, so a submit's existence
// checks (of the operation and of its queue message) are answered from
// memory; an id at or below the ceiling (an older or foreign id) is read as
// before. The bound only grows: deleting keys leaves it high, which costs a
// read, never a wrong answer.
type ceiling struct {
	mu  sync.Mutex
	max []byte // nil: no key under the prefix
}

// load sets the ceiling to the last key under prefix p.
func (c *ceiling) load(r pebble.Reader, p byte) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return err
	}
	if it.Last() {
		c.max = bytes.Clone(it.Key())
	}
	return firstErr(it.Error(), it.Close())
}

// loadAlso raises the ceiling to the last key under prefix p, read as if
// its prefix were as (the ids of tombstones, g<id>, bound the operation
// ids o<id> that Create must check).
func (c *ceiling) loadAlso(r pebble.Reader, p, as byte) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return err
	}
	if it.Last() {
		k := bytes.Clone(it.Key())
		k[0] = as
		c.raise(k)
	}
	return firstErr(it.Error(), it.Close())
}

// above reports whether k sorts after every key created so far, so that it
// certainly does not exist.
func (c *ceiling) above(k []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Compare(k, c.max) > 0
}

// raise records that k is being created. Callers raise before the write
// commits and while they hold k's stripe lock, so a concurrent creator of
// the same key, which takes the stripe next, sees the raised ceiling and
// reads.
func (c *ceiling) raise(k []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Compare(k, c.max) > 0 {
		c.max = append(c.max[:0], k...)
	}
}
