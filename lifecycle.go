package arr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
)

// The transitions of an operation, all of them, and the one rule for when
// a finished operation expires. Each takes the operation as read from the
// store and changes it in place; the store writes it back conditionally on
// its version (see opstore.Store.Transition). A transition that does not
// apply returns errSkip (or another error) and nothing is written.
//
//	submit          → pending
//	start           pending | running (interrupted) → running
//	succeed         running → succeeded          (finished)
//	failAttempt     running → pending | failed   (failed finishes)
//	fail            running → failed             (finished; no handler run)
//	giveBack        running → pending            (shutdown; attempt not counted)
//	cancel          pending | running → canceled (finished)
//	retry           failed → pending             (fresh budgets)
//	abandon         pending → failed             (stored, never enqueued)
//	expire          finished, past ExpiresAt → deleted (the janitor)
//
// Cancel and Retry, the two a client asks for, are at the end of this
// file; submit is in submit.go, the attempt's in attempt.go, expire in
// janitor.go.

// Problem types of the operations' stored errors. They are stable: clients
// may switch on them.
const (
	ProblemHandlerFailed     = "urn:arr:problem:handler-failed"
	ProblemTimeout           = "urn:arr:problem:timeout"
	ProblemAttemptsExhausted = "urn:arr:problem:attempts-exhausted"
	ProblemWorkerLost        = "urn:arr:problem:worker-lost"
	ProblemResultTooLarge    = "urn:arr:problem:result-too-large"
	ProblemCanceled          = "urn:arr:problem:operation-canceled"
	ProblemNotEnqueued       = "urn:arr:problem:not-enqueued"
)

// finish sets when a finished operation expires (its retention from now)
// and how long its id is remembered after that (its tombstone): the one
// place these times are computed.
func finish(op *operation.Operation, pol *policy, now time.Time) {
	op.ExpiresAt = now.Add(pol.retention)
	op.TombstoneUntil = op.ExpiresAt.Add(pol.tombstone)
}

// ours reports whether op is still in the attempt numbered attempt: a
// worker that lost its lease must not end (or report progress on) the
// attempt that a later delivery started.
func ours(op *operation.Operation, attempt int) bool {
	return op.Status == operation.Running && op.Attempts == attempt
}

// start begins an attempt. An operation found running was cut short by a
// worker that died or lost its lease: that attempt is recorded as
// interrupted.
func start(op *operation.Operation, now time.Time) (interrupted bool, err error) {
	if op.Status != operation.Pending && op.Status != operation.Running {
		return false, errSkip
	}
	if op.Status == operation.Running {
		interrupted = true
		op.Interruptions++
		op.AddAttempt(operation.Attempt{Number: op.Attempts, StartedAt: op.AttemptStartedAt, EndedAt: now, Outcome: operation.OutcomeInterrupted,
			Error: &operation.Problem{Type: ProblemWorkerLost, Title: "Worker lost", Status: 500,
				Detail: "the worker running this attempt stopped or lost its lease before it finished"}})
	}
	op.Status = operation.Running
	op.Attempts++
	op.AttemptStartedAt = now
	op.PercentComplete = 0
	op.Message = ""
	return interrupted, nil
}

// succeed ends attempt with its result.
func succeed(op *operation.Operation, attempt int, res *operation.Result, pol *policy, now time.Time) error {
	if !ours(op, attempt) {
		return errSkip
	}
	op.Status = operation.Succeeded
	op.PercentComplete, op.Message = 100, ""
	op.Error = nil
	op.Result = res
	finish(op, pol, now)
	return nil
}

// failAttempt records a failed attempt: the operation goes back to pending
// for a retry, or, when permanent or out of attempts, ends failed.
func failAttempt(op *operation.Operation, attempt int, prob *operation.Problem, permanent bool, pol *policy, now time.Time) (final bool, err error) {
	if !ours(op, attempt) {
		return false, errSkip
	}
	op.Failures++
	final = permanent || op.Failures >= pol.maxAttempts
	op.AddAttempt(operation.Attempt{Number: op.Attempts, StartedAt: op.AttemptStartedAt, EndedAt: now,
		Outcome: operation.OutcomeFailed, Error: prob})
	boundHistory(op, pol.maxHistoryBytes)
	op.Error = prob
	if final {
		op.Status = operation.Failed
		finish(op, pol, now)
	} else {
		op.Status = operation.Pending
	}
	return final, nil
}

// fail ends an attempt failed without running it (no handler, unreadable
// request, interruptions exhausted).
func fail(op *operation.Operation, attempt int, prob *operation.Problem, pol *policy, now time.Time) error {
	if !ours(op, attempt) {
		return errSkip
	}
	op.Error = prob
	op.Status = operation.Failed
	finish(op, pol, now)
	return nil
}

// giveBack returns an attempt that shutdown interrupted to pending without
// counting it.
func giveBack(op *operation.Operation, attempt int) error {
	if !ours(op, attempt) {
		return errSkip
	}
	op.Status = operation.Pending
	op.Attempts--
	return nil
}

// errNotCancelable: see ErrNotCancelable.
func cancel(op *operation.Operation, pol *policy, now time.Time) error {
	if expired(op, now) {
		return errExpired
	}
	if op.Status.Terminal() {
		return ErrNotCancelable
	}
	op.Status = operation.Canceled
	op.Error = &operation.Problem{Type: ProblemCanceled, Title: "Operation canceled", Status: http.StatusConflict,
		Detail: "canceled by the client"}
	finish(op, pol, now)
	return nil
}

// retry puts a failed operation back to pending with fresh attempt budgets
// (its history kept). A pending one is left as it is (errSkip): its
// message is enqueued again, in case it was lost.
func retry(op *operation.Operation, now time.Time) error {
	if expired(op, now) {
		return errExpired
	}
	switch op.Status {
	case operation.Pending:
		return errSkip
	case operation.Failed:
	default:
		return ErrNotRetryable
	}
	op.Status = operation.Pending
	op.Failures, op.Interruptions = 0, 0
	op.Error, op.Result = nil, nil
	op.PercentComplete, op.Message = 0, ""
	op.ExpiresAt, op.TombstoneUntil = time.Time{}, time.Time{}
	return nil
}

// abandon fails a stored operation whose message could not be enqueued
// and that no retry of its submit can reach (it has no idempotency key),
// so that it does not stay pending for ever.
func abandon(op *operation.Operation, cause error, pol *policy, now time.Time) error {
	if op.Status != operation.Pending || op.Attempts > 0 {
		return errSkip
	}
	op.Status = operation.Failed
	finish(op, pol, now)
	op.Error = &operation.Problem{Type: ProblemNotEnqueued, Title: "Not enqueued", Status: 500,
		Detail: "the operation was stored but its queue message was not: " + TruncateError(cause, DefaultMaxDetailBytes/2)}
	return nil
}

// Errors of the lifecycle; compare with errors.Is.
var (
	// ErrNotCancelable: Cancel of an operation that has finished.
	ErrNotCancelable = errors.New("arr: operation already finished")
	// ErrNotRetryable: Retry of an operation that is neither failed nor
	// pending.
	ErrNotRetryable = errors.New("arr: operation not retryable")

	errSkip    = errors.New("arr: transition does not apply")
	errExpired = errors.New("arr: operation past its retention")
)

// interruptedTooOften is the problem of an operation whose attempts were
// cut short more often than allowed.
func interruptedTooOften(n int) *operation.Problem {
	return &operation.Problem{Type: ProblemAttemptsExhausted, Title: "Attempts exhausted",
		Status: 500, Detail: fmt.Sprintf("%d attempts were cut short by a worker that stopped or lost its lease", n)}
}

// Cancel cancels a pending or running operation (a running handler sees
// its context canceled) and returns it. An operation that has finished is
// returned with ErrNotCancelable; an unknown or expired one is an error
// wrapping opstore.ErrNotFound or opstore.ErrGone.
func (c *Client) Cancel(ctx context.Context, id string) (*operation.Operation, error) {
	now := time.Now().UTC()
	change, fault := transitionFault(c.owing(func(op *operation.Operation) error {
		if !visible(ctx, op) {
			return errHidden
		}
		return cancel(op, c.policy(op.Route), now)
	}))
	var op *operation.Operation
	err := c.boundedWrite(ctx, "cancel", func() (err error) {
		op, err = c.cfg.Store.Transition(ctx, id, change)
		c.kick(op)
		op, err = c.scoped(id, op, err)
		return err
	}, fault)
	if unwritten(ctx, err) {
		return nil, err
	}
	return op, err
}

// Retry puts a failed operation back to pending, with fresh attempt
// budgets and its history kept, and queues it again; on an engine that
// writes both in one step (the embedded engine, PostgreSQL) that is one
// durable write, and elsewhere the janitor's sweep re-enqueues a pending
// operation whose message a crash between the two writes lost. Retrying a
// pending operation queues it again if its message was lost (a no-op when
// it is queued), so that a client that did not get its answer can simply
// repeat the call. Any other state is ErrNotRetryable, returned with the
// operation.
func (c *Client) Retry(ctx context.Context, id string) (*operation.Operation, error) {
	if err := c.checkStorage(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	change, fault := transitionFault(c.owing(func(op *operation.Operation) error {
		if !visible(ctx, op) {
			return errHidden
		}
		return retry(op, now)
	}))
	var op *operation.Operation
	err := c.boundedWrite(ctx, "retry", func() (err error) {
		op, err = c.retry(ctx, id, change)
		return err
	}, fault)
	if unwritten(ctx, err) {
		return nil, err
	}
	return op, err
}

// Settled is told by the worker that it settled the delivery of operation
// id with disp. An attempt that ended the operation (failed or canceled)
// is acked after its end is written, and a Retry in between enqueued the
// operation's message while that delivery still held it: the queue took
// it as a no-op (the id was queued), and the ack then dropped it. So when
// disp ended the operation, Settled looks again and enqueues the message
// of an operation found pending (a no-op when it is queued), rather than
// leaving it to the janitor's sweep. Other dispositions cost nothing.
func (c *Client) Settled(ctx context.Context, id string, disp Disposition) error {
	if disp.Settle == Nak || (disp.Outcome != "failed" && disp.Outcome != "canceled") {
		return nil
	}
	op, err := c.cfg.Store.Get(ctx, id)
	if err != nil || op.Status != operation.Pending {
		if errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
			return nil
		}
		return err
	}
	return c.cfg.Queue.Enqueue(ctx, Message{ID: op.ID, Route: op.Route}.Encode())
}

// retry is Retry's writes, with change its transition.
func (c *Client) retry(ctx context.Context, id string, change func(*operation.Operation) error) (*operation.Operation, error) {
	var op *operation.Operation
	var err error
	if c.atomic != nil {
		op, err = c.atomic.TransitionEnqueue(ctx, id, change, func(op *operation.Operation) queue.Message {
			return Message{ID: op.ID, Route: op.Route}.Encode()
		})
		if err == nil || !errors.Is(err, errSkip) {
			if err == nil {
				c.kick(op)
			}
			return c.scoped(id, op, err)
		}
		// Pending: enqueue it again below, in case its message was lost.
	} else {
		op, err = c.cfg.Store.Transition(ctx, id, change)
		if err != nil && !errors.Is(err, errSkip) {
			return c.scoped(id, op, err)
		}
		if err == nil {
			c.kick(op)
		}
	}
	// Enqueuing an id that is queued is a no-op; a dead letter is revived.
	if err := c.cfg.Queue.Enqueue(ctx, Message{ID: op.ID, Route: op.Route}.Encode()); err != nil {
		return nil, fmt.Errorf("arr: enqueue retry of %s: %w", op.ID, err)
	}
	return op, nil
}

// scoped answers a transition of a caller's call: another principal's
// operation is not found, and not returned.
func (c *Client) scoped(id string, op *operation.Operation, err error) (*operation.Operation, error) {
	if errors.Is(err, errHidden) {
		return nil, fmt.Errorf("%w: %s", errHidden, id)
	}
	return op, c.gone(id, err)
}

// gone maps the lifecycle's errExpired to opstore.ErrGone.
func (c *Client) gone(id string, err error) error {
	if errors.Is(err, errExpired) {
		return fmt.Errorf("%w: %s", opstore.ErrGone, id)
	}
	return err
}
