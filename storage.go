package arr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
)

// StorageRetryAfter is the Retry-After of a StorageUnavailable answer: a
// write that failed or outlived its deadline is worth trying again after
// this.
const StorageRetryAfter = 5 * time.Second

// storageRecheck is how long a failed write keeps StorageErr failing when
// no other write follows: then the next write tests the store again.
const storageRecheck = 10 * time.Second

// storageGuard bounds the waits on the store writes that callers wait on
// (Submit, Cancel, Retry) and keeps their health for readiness. The zero
// value is ready.
type storageGuard struct {
	// stalled counts the writes that outlived their deadline and have not
	// returned yet.
	stalled atomic.Int64
	// failedAt is when the last write failed or outlived its deadline
	// (unix nanos); 0 once a write succeeded since.
	failedAt atomic.Int64

	faults atomic.Int64 // writes that failed or outlived their deadline

	mu      sync.Mutex
	lastErr error // the last failure, for StorageErr
}

// boundedWrite runs write, a store write, and waits for it at most the
// write deadline. It returns write's error as is when fault says it is
// not a storage fault (a transition that does not apply, an unknown id),
// else a *StorageError (StorageUnavailable). A write that outlives its
// deadline is left to finish in the background, where its outcome still
// counts; while one is, the next writes answer StorageUnavailable at once
// without writing, so that a stalled store holds one goroutine per write
// it stalled, not one per request. A canceled ctx ends the wait.
func (c *Client) boundedWrite(ctx context.Context, what string, write func() error, fault func(error) bool) error {
	g := &c.storage
	if n := g.stalled.Load(); n > 0 {
		return &StorageError{Reason: StorageUnavailable, RetryAfter: StorageRetryAfter,
			Err: fmt.Errorf("%s: %d store writes outlived their deadline of %s and have not returned", what, n, c.cfg.WriteDeadline)}
	}
	done := make(chan error, 1)
	go func() { done <- write() }()
	t := time.NewTimer(c.cfg.WriteDeadline)
	defer t.Stop()
	select {
	case err := <-done:
		return c.writeOutcome(what, err, fault)
	case <-t.C:
		late := fmt.Errorf("%s: the store write outlived its deadline of %s (it may still land: an Idempotency-Key finds it)", what, c.cfg.WriteDeadline)
		g.stalled.Add(1)
		c.storageFailed(late)
		go func() {
			err := <-done
			g.stalled.Add(-1)
			_ = c.writeOutcome(what, err, fault)
		}()
		return &StorageError{Reason: StorageUnavailable, RetryAfter: StorageRetryAfter, Err: late}
	case <-ctx.Done():
		go func() { _ = c.writeOutcome(what, <-done, fault) }()
		return ctx.Err()
	}
}

// writeOutcome records how a bounded write ended and returns its error,
// a fault made a *StorageError.
func (c *Client) writeOutcome(what string, err error, fault func(error) bool) error {
	if err == nil {
		c.storageOK()
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !fault(err) {
		return err
	}
	err = fmt.Errorf("%s: %w", what, err)
	c.storageFailed(err)
	return &StorageError{Reason: StorageUnavailable, RetryAfter: StorageRetryAfter, Err: err}
}

func (c *Client) storageFailed(err error) {
	g := &c.storage
	g.faults.Add(1)
	g.mu.Lock()
	g.lastErr = err
	g.mu.Unlock()
	if g.failedAt.Swap(time.Now().UnixNano()) == 0 {
		c.cfg.Logger.Error("arr: store writes are failing; submits answer 503 until they succeed again", "err", err)
	}
}

func (c *Client) storageOK() {
	g := &c.storage
	if g.failedAt.Load() != 0 && g.stalled.Load() == 0 && g.failedAt.Swap(0) != 0 {
		c.cfg.Logger.Info("arr: store writes succeed again")
	}
}

// StorageErr reports the health of the store writes callers wait on: nil,
// or a *StorageError (StorageUnavailable) while a write that outlived its
// deadline has not returned, or when the last write failed (within the
// last 10 s, with none succeeding since). Readiness uses it.
func (c *Client) StorageErr() error {
	g := &c.storage
	if n := g.stalled.Load(); n > 0 {
		return &StorageError{Reason: StorageUnavailable, RetryAfter: StorageRetryAfter,
			Err: fmt.Errorf("%d store writes outlived their deadline of %s and have not returned", n, c.cfg.WriteDeadline)}
	}
	at := g.failedAt.Load()
	if at == 0 || time.Since(time.Unix(0, at)) > storageRecheck {
		return nil
	}
	g.mu.Lock()
	err := g.lastErr
	g.mu.Unlock()
	return &StorageError{Reason: StorageUnavailable, RetryAfter: StorageRetryAfter, Err: err}
}

// StorageFaults counts the store writes of Submit, Cancel and Retry that
// failed or outlived the write deadline.
func (c *Client) StorageFaults() int64 { return c.storage.faults.Load() }

// checkStorage asks Config.StorageCheck whether a write may start.
func (c *Client) checkStorage() error {
	if c.cfg.StorageCheck == nil {
		return nil
	}
	return c.cfg.StorageCheck()
}

// submitFault: every error of a submit's store write is the store's.
func submitFault(error) bool { return true }

// transitionFault returns a change function that records the errors
// change returns, and the fault test that tells them (and an unknown or
// gone id) from the store's own errors.
func transitionFault(change func(*operation.Operation) error) (func(*operation.Operation) error, func(error) bool) {
	var changeErr atomic.Pointer[error]
	wrapped := func(op *operation.Operation) error {
		err := change(op)
		if err != nil {
			changeErr.Store(&err)
		}
		return err
	}
	fault := func(err error) bool {
		if errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
			return false
		}
		if ce := changeErr.Load(); ce != nil && errors.Is(err, *ce) {
			return false
		}
		return true
	}
	return wrapped, fault
}

// unwritten reports whether a bounded write's call ended without its
// write's answer (a StorageError, or ctx ended): its results are not to
// be read, as a write still running may set them.
func unwritten(ctx context.Context, err error) bool {
	var se *StorageError
	return errors.As(err, &se) || (err != nil && ctx.Err() != nil)
}
