package arr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/resultstore"
)

// Settlement is what a worker does with a delivery once the core has
// recorded an attempt's outcome; the vocabulary is the queue's.
type Settlement int

const (
	// Ack removes the message for good: the operation needs no more runs.
	Ack Settlement = iota
	// AckLazy is Ack without waiting for it to be durable: the operation's
	// state already says it needs no more runs, so a redelivery after a
	// crash is acked without running.
	AckLazy
	// Nak gives the message back, to be delivered again after Delay.
	Nak
)

// Disposition is the core's answer to a worker's report: how to settle the
// delivery, and the outcome for the worker's metrics ("succeeded",
// "failed", "retried", "canceled", or "" when nothing ended).
type Disposition struct {
	Settle  Settlement
	Delay   time.Duration
	Outcome string
}

// Attempt is one run of a handler on an operation, from StartAttempt to
// one of Succeed, Fail, Abort, GiveBack or Discard. Its transitions are
// fenced by its number: once a later attempt owns the operation (this one
// lost its lease), they change nothing, and the result this attempt wrote
// is under a key of its own, which only its own success records.
type Attempt struct {
	c       *Client
	op      *operation.Operation // as this attempt started it
	pol     *policy
	task    *Task
	lazy    bool // the running state was written lazily
	changed <-chan struct{}
	stop    func()
}

// StartAttempt starts an attempt of the operation a delivery names. first
// says whether this is the message's first delivery: its running state is
// then written lazily (a crash that loses it redelivers the message, which
// starts it again); a redelivery's is synced, so that the interruptions of
// an operation that keeps crashing its worker are counted and
// MaxInterruptions ends it.
//
// It subscribes to the operation's changes before it reads anything, so
// that a cancel that lands while the attempt starts is seen (Changed). It
// returns nil and how to settle the delivery when there is nothing to run:
// the operation is deleted, finished or canceled, its request is gone, or
// it was interrupted too often. A request the store fails to read is not
// the operation's fault: the attempt is given back, uncounted, and the
// delivery retried in a second.
func (c *Client) StartAttempt(ctx context.Context, id string, first bool) (*Attempt, Disposition, error) {
	changed, unwatch, err := c.Watch(ctx, id)
	if err != nil {
		changed, unwatch = nil, func() {} // no cancel signal; the final transition still refuses
	}
	stop := sync.OnceFunc(unwatch)
	now := time.Now().UTC()
	begin := c.cfg.Store.Transition
	if first {
		begin = c.cfg.Store.TransitionLazy
	}
	var interrupted bool
	op, err := begin(ctx, id, c.owing(func(op *operation.Operation) (err error) {
		interrupted, err = start(op, now)
		return err
	}))
	switch {
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone), errors.Is(err, errSkip):
		// Deleted, or already finished or canceled: nothing to run.
		stop()
		return nil, Disposition{Settle: AckLazy}, nil
	case err != nil:
		stop()
		return nil, Disposition{Settle: Nak, Delay: time.Second}, fmt.Errorf("arr: start %s: %w", id, err)
	}
	c.kick(op)
	a := &Attempt{c: c, op: op, pol: c.policy(op.Route), lazy: first, changed: changed, stop: stop}
	if interrupted && op.Interruptions >= c.cfg.MaxInterruptions {
		// Cut short by crashes or lost leases more often than allowed:
		// give up without running it again.
		d := a.Abort(ctx, interruptedTooOften(op.Interruptions))
		return nil, d, nil
	}
	req, err := c.cfg.Store.GetRequest(ctx, id)
	switch {
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		c.cfg.Logger.Error("arr: the operation's request is missing", "id", id, "err", err)
		d := a.Abort(ctx, &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500,
			Detail: "the operation's request could not be read"})
		return nil, d, nil
	case err != nil:
		// A store that did not answer: not the operation's fault. Give
		// the attempt back, uncounted, and try again in a moment.
		a.GiveBack(ctx)
		a.stop()
		return nil, Disposition{Settle: Nak, Delay: time.Second}, fmt.Errorf("arr: read request of %s: %w", id, err)
	}
	a.task = &Task{ID: id, Route: op.Route, Attempt: op.Attempts, Request: req}
	return a, Disposition{}, nil
}

// Task is what the attempt's handler gets.
func (a *Attempt) Task() *Task { return a.task }

// Timeout bounds the attempt (its route's).
func (a *Attempt) Timeout() time.Duration { return a.pol.timeout }

// Lazy reports whether the attempt's running state was written lazily;
// Sync makes it durable.
func (a *Attempt) Lazy() bool { return a.lazy }

// Sync makes the lazily written running state durable, so that a crash
// during a long attempt is recorded as an interrupted attempt.
func (a *Attempt) Sync(ctx context.Context) error { return a.c.cfg.Store.Sync(ctx) }

// Changed receives a value after changes of the operation (coalesced),
// from before the attempt started; Canceled tells whether one of them
// canceled it.
func (a *Attempt) Changed() <-chan struct{} { return a.changed }

// Canceled reports whether the operation was canceled or deleted.
func (a *Attempt) Canceled(ctx context.Context) bool {
	op, err := a.c.cfg.Store.Get(ctx, a.op.ID)
	return err == nil && op.Status == operation.Canceled ||
		errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone)
}

// Progress records a progress report of the attempt (lazily: a crash may
// lose it).
func (a *Attempt) Progress(ctx context.Context, percent int, message string) {
	_, _ = a.c.cfg.Store.TransitionLazy(ctx, a.op.ID, func(op *operation.Operation) error {
		if !ours(op, a.op.Attempts) {
			return errSkip
		}
		op.PercentComplete, op.Message = percent, truncateUTF8(message, a.c.cfg.MaxDetailBytes)
		return nil
	})
}

// Close ends the attempt's subscription to changes.
func (a *Attempt) Close() { a.stop() }

// resultKey is the result store key of an attempt's result: a key per
// attempt, so that an attempt that lost its lease cannot write over the
// result the attempt that won recorded.
func resultKey(id string, attempt int) string { return id + "." + strconv.Itoa(attempt) }

// errTooLarge: a streamed result went past MaxResultBytes.
var errTooLarge = errors.New("result too large")

// StoreResult writes the handler's result to the result store under the
// attempt's own key and returns its record for Succeed. When the result
// store's writes are made durable by the operations store's (one engine),
// it does not wait for its own sync: Succeed's synced write does it. A
// result over MaxResultBytes is a permanent error.
func (a *Attempt) StoreResult(ctx context.Context, res *Result) (*operation.Result, error) {
	c := a.c
	if res == nil {
		res = &Result{}
	}
	ct := res.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	var r io.Reader = bytes.NewReader(res.Body)
	if res.Reader != nil {
		if cl, ok := res.Reader.(io.Closer); ok {
			defer cl.Close()
		}
		r = &limitReader{r: res.Reader, left: c.cfg.MaxResultBytes}
	} else if int64(len(res.Body)) > c.cfg.MaxResultBytes {
		return nil, a.tooLarge()
	}
	key := resultKey(a.op.ID, a.op.Attempts)
	var attrs resultstore.Attributes
	var err error
	if c.cfg.ResultsSyncedByStore {
		attrs, err = c.cfg.Results.PutLazy(ctx, key, r, ct)
	} else {
		attrs, err = c.cfg.Results.Put(ctx, key, r, ct)
	}
	if errors.Is(err, errTooLarge) {
		return nil, a.tooLarge()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// The store's error may name paths, hosts or buckets: the log
		// has it, the operation a plain account.
		a.c.cfg.Logger.Error("arr: store result", "id", a.op.ID, "key", key, "err", err)
		return nil, &operation.Problem{Type: ProblemHandlerFailed, Title: "Result not stored", Status: 500,
			Detail: "the result could not be stored"}
	}
	out := &operation.Result{Key: key, ContentType: ct, Size: attrs.Size, ETag: attrs.ETag, StatusCode: res.StatusCode}
	if len(res.Header) > 0 {
		out.Header = boundHeader(res.Header, c.cfg.MaxResultHeaderBytes).Clone()
	}
	return out, nil
}

func (a *Attempt) tooLarge() error {
	return Permanent(&operation.Problem{Type: ProblemResultTooLarge, Title: "Result too large", Status: 500,
		Detail: fmt.Sprintf("the result is over the limit of %d bytes", a.c.cfg.MaxResultBytes)})
}

// limitReader fails with errTooLarge past left bytes.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	n, err := l.r.Read(b)
	l.left -= int64(n)
	if l.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// Succeed records the attempt's success with the result StoreResult
// stored. If the operation was canceled or deleted meanwhile, or a later
// attempt owns it, the result is deleted and nothing else changes.
func (a *Attempt) Succeed(ctx context.Context, res *operation.Result) Disposition {
	now := time.Now().UTC()
	written, err := a.c.cfg.Store.Transition(ctx, a.op.ID, a.c.owing(func(op *operation.Operation) error {
		return succeed(op, a.op.Attempts, res, a.pol, now)
	}))
	a.c.kick(written)
	switch {
	case err == nil:
		if a.c.budgeted() {
			a.c.stored.add(written.ID, written.Tenant, resultBytes(res))
		}
		a.c.runs.observe(a.op.Route, now.Sub(a.op.AttemptStartedAt))
		a.c.cfg.Logger.Info("operation succeeded", "route", a.op.Route, "id", a.op.ID, "attempt", a.op.Attempts,
			"duration", now.Sub(a.op.AttemptStartedAt))
		// The terminal state is durable; a redelivery after a crash that
		// lost a lazy ack finds it and is acked without running.
		return Disposition{Settle: AckLazy, Outcome: "succeeded"}
	case errors.Is(err, errSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		// Canceled or deleted while the result was being written, or
		// this attempt lost its lease and a later one owns the
		// operation: this attempt's result is nobody's.
		a.deleteResult(ctx, res)
		return Disposition{Settle: Ack, Outcome: "canceled"}
	default:
		a.c.cfg.Logger.Error("arr: record success", "id", a.op.ID, "err", err)
		a.deleteResultUnlessRecorded(ctx, res)
		return Disposition{Settle: Nak, Delay: time.Second}
	}
}

// deleteResultUnlessRecorded deletes res after a write of the success that
// answered an error, only if the stored operation is known not to name it.
// Such an error does not say the write failed: a timeout or a lost reply
// (a store's node killed mid-write) can follow a write that landed, and
// deleting the result then would leave a succeeded operation whose result
// is gone. When the operation cannot be read, the result is kept: an
// unreferenced result costs bytes until its operation is deleted, a
// deleted one loses acknowledged work.
func (a *Attempt) deleteResultUnlessRecorded(ctx context.Context, res *operation.Result) {
	if res == nil {
		return
	}
	// ctx may be the one the failed write used up.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckTimeout)
	defer cancel()
	op, err := a.c.cfg.Store.Get(rctx, a.op.ID)
	switch {
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
	case err != nil:
		a.c.cfg.Logger.Warn("arr: result kept: cannot tell whether the success was recorded", "id", a.op.ID,
			"key", res.Key, "err", TruncateError(err, maxLoggedError))
		return
	case op.Result != nil && op.Result.Key == res.Key:
		a.c.cfg.Logger.Info("arr: the success was recorded though its write answered an error", "id", a.op.ID)
		return
	}
	_ = a.c.cfg.Results.Delete(rctx, res.Key)
}

// recheckTimeout bounds the read that tells whether a write which answered
// an error landed.
const recheckTimeout = 10 * time.Second

func (a *Attempt) deleteResult(ctx context.Context, res *operation.Result) {
	if res != nil {
		_ = a.c.cfg.Results.Delete(ctx, res.Key)
	}
}

// Fail records a failed attempt. herr is the handler's error (or the
// result store's); timedOut says the attempt's context ran out of time. The
// stored problem is herr's *operation.Problem when it is or wraps one, and
// a urn:arr:problem:handler-failed problem with herr's text otherwise.
// The operation is retried after the route's backoff (at least herr's
// RetryDelay) unless herr is Permanent or its attempts are used up.
func (a *Attempt) Fail(ctx context.Context, herr error, timedOut bool) Disposition {
	var prob *operation.Problem
	switch {
	case timedOut:
		prob = &operation.Problem{Type: ProblemTimeout, Title: "Attempt timed out", Status: 504,
			Detail: fmt.Sprintf("the handler did not finish within %s", a.pol.timeout)}
	case errors.As(herr, &prob):
		prob = prob.Clone()
	default:
		prob = &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500, Detail: herr.Error()}
	}
	prob = a.c.boundProblem(prob)
	retryAfter, _ := RetryDelay(herr)
	now := time.Now().UTC()
	var final bool
	var failures int
	written, err := a.c.cfg.Store.Transition(ctx, a.op.ID, a.c.owing(func(op *operation.Operation) (err error) {
		final, err = failAttempt(op, a.op.Attempts, prob, IsPermanent(herr), a.pol, now)
		failures = op.Failures
		return err
	}))
	a.c.kick(written)
	if err == nil {
		a.c.runs.observe(a.op.Route, now.Sub(a.op.AttemptStartedAt))
	}
	switch {
	case err == nil && final:
		a.logEnd(herr, now, IsPermanent(herr))
		return Disposition{Settle: AckLazy, Outcome: "failed"}
	case err == nil:
		delay := max(a.pol.backoff(failures), min(retryAfter, time.Hour))
		a.c.cfg.Logger.Info("operation retrying", "route", a.op.Route, "id", a.op.ID, "attempt", a.op.Attempts,
			"duration", now.Sub(a.op.AttemptStartedAt), "delay", delay, "err", TruncateError(herr, maxLoggedError))
		return Disposition{Settle: Nak, Delay: delay, Outcome: "retried"}
	case errors.Is(err, errSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		return Disposition{Settle: Ack}
	default:
		a.c.cfg.Logger.Error("arr: record failure", "id", a.op.ID, "err", TruncateError(err, maxLoggedError))
		return Disposition{Settle: Nak, Delay: time.Second}
	}
}

// Abort ends the operation failed with prob without retrying (no handler
// for its route, an unreadable request, too many interruptions).
func (a *Attempt) Abort(ctx context.Context, prob *operation.Problem) Disposition {
	a.stop()
	prob = a.c.boundProblem(prob)
	now := time.Now().UTC()
	written, err := a.c.cfg.Store.Transition(ctx, a.op.ID, a.c.owing(func(op *operation.Operation) error {
		return fail(op, a.op.Attempts, prob, a.pol, now)
	}))
	a.c.kick(written)
	switch {
	case err == nil:
		// Only the attempts cut short too often are retryable failures
		// given up on.
		a.logEnd(prob, now, prob.Type != ProblemAttemptsExhausted)
		return Disposition{Settle: AckLazy, Outcome: "failed"}
	case errors.Is(err, errSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		return Disposition{Settle: Ack}
	default:
		a.c.cfg.Logger.Error("arr: record failure", "id", a.op.ID, "err", TruncateError(err, maxLoggedError))
		return Disposition{Settle: Nak, Delay: time.Second}
	}
}

// maxLoggedError bounds the error text of a log line.
const maxLoggedError = 512

// logEnd logs the end of a failed operation, at warn: "operation failed"
// when permanent (an error no retry would help), "operation
// dead-lettered" when it used up its attempts on retryable errors.
func (a *Attempt) logEnd(err error, now time.Time, permanent bool) {
	msg := "operation dead-lettered"
	if permanent {
		msg = "operation failed"
	}
	a.c.cfg.Logger.Warn(msg, "route", a.op.Route, "id", a.op.ID, "attempt", a.op.Attempts,
		"duration", now.Sub(a.op.AttemptStartedAt), "err", TruncateError(err, maxLoggedError))
}

// GiveBack returns an attempt that shutdown interrupted to pending,
// without counting it, for another worker to run.
func (a *Attempt) GiveBack(ctx context.Context) Disposition {
	written, _ := a.c.cfg.Store.Transition(ctx, a.op.ID, a.c.owing(func(op *operation.Operation) error {
		return giveBack(op, a.op.Attempts)
	}))
	a.c.kick(written)
	a.c.cfg.Logger.Debug("attempt given back to the queue", "route", a.op.Route, "id", a.op.ID, "attempt", a.op.Attempts)
	return Disposition{Settle: Nak}
}

// Discard ends an attempt whose operation was canceled or deleted while it
// ran: its result, if it stored one, is deleted.
func (a *Attempt) Discard(ctx context.Context, res *operation.Result) Disposition {
	a.deleteResult(ctx, res)
	a.c.cfg.Logger.Info("operation canceled while it ran", "route", a.op.Route, "id", a.op.ID, "attempt", a.op.Attempts)
	return Disposition{Settle: Ack, Outcome: "canceled"}
}
