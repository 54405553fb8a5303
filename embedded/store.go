package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// store is a handle on the DB's operations store.
type store struct {
	db     *DB
	closed atomic.Bool
	once   sync.Once
}

var (
	_ opdriver.Store  = (*store)(nil)
	_ engine.Atomic   = (*store)(nil)
	_ opdriver.Outbox = (*store)(nil)
)

func (s *store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.begin(ErrClosed)
}

// Close releases the handle's reference to the DB.
func (s *store) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		err = s.db.release()
	})
	return err
}

// ---- reads ----

// has reports whether k exists in r.
func has(r pebble.Reader, k []byte) (bool, error) {
	_, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// getCopy returns a copy of k's value in r.
func getCopy(r pebble.Reader, k []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	return out, true, closer.Close()
}

func getOp(r pebble.Reader, id string) (*operation.Operation, error) {
	v, closer, err := r.Get(opKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", opdriver.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: reading operation %s: %w", id, err)
	}
	defer closer.Close()
	op, err := decodeOp(v) // copies out of v
	if err != nil {
		return nil, fmt.Errorf("embedded: operation %s: %w", id, err)
	}
	return op, nil
}

func (s *store) Get(ctx context.Context, id string) (*operation.Operation, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.db.end()
	op, err := s.db.latestOp(id)
	if errors.Is(err, opdriver.ErrNotFound) {
		// Only a miss pays for the tombstone's read.
		if gerr := s.db.checkGone(id, time.Now()); gerr != nil {
			return nil, gerr
		}
	}
	return op, err
}

// tombstone returns the time until which id's tombstone is kept (Unix ns),
// and whether it has one.
func tombstone(r pebble.Reader, id string) (uint64, bool, error) {
	v, closer, err := r.Get(goneKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("embedded: reading tombstone of %s: %w", id, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("embedded: tombstone of %s: %w", id, errCorrupt)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// checkGone returns ErrGone when id has a tombstone kept until after now,
// a read error, or nil. A tombstone whose time has passed answers nil even
// before DeleteExpired purges it.
func (db *DB) checkGone(id string, now time.Time) error {
	until, ok, err := tombstone(db.pdb, id)
	if err != nil {
		return err
	}
	if ok && until > nanos(now) {
		return fmt.Errorf("%w: %s", opdriver.ErrGone, id)
	}
	return nil
}

func (s *store) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.db.end()
	v, closer, err := s.db.pdb.Get(reqKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		if gerr := s.db.checkGone(id, time.Now()); gerr != nil {
			return nil, gerr
		}
		return nil, fmt.Errorf("%w: request of %s", opdriver.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: reading request %s: %w", id, err)
	}
	defer closer.Close()
	req, err := decodeRequest(v) // copies out of v
	if err != nil {
		return nil, fmt.Errorf("embedded: request of %s: %w", id, err)
	}
	return req, nil
}

// ---- writes ----

func checkOp(op *operation.Operation) error {
	if op == nil || op.ID == "" {
		return errors.New("embedded: operation has no ID")
	}
	if !op.Status.Valid() {
		return fmt.Errorf("embedded: operation %s has invalid status %q", op.ID, op.Status)
	}
	return nil
}

func (s *store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	return s.submit(ctx, op, req, nil)
}

// SubmitAtomic creates op and req and enqueues msg on the DB's queue in
// one synced Pebble batch: see engine.Atomic.
func (s *store) SubmitAtomic(ctx context.Context, op *operation.Operation, req *operation.Request, msg qdriver.Message) (*operation.Operation, bool, error) {
	if msg.ID == "" {
		return nil, false, errors.New("embedded: message has no ID")
	}
	return s.submit(ctx, op, req, &msg)
}

// TransitionEnqueue changes the operation as TransitionOp does and
// enqueues msg(op) on the DB's queue in the same synced Pebble batch: see
// engine.Atomic.
func (s *store) TransitionEnqueue(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) qdriver.Message) (*operation.Operation, error) {
	stamped := func(op *operation.Operation) error {
		if err := change(op); err != nil {
			return err
		}
		op.UpdatedAt = time.Now().UTC()
		return nil
	}
	return s.transition(ctx, id, stamped, pebble.Sync, msg)
}

// submit is Create, plus the Enqueue of msg when it is not nil, in one
// durable batch.
func (s *store) submit(ctx context.Context, op *operation.Operation, req *operation.Request, msg *qdriver.Message) (*operation.Operation, bool, error) {
	if err := checkOp(op); err != nil {
		return nil, false, err
	}
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.db.end()
	db := s.db

	keys := make([]string, 0, 3)
	keys = append(keys, op.ID)
	if op.IdempotencyKey != "" {
		keys = append(keys, op.IdempotencyKey)
	}
	if msg != nil {
		keys = append(keys, msg.ID)
	}
	held := db.lockStripes(keys...)
	defer db.unlockStripes(held)

	if op.IdempotencyKey != "" {
		holder, ok, err := getCopy(db.pdb, idemKey(op.IdempotencyKey))
		if err != nil {
			return nil, false, fmt.Errorf("embedded: reading idempotency key: %w", err)
		}
		if ok {
			cur, err := db.latestOp(string(holder))
			if err == nil {
				return cur, false, nil
			}
			if !errors.Is(err, opdriver.ErrNotFound) {
				return nil, false, err
			}
			// A key whose holder is gone is free (DeleteExpired removes
			// both together, so this does not happen in practice).
		}
	}
	opk := opKey(op.ID)
	// A tombstone whose time has passed but which DeleteExpired has not
	// purged yet: deleted with the create, so that the new operation's
	// own deletion may write a fresh one.
	var staleGone uint64
	var hasStaleGone bool
	// Ids above the ceiling have neither an operation nor a tombstone
	// (the ceiling covers both; see openLocked).
	if !db.opCeil.above(opk) {
		if exists, err := has(db.pdb, opk); err != nil {
			return nil, false, fmt.Errorf("embedded: reading operation %s: %w", op.ID, err)
		} else if exists {
			return nil, false, fmt.Errorf("%w: %s", opdriver.ErrExists, op.ID)
		}
		until, ok, err := tombstone(db.pdb, op.ID)
		if err != nil {
			return nil, false, err
		}
		if ok && until > nanos(time.Now()) {
			return nil, false, fmt.Errorf("%w: %s (expired and deleted; its id is kept until %s)", opdriver.ErrExists, op.ID,
				time.Unix(0, int64(until)).UTC().Format(time.RFC3339))
		}
		staleGone, hasStaleGone = until, ok
	}

	stored := op.Clone()
	stored.Version = 1
	rec, err := encodeOp(stored)
	if err != nil {
		return nil, false, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(opk, rec, nil)
	db.opCeil.raise(opk)
	if hasStaleGone {
		_ = b.Delete(goneKey(op.ID), nil)
		_ = b.Delete(goneAtKey(staleGone, op.ID), nil)
	}
	if req != nil {
		_ = b.Set(reqKey(op.ID), encodeRequest(req), nil)
	}
	if op.IdempotencyKey != "" {
		_ = b.Set(idemKey(op.IdempotencyKey), []byte(op.ID), nil)
	}
	_ = b.Set(statusKey(stored.Status, op.ID), nil, nil)
	if stored.Owner != "" {
		_ = b.Set(ownerKey(stored.Owner, op.ID), nil, nil)
	}
	if !stored.ExpiresAt.IsZero() {
		_ = b.Set(expiryKey(stored.ExpiresAt, op.ID), nil, nil)
	}
	if !stored.CallbackDueAt.IsZero() {
		_ = b.Set(dueKey(stored.CallbackDueAt, op.ID), nil, nil)
		defer db.due.lower(nanos(stored.CallbackDueAt))
	}
	var enq enqueued
	if msg != nil {
		if enq, err = db.q.addToBatch(b, []qdriver.Message{*msg}, time.Now()); err != nil {
			return nil, false, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, false, fmt.Errorf("embedded: writing operation %s: %w", op.ID, err)
	}
	db.ops.put(stored.Clone(), len(rec))
	db.watch.Notify(op.ID)
	db.q.enqueued(enq)
	return stored, true, nil
}

func (s *store) Update(ctx context.Context, op *operation.Operation) error {
	return s.update(ctx, op, pebble.Sync)
}

// UpdateLazy is Update committed without waiting for the WAL's fsync; the
// next synced commit of the DB makes it durable. See
// opstore/driver.LazyUpdater.
func (s *store) UpdateLazy(ctx context.Context, op *operation.Operation) error {
	return s.update(ctx, op, pebble.NoSync)
}

func (s *store) update(ctx context.Context, op *operation.Operation, wo *pebble.WriteOptions) error {
	if err := checkOp(op); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.db.end()
	db := s.db
	held := db.lockStripes(op.ID)
	defer db.unlockStripes(held)

	cur, err := db.latestOp(op.ID)
	if err != nil {
		return err
	}
	if cur.Version != op.Version {
		return fmt.Errorf("%w: %s is at version %d, update was from %d", opdriver.ErrConflict, op.ID, cur.Version, op.Version)
	}
	return s.write(cur, op, wo)
}

// TransitionOp reads the operation, applies change and writes it back under
// the operation's stripe lock: one read, where Get and a version-checked
// Update take two, and no conflict to retry. See opstore/driver.Transitioner.
func (s *store) TransitionOp(ctx context.Context, id string, change func(*operation.Operation) error, lazy bool) (*operation.Operation, error) {
	wo := pebble.Sync
	if lazy {
		wo = pebble.NoSync
	}
	return s.transition(ctx, id, change, wo, nil)
}

// transition is TransitionOp, plus the Enqueue of msg(op) in the same
// batch when msg is not nil (its ID must be id, whose stripe is held).
func (s *store) transition(ctx context.Context, id string, change func(*operation.Operation) error, wo *pebble.WriteOptions, msg func(*operation.Operation) qdriver.Message) (*operation.Operation, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.db.end()
	db := s.db
	held := db.lockStripes(id)
	defer db.unlockStripes(held)
	cur, err := db.latestOp(id)
	if err != nil {
		return nil, err
	}
	op := cur.Clone()
	if err := change(op); err != nil {
		return op, err
	}
	op.ID, op.Version, op.IdempotencyKey, op.Owner = cur.ID, cur.Version, cur.IdempotencyKey, cur.Owner
	if err := checkOp(op); err != nil {
		return nil, err
	}
	var m *qdriver.Message
	if msg != nil {
		mm := msg(op)
		if mm.ID != id {
			return nil, fmt.Errorf("embedded: message %q is not operation %s's", mm.ID, id)
		}
		m = &mm
	}
	if err := s.writeWith(cur, op, wo, m); err != nil {
		return nil, err
	}
	return op, nil
}

// write replaces cur with op, whose Version is cur's, and its index
// entries; op.Version is then the new version. The stripe of op.ID is held.
func (s *store) write(cur, op *operation.Operation, wo *pebble.WriteOptions) error {
	return s.writeWith(cur, op, wo, nil)
}

// writeWith is write, plus the Enqueue of msg (when not nil; its ID's
// stripe is op.ID's) in the same batch.
func (s *store) writeWith(cur, op *operation.Operation, wo *pebble.WriteOptions, msg *qdriver.Message) error {
	db := s.db
	next := op.Clone()
	next.Version = cur.Version + 1
	next.IdempotencyKey, next.Owner = cur.IdempotencyKey, cur.Owner // never change
	rec, err := encodeOp(next)
	if err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(opKey(op.ID), rec, nil)
	if cur.Status != next.Status {
		_ = b.Delete(statusKey(cur.Status, op.ID), nil)
		_ = b.Set(statusKey(next.Status, op.ID), nil, nil)
	}
	curExp, nextExp := !cur.ExpiresAt.IsZero(), !next.ExpiresAt.IsZero()
	if curExp != nextExp || (curExp && nanos(cur.ExpiresAt) != nanos(next.ExpiresAt)) {
		if curExp {
			_ = b.Delete(expiryKey(cur.ExpiresAt, op.ID), nil)
		}
		if nextExp {
			_ = b.Set(expiryKey(next.ExpiresAt, op.ID), nil, nil)
		}
	}
	curDue, nextDue := !cur.CallbackDueAt.IsZero(), !next.CallbackDueAt.IsZero()
	if curDue != nextDue || (curDue && nanos(cur.CallbackDueAt) != nanos(next.CallbackDueAt)) {
		if curDue {
			_ = b.Delete(dueKey(cur.CallbackDueAt, op.ID), nil)
		}
		if nextDue {
			_ = b.Set(dueKey(next.CallbackDueAt, op.ID), nil, nil)
			defer db.due.lower(nanos(next.CallbackDueAt))
		}
	}
	var enq enqueued
	if msg != nil {
		if enq, err = db.q.addToBatch(b, []qdriver.Message{*msg}, time.Now()); err != nil {
			return err
		}
	}
	db.ops.del(op.ID) // before the commit; see opCache
	if err := b.Commit(wo); err != nil {
		return fmt.Errorf("embedded: writing operation %s: %w", op.ID, err)
	}
	db.q.enqueued(enq)
	db.ops.put(next, len(rec))
	op.Version = next.Version
	db.watch.Notify(op.ID)
	return nil
}

// ---- List ----

const defaultListLimit = 100

func (s *store) List(ctx context.Context, opts opdriver.ListOptions) ([]*operation.Operation, string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, "", err
	}
	defer s.db.end()
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	// One snapshot: the index and the records it points at agree.
	snap := s.db.pdb.NewSnapshot()
	defer snap.Close()

	var ops []*operation.Operation
	if opts.Owner != "" {
		var err error
		if ops, err = listOwner(snap, opts, limit+1); err != nil {
			return nil, "", err
		}
	} else if len(opts.Status) == 0 {
		lower := []byte{pOp}
		if opts.After != "" {
			lower = append(opKey(opts.After), 0)
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pOp + 1}})
		if err != nil {
			return nil, "", err
		}
		defer it.Close()
		for ok := it.First(); ok && len(ops) <= limit; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				return nil, "", err
			}
			op, err := decodeOp(v)
			if err != nil {
				return nil, "", fmt.Errorf("embedded: operation %s: %w", it.Key()[1:], err)
			}
			ops = append(ops, op)
		}
		if err := it.Error(); err != nil {
			return nil, "", err
		}
	} else {
		ids, err := mergeStatusIndex(snap, opts.Status, opts.After, limit+1)
		if err != nil {
			return nil, "", err
		}
		for _, id := range ids {
			op, err := getOp(snap, id)
			if err != nil {
				return nil, "", fmt.Errorf("embedded: status index names %s: %w", id, err)
			}
			ops = append(ops, op)
		}
	}
	next := ""
	if len(ops) > limit {
		ops = ops[:limit]
		next = ops[limit-1].ID
	}
	return ops, next, nil
}

// listOwner returns up to n operations of opts.Owner after opts.After,
// ascending, in one of opts.Status (any when empty), walking the owner's
// index entries: other owners' operations cost nothing.
func listOwner(r pebble.Reader, opts opdriver.ListOptions, n int) ([]*operation.Operation, error) {
	p := ownerPrefix(opts.Owner)
	lower := p
	if opts.After != "" {
		lower = append(append(slices.Clone(p), opts.After...), 0)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ops []*operation.Operation
	for ok := it.First(); ok && len(ops) < n; ok = it.Next() {
		id := string(it.Key()[len(p):])
		op, err := getOp(r, id)
		if err != nil {
			return nil, fmt.Errorf("embedded: owner index names %s: %w", id, err)
		}
		if len(opts.Status) > 0 && !slices.Contains(opts.Status, op.Status) {
			continue
		}
		ops = append(ops, op)
	}
	return ops, it.Error()
}

// mergeStatusIndex returns up to n ids, ascending, after after, from the
// status index entries of statuses (a k-way merge of one iterator per
// status).
func mergeStatusIndex(r pebble.Reader, statuses []operation.Status, after string, n int) ([]string, error) {
	sts := slices.Clone(statuses)
	slices.Sort(sts)
	sts = slices.Compact(sts)
	type cursor struct {
		it     *pebble.Iterator
		prefix int
		ok     bool
	}
	var cs []*cursor
	defer func() {
		for _, c := range cs {
			_ = c.it.Close()
		}
	}()
	for _, st := range sts {
		p := statusPrefix(st)
		lower := p
		if after != "" {
			lower = append(append(slices.Clone(p), after...), 0)
		}
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(p)})
		if err != nil {
			return nil, err
		}
		c := &cursor{it: it, prefix: len(p)}
		c.ok = it.First()
		cs = append(cs, c)
	}
	var ids []string
	for len(ids) < n {
		var min *cursor
		for _, c := range cs {
			if c.ok && (min == nil || bytes.Compare(c.it.Key()[c.prefix:], min.it.Key()[min.prefix:]) < 0) {
				min = c
			}
		}
		if min == nil {
			break
		}
		ids = append(ids, string(min.it.Key()[min.prefix:]))
		min.ok = min.it.Next()
	}
	for _, c := range cs {
		if err := c.it.Error(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// ---- Outbox ----

// DueCallbacks: see opstore/driver.Outbox. It walks the c<…> index, which
// every write keeps in the batch of the operation record it indexes, from
// its start up to now (inclusive), and reads each operation from the same
// snapshot, so the index and the records agree. An entry whose operation
// is missing or no longer due at the entry's time (which this build never
// leaves behind, but a build without the index could, by writing the
// operation after it) is skipped, not returned.
func (s *store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.db.end()
	if limit <= 0 {
		return nil, nil
	}
	from := s.db.due.scan()
	floor := uint64(math.MaxUint64) // the first key seen: the new floor
	defer func() { s.db.due.done(floor) }()
	snap := s.db.pdb.NewSnapshot()
	defer snap.Close()
	// nanos(now)+1 cannot overflow: nanos is at most MaxInt64.
	end := nanos(now) + 1
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: timeKey(pDue, from, ""), UpperBound: timeKey(pDue, end, "")})
	if err != nil {
		floor = from
		return nil, err
	}
	defer it.Close()
	var ops []*operation.Operation
	ok := it.First()
	if !ok {
		floor = max(from, end) // no key below end: none is live there
	}
	for ; ok && len(ops) < limit; ok = it.Next() {
		ts, idb, _ := splitTimeKey(it.Key())
		floor = min(floor, ts)
		id := string(idb)
		op, err := getOp(snap, id)
		if errors.Is(err, opdriver.ErrNotFound) {
			continue // a stale entry (see above)
		}
		if err != nil {
			return nil, err
		}
		if op.CallbackDueAt.IsZero() || nanos(op.CallbackDueAt) != ts || op.CallbackDueAt.After(now) {
			continue // stale, or before the epoch and after now (nanos clamps both to 0)
		}
		ops = append(ops, op)
	}
	if err := it.Error(); err != nil {
		floor = from
		return nil, err
	}
	return ops, nil
}

// dueFloor bounds the callback outbox index from below: no live key is
// under its floor. Every write of a due key lowers it (lower); a scan
// starts at it (scan) and raises it to the first key it finds (done),
// unless a write lowered it meanwhile. So a scan seeks to the live keys
// instead of stepping over the deletions the attempts before it left
// (each attempt moves its key), which made every scan cost as much as all
// the callbacks sent since the last compaction.
type dueFloor struct {
	scanMu  sync.Mutex // one scan at a time (scan to done)
	mu      sync.Mutex
	floor   uint64 // nanos; 0 on open: the whole index
	lowered uint64 // the lowest key written since the current scan began
}

// lower notes a key written at t (after its batch committed).
func (f *dueFloor) lower(t uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor, f.lowered = min(f.floor, t), min(f.lowered, t)
}

// scan returns where a scan starts; the scan holds the floor until done.
func (f *dueFloor) scan() uint64 {
	f.scanMu.Lock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lowered = math.MaxUint64
	return f.floor
}

// done raises the floor to first, the lowest key the scan found (or the
// end of its range when it found none), but not above a key written
// since it began.
func (f *dueFloor) done(first uint64) {
	defer f.scanMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = min(first, f.lowered)
}

// ---- DeleteExpired ----

// deleteChunk bounds how many operations one DeleteExpired batch deletes
// (and so how many stripes it holds at once).
const deleteChunk = 128

func (s *store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.db.end()
	// First the tombstones whose time has passed: up to limit of them, in
	// chunks, not counted with the operations.
	for purged := 0; purged < limit; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, more, err := s.purgeGoneChunk(now, min(limit-purged, deleteChunk))
		if err != nil {
			return nil, err
		}
		purged += n
		if !more || n == 0 {
			break
		}
	}
	var all []*operation.Operation
	for len(all) < limit {
		if err := ctx.Err(); err != nil {
			return all, err
		}
		ops, more, err := s.deleteExpiredChunk(now, min(limit-len(all), deleteChunk))
		all = append(all, ops...)
		if err != nil || !more || len(ops) == 0 {
			return all, err
		}
	}
	return all, nil
}

// deleteExpiredChunk deletes up to n expired operations in one batch and
// reports whether there may be more.
func (s *store) deleteExpiredChunk(now time.Time, n int) ([]*operation.Operation, bool, error) {
	db := s.db
	type cand struct {
		id  string
		key string // idempotency key
	}
	var cands []cand
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pExpiry}, UpperBound: timeKey(pExpiry, nanos(now), "")})
	if err != nil {
		return nil, false, err
	}
	for ok := it.First(); ok && len(cands) < n; ok = it.Next() {
		_, id, _ := splitTimeKey(it.Key())
		cands = append(cands, cand{id: string(id)})
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return nil, false, err
	}
	if len(cands) == 0 {
		return nil, false, nil
	}
	// Learn the idempotency keys, to lock their stripes too; checked again
	// under the locks.
	lockKeys := make([]string, 0, 2*len(cands))
	for i, c := range cands {
		lockKeys = append(lockKeys, c.id)
		if op, err := db.latestOp(c.id); err == nil && op.IdempotencyKey != "" {
			cands[i].key = op.IdempotencyKey
			lockKeys = append(lockKeys, op.IdempotencyKey)
		}
	}
	held := db.lockStripes(lockKeys...)
	defer db.unlockStripes(held)

	b := db.pdb.NewBatch()
	defer b.Close()
	var deleted []string
	var ops []*operation.Operation
	for _, c := range cands {
		op, err := db.latestOp(c.id)
		if errors.Is(err, opdriver.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		if op.ExpiresAt.IsZero() || !op.ExpiresAt.Before(now) {
			continue // its expiry moved meanwhile
		}
		if op.IdempotencyKey != c.key {
			continue // cannot happen (keys never change); be safe
		}
		_ = b.Delete(opKey(c.id), nil)
		_ = b.Delete(reqKey(c.id), nil)
		_ = b.Delete(statusKey(op.Status, c.id), nil)
		_ = b.Delete(expiryKey(op.ExpiresAt, c.id), nil)
		if !op.CallbackDueAt.IsZero() {
			_ = b.Delete(dueKey(op.CallbackDueAt, c.id), nil)
		}
		if op.Owner != "" {
			_ = b.Delete(ownerKey(op.Owner, c.id), nil)
		}
		if until := op.TombstoneUntil; until.After(op.ExpiresAt) && until.After(now) {
			u := nanos(until)
			_ = b.Set(goneKey(c.id), binary.BigEndian.AppendUint64(make([]byte, 0, 8), u), nil)
			_ = b.Set(goneAtKey(u, c.id), nil, nil)
		}
		if op.IdempotencyKey != "" {
			holder, ok, err := getCopy(db.pdb, idemKey(op.IdempotencyKey))
			if err != nil {
				return nil, false, err
			}
			if ok && string(holder) == c.id {
				_ = b.Delete(idemKey(op.IdempotencyKey), nil)
			}
		}
		deleted = append(deleted, c.id)
		ops = append(ops, op)
		db.ops.del(c.id) // before the commit; see opCache
	}
	if len(deleted) > 0 {
		if err := b.Commit(pebble.Sync); err != nil {
			return nil, false, fmt.Errorf("embedded: deleting expired operations: %w", err)
		}
		db.watch.Notify(deleted...)
	}
	return ops, len(cands) == n, nil
}

// purgeGoneChunk deletes up to n tombstones kept until before now, in one
// batch, and returns how many index entries it removed and whether there
// may be more.
func (s *store) purgeGoneChunk(now time.Time, n int) (int, bool, error) {
	db := s.db
	type cand struct {
		until uint64
		id    string
	}
	var cands []cand
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pGoneAt}, UpperBound: goneAtKey(nanos(now), "")})
	if err != nil {
		return 0, false, err
	}
	for ok := it.First(); ok && len(cands) < n; ok = it.Next() {
		until, id, _ := splitTimeKey(it.Key())
		cands = append(cands, cand{until: until, id: string(id)})
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return 0, false, err
	}
	if len(cands) == 0 {
		return 0, false, nil
	}
	ids := make([]string, 0, len(cands))
	for _, c := range cands {
		ids = append(ids, c.id)
	}
	// Create reads and deletes tombstones under the id's stripe too.
	held := db.lockStripes(ids...)
	defer db.unlockStripes(held)
	b := db.pdb.NewBatch()
	defer b.Close()
	var purged []string
	for _, c := range cands {
		_ = b.Delete(goneAtKey(c.until, c.id), nil)
		until, ok, err := tombstone(db.pdb, c.id)
		if err != nil {
			return 0, false, err
		}
		if ok && until == c.until { // else a Create removed it, or a newer one replaced it
			_ = b.Delete(goneKey(c.id), nil)
			purged = append(purged, c.id)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, false, fmt.Errorf("embedded: purging tombstones: %w", err)
	}
	db.watch.Notify(purged...)
	return len(cands), len(cands) == n, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// ---- Watch ----

func (s *store) Watch(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	if err := s.begin(ctx); err != nil {
		return nil, nil, err
	}
	defer s.db.end()
	w, stop := s.db.watch.Add(id)
	return w.C, stop, nil
}

// Sync makes every write applied so far durable: an empty synced WAL
// record, which Pebble group-commits with any concurrent synced write.
func (s *store) Sync(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.db.end()
	return s.db.pdb.LogData(nil, pebble.Sync)
}
