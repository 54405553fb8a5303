// Package opstore is the portable operations store: the record of every
// operation, its state machine, idempotency keys, listing, retention and
// change notification. An engine hands one out (see package engine:
// engine.Open(ctx, "embedded:./arr-data/db") and its Store method); a
// driver's own package may also construct one with New.
package opstore

import (
	"context"
	"errors"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore/driver"
)

// Errors of the store; compare with errors.Is.
var (
	ErrNotFound = driver.ErrNotFound
	ErrConflict = driver.ErrConflict
	ErrExists   = driver.ErrExists
	ErrGone     = driver.ErrGone
)

// ListOptions: see driver.ListOptions.
type ListOptions = driver.ListOptions

// Store is the portable operations store over a driver.
type Store struct {
	d driver.Store
}

// New wraps a driver. Engines call it (see package engine).
func New(d driver.Store) *Store { return &Store{d: d} }

// Driver returns the driver under s.
func (s *Store) Driver() driver.Store { return s.d }

// Create: see driver.Store.Create.
func (s *Store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	return s.d.Create(ctx, op, req)
}

// Get: see driver.Store.Get.
func (s *Store) Get(ctx context.Context, id string) (*operation.Operation, error) {
	return s.d.Get(ctx, id)
}

// GetRequest: see driver.Store.GetRequest.
func (s *Store) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	return s.d.GetRequest(ctx, id)
}

// Update: see driver.Store.Update.
func (s *Store) Update(ctx context.Context, op *operation.Operation) error {
	return s.d.Update(ctx, op)
}

// ErrSkip, returned by a Transition's change function, ends the transition
// without writing; Transition then returns the current operation and ErrSkip.
var ErrSkip = errors.New("opstore: transition skipped")

// Transition reads the operation, applies change to a copy and writes it
// back conditionally, retrying from a fresh read on a version conflict. It
// sets UpdatedAt. change may return ErrSkip (or any error) to write nothing.
func (s *Store) Transition(ctx context.Context, id string, change func(*operation.Operation) error) (*operation.Operation, error) {
	return s.transition(ctx, id, change, false)
}

// TransitionLazy is Transition with a write that need not be durable when
// it returns (see driver.LazyUpdater); on a driver without lazy updates it
// is Transition.
func (s *Store) TransitionLazy(ctx context.Context, id string, change func(*operation.Operation) error) (*operation.Operation, error) {
	return s.transition(ctx, id, change, true)
}

// transition uses the driver's one-step TransitionOp when it has one, and
// otherwise reads and writes with a version check, retrying on conflict.
func (s *Store) transition(ctx context.Context, id string, change func(*operation.Operation) error, lazy bool) (*operation.Operation, error) {
	change = stamped(change)
	if t, ok := s.d.(driver.Transitioner); ok {
		return t.TransitionOp(ctx, id, change, lazy)
	}
	update := s.d.Update
	if l, ok := s.d.(driver.LazyUpdater); ok && lazy {
		update = l.UpdateLazy
	}
	for {
		op, err := s.d.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		version, key, owner := op.Version, op.IdempotencyKey, op.Owner
		if err := change(op); err != nil {
			return op, err
		}
		// The store's fields are the store's: a change cannot move them
		// (as Transitioner drivers do too).
		op.ID, op.Version, op.IdempotencyKey, op.Owner = id, version, key, owner
		err = update(ctx, op)
		if errors.Is(err, driver.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return op, nil
	}
}

// List: see driver.Store.List.
func (s *Store) List(ctx context.Context, opts ListOptions) ([]*operation.Operation, string, error) {
	return s.d.List(ctx, opts)
}

// DeleteExpired: see driver.Store.DeleteExpired.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	return s.d.DeleteExpired(ctx, now, limit)
}

// Watch: see driver.Store.Watch.
func (s *Store) Watch(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	return s.d.Watch(ctx, id)
}

// WaitFor reads the operation until done reports true for it, for at
// most d (0: one read), woken by Watch's notifications rather than by
// polling. It returns the last operation read: with a nil error when done
// held or d passed, with ctx's error when ctx ended first.
func (s *Store) WaitFor(ctx context.Context, id string, d time.Duration, done func(*operation.Operation) bool) (*operation.Operation, error) {
	changed, stop, err := s.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	defer stop()
	op, err := s.Get(ctx, id)
	if err != nil || done(op) || d <= 0 {
		return op, err
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-changed:
			next, err := s.Get(ctx, id)
			if err != nil {
				return op, err
			}
			if op = next; done(op) {
				return op, nil
			}
		case <-timer.C:
			return op, nil
		case <-ctx.Done():
			return op, ctx.Err()
		}
	}
}

// ErrNoOutbox: the driver does not implement driver.Outbox.
var ErrNoOutbox = errors.New("opstore: the driver keeps no callback outbox index")

// DueCallbacks: see driver.Outbox.DueCallbacks; ErrNoOutbox when the
// driver does not implement it.
func (s *Store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	o, ok := s.d.(driver.Outbox)
	if !ok {
		return nil, ErrNoOutbox
	}
	return o.DueCallbacks(ctx, now, limit)
}

// Close closes the driver.
func (s *Store) Close() error { return s.d.Close() }

// stamped is change, then UpdatedAt set to now.
func stamped(change func(*operation.Operation) error) func(*operation.Operation) error {
	return func(op *operation.Operation) error {
		if err := change(op); err != nil {
			return err
		}
		op.UpdatedAt = time.Now().UTC()
		return nil
	}
}

// Sync makes the store's lazily applied writes durable (see
// driver.Syncer); a store without lazy writes has nothing to do.
func (s *Store) Sync(ctx context.Context) error {
	if sy, ok := s.d.(driver.Syncer); ok {
		return sy.Sync(ctx)
	}
	return nil
}
