package mem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	arrengine "github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// opRec is a stored operation and its request. The engine owns both: they
// are copied on the way in and on the way out.
type opRec struct {
	op     *operation.Operation
	req    *operation.Request // nil: none kept
	expIdx int                // in engine.expiry; -1 when not there
	dueIdx int                // in engine.due; -1 when not there
}

// tomb is the tombstone of a deleted operation's id, kept until until.
type tomb struct {
	id    string
	until time.Time
	idx   int // in engine.tombHeap
}

// store is a handle on an engine's operations store.
type store struct {
	eng    *engine
	held   bool // holds a reference (false: born closed)
	closed atomic.Bool
	once   sync.Once
}

var (
	_ opdriver.Store        = (*store)(nil)
	_ arrengine.Atomic      = (*store)(nil)
	_ opdriver.Transitioner = (*store)(nil)
	_ opdriver.Outbox       = (*store)(nil)
)

func newStore(eng *engine, held bool) *store {
	s := &store{eng: eng, held: held}
	s.closed.Store(!held)
	return s
}

// lock locks the engine for one call, or fails when ctx is done or the
// handle or engine closed. The caller unlocks eng.mu.
func (s *store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	s.eng.mu.Lock()
	if s.eng.closed {
		s.eng.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Close releases the handle's reference to the engine.
func (s *store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		if s.held {
			s.eng.release()
		}
	})
	return nil
}

func checkOp(op *operation.Operation) error {
	if op == nil || op.ID == "" {
		return errors.New("mem: operation has no ID")
	}
	if !op.Status.Valid() {
		return fmt.Errorf("mem: operation %s has invalid status %q", op.ID, op.Status)
	}
	return nil
}

func cloneRequest(r *operation.Request) *operation.Request {
	if r == nil {
		return nil
	}
	c := *r
	c.Header = r.Header.Clone()
	c.Body = bytes.Clone(r.Body)
	return &c
}

// ---- reads ----

// goneErr returns ErrGone when id has a tombstone kept until after now,
// else nil. A tombstone whose time has passed but that DeleteExpired has
// not purged yet answers nil. eng.mu is held.
func (eng *engine) goneErr(id string, now time.Time) error {
	if t := eng.tombs[id]; t != nil && t.until.After(now) {
		return fmt.Errorf("%w: %s", opdriver.ErrGone, id)
	}
	return nil
}

func (s *store) Get(ctx context.Context, id string) (*operation.Operation, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.eng.mu.Unlock()
	if r := s.eng.ops[id]; r != nil {
		return r.op.Clone(), nil
	}
	if err := s.eng.goneErr(id, time.Now()); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %s", opdriver.ErrNotFound, id)
}

func (s *store) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.eng.mu.Unlock()
	r := s.eng.ops[id]
	if r == nil {
		if err := s.eng.goneErr(id, time.Now()); err != nil {
			return nil, err
		}
	}
	if r == nil || r.req == nil {
		return nil, fmt.Errorf("%w: request of %s", opdriver.ErrNotFound, id)
	}
	return cloneRequest(r.req), nil
}

const defaultListLimit = 100

func (s *store) List(ctx context.Context, opts opdriver.ListOptions) ([]*operation.Operation, string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, "", err
	}
	defer s.eng.mu.Unlock()
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	ids := s.eng.ids
	if opts.Owner != "" {
		ids = s.eng.owned[opts.Owner] // ascending too
	}
	start := 0
	if opts.After != "" {
		i, found := slices.BinarySearch(ids, opts.After)
		if found {
			i++
		}
		start = i
	}
	var ops []*operation.Operation
	for _, id := range ids[start:] {
		op := s.eng.ops[id].op
		if len(opts.Status) > 0 && !slices.Contains(opts.Status, op.Status) {
			continue
		}
		if len(ops) == limit {
			return ops, ops[limit-1].ID, nil // there is a next page
		}
		ops = append(ops, op.Clone())
	}
	return ops, "", nil
}

// ---- writes ----

func (s *store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	return s.submit(ctx, op, req, nil, nil)
}

// SubmitAtomic creates op and req and enqueues msg on the engine's queue
// in one step under the engine's lock: see arrengine.Atomic.
func (s *store) SubmitAtomic(ctx context.Context, op *operation.Operation, req *operation.Request, msg qdriver.Message) (*operation.Operation, bool, error) {
	if msg.ID == "" {
		return nil, false, errors.New("mem: message has no ID")
	}
	return s.submit(ctx, op, req, nil, &msg)
}

// TransitionEnqueue is TransitionOp plus the Enqueue of msg(op) on the
// engine's queue, in one step under the engine's lock: see arrengine.Atomic.
func (s *store) TransitionEnqueue(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) qdriver.Message) (*operation.Operation, error) {
	stamped := func(op *operation.Operation) error {
		if err := change(op); err != nil {
			return err
		}
		op.UpdatedAt = time.Now().UTC()
		return nil
	}
	return s.transition(ctx, id, stamped, msg)
}

// submit is Create, plus the Enqueue of msg through qh when msg is not nil.
func (s *store) submit(ctx context.Context, op *operation.Operation, req *operation.Request, qh *queueHandle, msg *qdriver.Message) (*operation.Operation, bool, error) {
	if err := checkOp(op); err != nil {
		return nil, false, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, false, err
	}
	eng := s.eng
	defer eng.mu.Unlock()
	if qh != nil && qh.closed {
		return nil, false, qdriver.ErrClosed
	}
	if op.IdempotencyKey != "" {
		if holder := eng.ops[eng.idem[op.IdempotencyKey]]; holder != nil {
			return holder.op.Clone(), false, nil
		}
	}
	if eng.ops[op.ID] != nil {
		return nil, false, fmt.Errorf("%w: %s", opdriver.ErrExists, op.ID)
	}
	now := time.Now()
	if t := eng.tombs[op.ID]; t != nil {
		if t.until.After(now) {
			return nil, false, fmt.Errorf("%w: %s (expired and deleted; its id is kept until %s)", opdriver.ErrExists, op.ID,
				t.until.UTC().Format(time.RFC3339))
		}
		// Its time has passed but DeleteExpired has not purged it yet:
		// the id is free.
		eng.dropTomb(t)
	}
	stored := op.Clone()
	stored.Version = 1
	r := &opRec{op: stored, req: cloneRequest(req), expIdx: -1, dueIdx: -1}
	eng.ops[op.ID] = r
	eng.ids = insertID(eng.ids, op.ID)
	if op.Owner != "" {
		eng.owned[op.Owner] = insertID(eng.owned[op.Owner], op.ID)
	}
	if op.IdempotencyKey != "" {
		eng.idem[op.IdempotencyKey] = op.ID
	}
	if !stored.ExpiresAt.IsZero() {
		eng.expiry.push(r)
	}
	if !stored.CallbackDueAt.IsZero() {
		eng.due.push(r)
	}
	if msg != nil {
		eng.enqueue(now, *msg)
	}
	eng.notify(op.ID)
	return stored.Clone(), true, nil
}

func (s *store) Update(ctx context.Context, op *operation.Operation) error {
	if err := checkOp(op); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.eng.mu.Unlock()
	r := s.eng.ops[op.ID]
	if r == nil {
		return fmt.Errorf("%w: %s", opdriver.ErrNotFound, op.ID)
	}
	if r.op.Version != op.Version {
		return fmt.Errorf("%w: %s is at version %d, update was from %d", opdriver.ErrConflict, op.ID, r.op.Version, op.Version)
	}
	s.eng.write(r, op)
	return nil
}

// TransitionOp applies change to a copy of the stored operation and writes
// it back, all under the engine's lock; see opstore/driver.Transitioner.
// lazy makes no difference: nothing is durable.
func (s *store) TransitionOp(ctx context.Context, id string, change func(*operation.Operation) error, lazy bool) (*operation.Operation, error) {
	return s.transition(ctx, id, change, nil)
}

// transition is TransitionOp, plus the Enqueue of msg(op) in the same step
// when msg is not nil (its ID must be id).
func (s *store) transition(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) qdriver.Message) (*operation.Operation, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.eng.mu.Unlock()
	r := s.eng.ops[id]
	if r == nil {
		return nil, fmt.Errorf("%w: %s", opdriver.ErrNotFound, id)
	}
	op := r.op.Clone()
	if err := change(op); err != nil {
		return op, err
	}
	op.ID, op.Version, op.IdempotencyKey, op.Owner = r.op.ID, r.op.Version, r.op.IdempotencyKey, r.op.Owner
	if err := checkOp(op); err != nil {
		return nil, err
	}
	var m qdriver.Message
	if msg != nil {
		if m = msg(op); m.ID != id {
			return nil, fmt.Errorf("mem: message %q is not operation %s's", m.ID, id)
		}
	}
	s.eng.write(r, op)
	if msg != nil {
		s.eng.enqueue(time.Now(), m)
	}
	return op, nil
}

// write stores a copy of op, whose Version is r's, as r's next version,
// sets op.Version to it and notifies watchers. eng.mu is held.
func (eng *engine) write(r *opRec, op *operation.Operation) {
	next := op.Clone()
	next.Version = r.op.Version + 1
	next.IdempotencyKey, next.Owner = r.op.IdempotencyKey, r.op.Owner // never change
	had, has := !r.op.ExpiresAt.IsZero(), !next.ExpiresAt.IsZero()
	owed, owes := !r.op.CallbackDueAt.IsZero(), !next.CallbackDueAt.IsZero()
	r.op = next
	switch {
	case had && has:
		eng.expiry.fix(r)
	case had:
		eng.expiry.remove(r)
	case has:
		eng.expiry.push(r)
	}
	switch {
	case owed && owes:
		eng.due.fix(r)
	case owed:
		eng.due.remove(r)
	case owes:
		eng.due.push(r)
	}
	op.Version = next.Version
	eng.notify(op.ID)
}

// insertID inserts id into the ascending ids.
func insertID(ids []string, id string) []string {
	i, _ := slices.BinarySearch(ids, id)
	return slices.Insert(ids, i, id)
}

// deleteID deletes id from the ascending ids.
func deleteID(ids []string, id string) []string {
	if i, found := slices.BinarySearch(ids, id); found {
		return slices.Delete(ids, i, i+1)
	}
	return ids
}

// ---- DeleteExpired ----

func (s *store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	eng := s.eng
	defer eng.mu.Unlock()
	// The tombstones whose time has passed, up to limit, not counted with
	// the operations.
	for range max(limit, 0) {
		t, ok := eng.tombHeap.peek()
		if !ok || !t.until.Before(now) {
			break
		}
		eng.dropTomb(t)
	}
	var deleted []*operation.Operation
	for len(deleted) < limit {
		r, ok := eng.expiry.peek()
		if !ok || !r.op.ExpiresAt.Before(now) {
			break
		}
		op := r.op
		eng.expiry.pop()
		eng.due.remove(r)
		delete(eng.ops, op.ID)
		eng.ids = deleteID(eng.ids, op.ID)
		if op.Owner != "" {
			if ids := deleteID(eng.owned[op.Owner], op.ID); len(ids) > 0 {
				eng.owned[op.Owner] = ids
			} else {
				delete(eng.owned, op.Owner)
			}
		}
		if op.IdempotencyKey != "" && eng.idem[op.IdempotencyKey] == op.ID {
			delete(eng.idem, op.IdempotencyKey)
		}
		if until := op.TombstoneUntil; until.After(op.ExpiresAt) && until.After(now) {
			t := &tomb{id: op.ID, until: until, idx: -1}
			eng.tombs[op.ID] = t
			eng.tombHeap.push(t)
		}
		eng.notify(op.ID)
		deleted = append(deleted, op) // no longer stored: the caller may have it
	}
	return deleted, nil
}

// ---- Outbox ----

// DueCallbacks: see opstore/driver.Outbox. The index is a heap by
// CallbackDueAt; the due entries are read off a copy of its order.
func (s *store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.eng.mu.Unlock()
	if limit <= 0 {
		return nil, nil
	}
	var due []*opRec
	for _, r := range s.eng.due.s { // the heap's array: every owing operation
		if !r.op.CallbackDueAt.After(now) {
			due = append(due, r)
		}
	}
	slices.SortFunc(due, func(a, b *opRec) int { return a.op.CallbackDueAt.Compare(b.op.CallbackDueAt) })
	out := make([]*operation.Operation, 0, min(limit, len(due)))
	for _, r := range due[:min(limit, len(due))] {
		out = append(out, r.op.Clone())
	}
	return out, nil
}

// dropTomb removes a tombstone. eng.mu is held.
func (eng *engine) dropTomb(t *tomb) {
	eng.tombHeap.remove(t)
	if eng.tombs[t.id] == t {
		delete(eng.tombs, t.id)
	}
}

// ---- Watch ----

// Watch subscribes under the engine's lock, as every write notifies under
// it: a watcher subscribed before a read sees every change after it.
func (s *store) Watch(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	if err := s.lock(ctx); err != nil {
		return nil, nil, err
	}
	defer s.eng.mu.Unlock()
	w, stop := s.eng.watch.Add(id)
	return w.C, stop, nil
}

// notify wakes the watchers of id; eng.mu is held.
func (eng *engine) notify(id string) { eng.watch.Notify(id) }
