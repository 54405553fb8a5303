// Package opstore is the portable operations store: the record of every
// operation, its state machine, idempotency keys, listing, retention and
// change notification. Open one with OpenStore from a URL whose scheme a
// driver registered (import the driver package for its side effect, e.g.
// _ "github.com/arrhq/arr/embedded").
package opstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
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

// New wraps a driver. Drivers' openers call it.
func New(d driver.Store) *Store { return &Store{d: d} }

var mux = urlmux.New[*Store]("opstore")

// Register makes OpenStore open URLs of scheme with o. Drivers call it from
// init.
func Register(scheme string, o urlmux.Opener[*Store]) { mux.Register(scheme, o) }

// OpenStore opens the store a URL names, e.g. "embedded:./arr-data".
func OpenStore(ctx context.Context, urlstr string) (*Store, error) { return mux.Open(ctx, urlstr) }

// Driver returns the driver under s.
func (s *Store) Driver() driver.Store { return s.d }

// Create: see driver.Store.Create.
func (s *Store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	return s.d.Create(ctx, op, req)
}

// Submit stores op and req and enqueues msg on q so that the operation is
// never durable without its message: in one write when the driver can
// (driver.AtomicSubmitter), else the operation first and then the message
// (a message whose operation is missing is acked and dropped by workers).
// It returns the stored operation and whether it was created. When an
// idempotency key was already held, the atomic path enqueues nothing; the
// two-step path enqueues the held operation's message again if it is still
// pending (a no-op when it is queued), so that retrying a submit that failed
// between its two writes, with the same key, repairs it.
func (s *Store) Submit(ctx context.Context, op *operation.Operation, req *operation.Request, q *queue.Queue, msg queue.Message) (*operation.Operation, bool, error) {
	if as, ok := s.d.(driver.AtomicSubmitter); ok {
		stored, created, err := as.SubmitAtomic(ctx, op, req, q.Driver(), msg)
		if !errors.Is(err, driver.ErrNotSameEngine) {
			return stored, created, err
		}
	}
	stored, created, err := s.d.Create(ctx, op, req)
	if err != nil {
		return nil, false, err
	}
	if !created {
		// A replay of a submit whose first try may have stored the
		// operation and then failed before its message was enqueued: the
		// operation would stay pending for ever. Enqueueing its message
		// again repairs that, and is a no-op when it is queued.
		if stored.Status == operation.Pending {
			m := msg
			m.ID = stored.ID
			if err := q.Enqueue(ctx, m); err != nil {
				return nil, false, fmt.Errorf("opstore: operation %s stored but not enqueued: %w", stored.ID, err)
			}
		}
		return stored, false, nil
	}
	// The stored ID may differ from op.ID: a driver may give a retried
	// submit the id its key was first claimed for (see natsjs).
	msg.ID = stored.ID
	if err := q.Enqueue(ctx, msg); err != nil {
		if op.IdempotencyKey == "" {
			// No retry of this submit can find the operation again, so
			// it would stay pending for ever: fail it (best effort; if
			// the message did get through, a worker skips the failed
			// operation). With a key, a retry repairs it (above).
			s.abandon(context.WithoutCancel(ctx), stored.ID, err)
		}
		return nil, false, fmt.Errorf("opstore: operation %s stored but not enqueued: %w", stored.ID, err)
	}
	return stored, true, nil
}

// ProblemNotEnqueued is the error of an operation whose submit stored it
// but failed to enqueue it, and that no retry can reach (it has no
// idempotency key): the client was answered with an error and never got
// its id.
const ProblemNotEnqueued = "urn:arr:problem:not-enqueued"

// abandon marks a stored operation that could not be enqueued as failed,
// so that it does not stay pending for ever.
func (s *Store) abandon(ctx context.Context, id string, cause error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = s.Transition(ctx, id, func(op *operation.Operation) error {
		if op.Status != operation.Pending || op.Attempts > 0 {
			return ErrSkip
		}
		op.Status = operation.Failed
		if op.ExpiresAt.IsZero() {
			op.ExpiresAt = time.Now().UTC().Add(24 * time.Hour) // then the janitor deletes it
		}
		op.Error = &operation.Problem{Type: ProblemNotEnqueued, Title: "Not enqueued", Status: 500,
			Detail: "the operation was stored but its queue message was not: " + cause.Error()}
		return nil
	})
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
		if err := change(op); err != nil {
			return op, err
		}
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
