package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// Config configures a Pool. Every field but the stores and Handlers has a
// default, given in its comment.
type Config struct {
	Store   *opstore.Store
	Queue   *queue.Queue
	Results *resultstore.Store

	// Handlers maps a route name to the handler that runs its operations.
	// An operation whose route has no handler fails permanently.
	Handlers map[string]Handler
	// Routes holds per-route settings; a zero field of a Policy, or a route
	// without one, takes the pool-wide value below.
	Routes map[string]Policy

	// Concurrency is how many handlers run at once. Default 16. When a
	// handler returns, its result and state are recorded (waiting for an
	// fsync) while the next handler already runs; up to 4×Concurrency
	// operations can be in that step.
	Concurrency int
	// Lease is how long a delivery is leased; the worker renews it every
	// Lease/3 while the handler runs. Default 30s.
	Lease time.Duration
	// Timeout bounds one attempt; the handler's context is canceled then.
	// Default 10m.
	Timeout time.Duration
	// MaxAttempts is how many attempts of an operation may fail (a handler
	// error or a timeout) before it fails for good. Default 3.
	MaxAttempts int
	// MaxInterruptions is how many attempts of an operation may be cut
	// short by a worker that died or lost its lease before the operation
	// fails with urn:arr:problem:attempts-exhausted: a separate budget, so
	// that crashes of the process do not use up an innocent operation's
	// attempts, while an operation that kills its worker every time still
	// ends. Default 10.
	MaxInterruptions int
	// MaxResultBytes bounds a result; a larger one fails the operation
	// permanently. Default 64 MiB: the embedded result store holds a
	// result in memory while it writes it (file: results stream to disk
	// and suit larger limits).
	MaxResultBytes int64
	// Backoff gives the delay before retry number attempt (1 after the
	// first failure). Default: 1s doubling per attempt, at most 5m, with
	// ±25% jitter.
	Backoff func(attempt int) time.Duration
	// Retention is how long a finished operation and its result are kept;
	// the operation's ExpiresAt is set from it when it ends. Default 24h.
	Retention time.Duration
	// Tombstone is how long, after its deletion, an operation's status
	// answers 410 Gone rather than 404. Default 7 days.
	Tombstone time.Duration
	// ShutdownGrace is how long Run lets running handlers finish after its
	// context is canceled; the rest are canceled and given back to the
	// queue. Default 30s.
	ShutdownGrace time.Duration
	// Logger receives one line per failed attempt. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when not nil, gets the pool's Prometheus metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.Queue == nil || c.Results == nil {
		return errors.New("worker: Store, Queue and Results are required")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.MaxInterruptions <= 0 {
		c.MaxInterruptions = 10
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = 64 << 20
	}
	if c.Tombstone <= 0 {
		c.Tombstone = 7 * 24 * time.Hour
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// DefaultBackoff is 1s doubling per attempt, capped at 5m, with ±25% jitter.
func DefaultBackoff(attempt int) time.Duration {
	return ExponentialBackoff(time.Second, 5*time.Minute)(attempt)
}

// ExponentialBackoff returns a backoff of first before the first retry,
// doubling with each further one up to limit, with ±25% jitter so that
// operations that failed together do not retry together.
func ExponentialBackoff(first, limit time.Duration) func(attempt int) time.Duration {
	if first <= 0 {
		first = time.Second
	}
	limit = max(limit, first)
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
	}
}

// Policy is a route's execution settings. A zero field takes the pool's
// value from Config.
type Policy struct {
	// Timeout bounds one attempt.
	Timeout time.Duration
	// MaxAttempts is how many attempts may fail before the operation fails.
	MaxAttempts int
	// Backoff gives the delay before retry number attempt.
	Backoff func(attempt int) time.Duration
	// Concurrency, when > 0, bounds how many of the route's operations this
	// pool runs at once (within Config.Concurrency); 0 is no route limit.
	Concurrency int
	// Retention is how long the route's finished operations are kept.
	Retention time.Duration
	// Tombstone is how long their status answers 410 after deletion.
	Tombstone time.Duration
}

// policy is a route's Policy with the pool's defaults filled in.
func (p *Pool) policy(route string) Policy {
	r := p.cfg.Routes[route]
	if r.Timeout <= 0 {
		r.Timeout = p.cfg.Timeout
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = p.cfg.MaxAttempts
	}
	if r.Backoff == nil {
		r.Backoff = p.cfg.Backoff
	}
	if r.Retention <= 0 {
		r.Retention = p.cfg.Retention
	}
	if r.Tombstone <= 0 {
		r.Tombstone = p.cfg.Tombstone
	}
	return r
}

// Pool runs operations from the queue with a bounded number of goroutines.
type Pool struct {
	cfg Config

	completed *prometheus.CounterVec
	runTime   *prometheus.HistogramVec

	meanRunNanos atomic.Int64 // EWMA of handler run time
	running      atomic.Int64
	limits       map[string]*routeLimit // routes with a concurrency limit
}

// New checks cfg and returns a Pool; Run starts it.
func New(cfg Config) (*Pool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:    cfg,
		limits: map[string]*routeLimit{},
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arr_operations_completed_total",
			Help: "Attempts that ended, by route and outcome (succeeded, failed, retried, canceled).",
		}, []string{"route", "outcome"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "arr_handler_duration_seconds",
			Help:    "Run time of handler attempts, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12),
		}, []string{"route"}),
	}
	for name, pol := range cfg.Routes {
		if pol.Concurrency > 0 {
			p.limits[name] = &routeLimit{slots: make(chan struct{}, min(pol.Concurrency, cfg.Concurrency))}
		}
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.completed, p.runTime, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "arr_operations_running", Help: "Operations whose handler is running now.",
		}, func() float64 { return float64(p.running.Load()) })} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// MeanRunTime is a moving average of recent handler run times (0 before the
// first one); the api uses it to estimate Retry-After.
func (p *Pool) MeanRunTime() time.Duration { return time.Duration(p.meanRunNanos.Load()) }

// Concurrency is the number of operations the pool runs at once.
func (p *Pool) Concurrency() int { return p.cfg.Concurrency }

// Run takes and runs deliveries until ctx is canceled, then lets running
// handlers finish for up to ShutdownGrace, cancels the rest (their
// operations go back to the queue) and returns nil.
func (p *Pool) Run(ctx context.Context) error {
	// work outlives ctx by the grace period, so that handlers can finish.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	slots := make(chan struct{}, p.cfg.Concurrency)
	finishing := make(chan struct{}, 4*p.cfg.Concurrency)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		// Wait for one free slot, then take as many as are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		n := 1
	fill:
		for n < p.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		ds, err := p.cfg.Queue.Receive(ctx, n, p.cfg.Lease)
		for i := len(ds); i < n; i++ {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				break
			}
			p.cfg.Logger.Error("worker: receive", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var routeSlot chan struct{}
				if rl := p.limits[string(d.Message().Body)]; rl != nil {
					if !rl.acquire(ctx, work, d, slots, p.cfg.Lease) {
						return
					}
					routeSlot = rl.slots
				}
				var once sync.Once
				// The slot is the handler's: it is given back when the
				// handler returns, so that the bookkeeping after it
				// (storing the result, the synced transition, the ack)
				// waits for its fsync without keeping the next handler
				// from running. finishing bounds that bookkeeping.
				release := func() {
					once.Do(func() {
						finishing <- struct{}{}
						if routeSlot != nil {
							<-routeSlot
						}
						<-slots
					})
				}
				defer func() { release(); <-finishing }()
				p.process(ctx, work, d, release)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownGrace):
		stopWork()
		<-done
	}
	return nil
}

// routeLimit holds a route's concurrency limit in one pool.
type routeLimit struct {
	slots   chan struct{} // one per running operation of the route
	waiting atomic.Int64  // deliveries waiting for a slot
}

// acquire takes a route slot for d, which holds a pool slot. When the
// route is full, d waits without its pool slot (so that other routes' work
// runs meanwhile), renewing its lease, and takes a pool slot again once it
// has a route slot. At most 4× the limit wait; beyond that, and on
// shutdown, d is given back to the queue (its operation untouched) and
// acquire returns false.
func (rl *routeLimit) acquire(shutdown, work context.Context, d queue.Delivery, slots chan struct{}, lease time.Duration) bool {
	select {
	case rl.slots <- struct{}{}:
		return true
	default:
	}
	<-slots
	if rl.waiting.Add(1) > int64(4*cap(rl.slots)) {
		rl.waiting.Add(-1)
		_ = d.Nak(work, time.Second+time.Duration(rand.Int64N(int64(time.Second))))
		return false
	}
	defer rl.waiting.Add(-1)
	beat := time.NewTicker(lease / 3)
	defer beat.Stop()
	for {
		select {
		case rl.slots <- struct{}{}:
			select {
			case slots <- struct{}{}:
				return true
			case <-shutdown.Done():
				<-rl.slots
				_ = d.Nak(work, 0)
				return false
			}
		case <-beat.C:
			if d.InProgress(work, lease) != nil {
				return false
			}
		case <-shutdown.Done():
			_ = d.Nak(work, 0)
			return false
		}
	}
}

// process runs one delivery. shutdown is the pool's context: when it is
// done before the handler ends, the handler was interrupted by shutdown.
func (p *Pool) process(shutdown, work context.Context, d queue.Delivery, handlerDone func()) {
	id := d.Message().ID
	st := p.cfg.Store
	now := time.Now().UTC()
	// A first delivery's running state is lazily durable: if a crash loses
	// it, the redelivery sets it again. A redelivery's is synced, so that
	// the interruptions of an operation that keeps crashing its worker are
	// counted and MaxInterruptions ends it.
	begin := st.TransitionLazy
	if d.Attempt() > 1 {
		begin = st.Transition
	}
	var interrupted bool
	op, err := begin(work, id, func(op *operation.Operation) error {
		if op.Status != operation.Pending && op.Status != operation.Running {
			return opstore.ErrSkip
		}
		if op.Status == operation.Running {
			// The previous attempt's worker died or lost its lease.
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
		return nil
	})
	switch {
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone), errors.Is(err, opstore.ErrSkip):
		// Deleted, or already finished or canceled: nothing to run.
		_ = queue.AckLazy(work, d)
		return
	case err != nil:
		p.cfg.Logger.Error("worker: start", "id", id, "err", err)
		_ = d.Nak(work, time.Second)
		return
	}
	pol := p.policy(op.Route)
	if interrupted && op.Interruptions >= p.cfg.MaxInterruptions {
		// Cut short by crashes or lost leases more often than allowed:
		// give up without running it again.
		p.fail(work, d, op, pol, now, &operation.Problem{Type: ProblemAttemptsExhausted, Title: "Attempts exhausted",
			Status: 500, Detail: fmt.Sprintf("%d attempts were cut short by a worker that stopped or lost its lease", op.Interruptions)})
		return
	}
	h := p.cfg.Handlers[op.Route]
	req, err := st.GetRequest(work, id)
	if h == nil || err != nil {
		detail := fmt.Sprintf("no handler for route %q", op.Route)
		if err != nil {
			detail = "the request could not be read: " + err.Error()
		}
		p.fail(work, d, op, pol, now, &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500, Detail: detail})
		return
	}

	// The handler's context: canceled on timeout, on cancel of the
	// operation, on loss of the lease, and at the end of the grace period.
	hctx, cancel := context.WithTimeoutCause(work, pol.Timeout, errTimeout)
	defer cancel()
	var canceledOp atomic.Bool
	prog := &progress{}
	stopWatch := p.supervise(work, hctx, cancel, d, id, op.Attempts, prog, &canceledOp, d.Attempt() == 1)

	p.running.Add(1)
	start := time.Now()
	res, herr := p.run(hctx, h, &Task{ID: id, Route: op.Route, Attempt: op.Attempts, Request: req}, prog)
	var stored *operation.Result
	if herr == nil {
		// The result is stored while the attempt is still supervised: a
		// streamed result is read from the handler's source (an upstream's
		// response, a spooled stdout) under the attempt's context.
		stored, herr = p.storeResult(hctx, op.ID, res)
	}
	elapsed := time.Since(start)
	p.running.Add(-1)
	stopWatch()
	handlerDone()
	// The bookkeeping below must happen even when work was canceled at the
	// end of the shutdown grace.
	fin, cancelFin := context.WithTimeout(context.WithoutCancel(work), 30*time.Second)
	defer cancelFin()
	p.runTime.WithLabelValues(op.Route).Observe(elapsed.Seconds())
	p.observe(elapsed)

	switch {
	case canceledOp.Load():
		if stored != nil {
			_ = p.cfg.Results.Delete(fin, op.ID)
		}
		p.completed.WithLabelValues(op.Route, "canceled").Inc()
		_ = d.Ack(fin)
	case herr != nil && shutdown.Err() != nil && errors.Is(herr, context.Canceled):
		// Interrupted by shutdown: give it back without counting the attempt.
		_, _ = st.Transition(fin, id, func(cur *operation.Operation) error {
			if !ours(cur, op.Attempts) {
				return opstore.ErrSkip
			}
			cur.Status = operation.Pending
			cur.Attempts--
			return nil
		})
		_ = d.Nak(fin, 0)
	case herr != nil:
		var prob *operation.Problem
		switch {
		case errors.Is(context.Cause(hctx), errTimeout):
			prob = &operation.Problem{Type: ProblemTimeout, Title: "Attempt timed out", Status: 504,
				Detail: fmt.Sprintf("the handler did not finish within %s", pol.Timeout)}
		case errors.As(herr, &prob):
			prob = prob.Clone()
		default:
			prob = &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500, Detail: herr.Error()}
		}
		p.cfg.Logger.Warn("worker: attempt failed", "id", id, "route", op.Route, "attempt", op.Attempts, "err", herr)
		retryAt, _ := RetryDelay(herr)
		p.failAttempt(fin, d, op, pol, prob, IsPermanent(herr), retryAt)
	default:
		p.succeed(fin, d, op, pol, stored)
	}
}

// syncAfter is how long a handler runs before its lazily written running
// state is synced.
const syncAfter = 200 * time.Millisecond

var (
	errTimeout  = errors.New("attempt timed out")
	errTooLarge = errors.New("result too large")
)

// Problem types the worker records.
const (
	ProblemHandlerFailed     = "urn:arr:problem:handler-failed"
	ProblemTimeout           = "urn:arr:problem:timeout"
	ProblemAttemptsExhausted = "urn:arr:problem:attempts-exhausted"
	ProblemWorkerLost        = "urn:arr:problem:worker-lost"
	ProblemResultTooLarge    = "urn:arr:problem:result-too-large"
)

func (p *Pool) run(ctx context.Context, h Handler, t *Task, prog Progress) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return h.Process(ctx, t, prog)
}

// storeResult writes a handler's result to the result store, synced by the
// store's next durable write when the result store can (see
// resultstore.Store.PutSyncedBy), and returns its record.
func (p *Pool) storeResult(ctx context.Context, id string, res *Result) (*operation.Result, error) {
	if res == nil {
		res = &Result{}
	}
	ct := res.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	var r io.Reader = bytes.NewReader(res.Body)
	if res.Reader != nil {
		if c, ok := res.Reader.(io.Closer); ok {
			defer c.Close()
		}
		r = &limitReader{r: res.Reader, left: p.cfg.MaxResultBytes}
	} else if int64(len(res.Body)) > p.cfg.MaxResultBytes {
		return nil, p.tooLarge()
	}
	attrs, err := p.cfg.Results.PutSyncedBy(ctx, id, r, ct, p.cfg.Store.Driver())
	if errors.Is(err, errTooLarge) {
		return nil, p.tooLarge()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, &operation.Problem{Type: ProblemHandlerFailed, Title: "Result not stored", Status: 500, Detail: err.Error()}
	}
	out := &operation.Result{Key: id, ContentType: ct, Size: attrs.Size, ETag: attrs.ETag, StatusCode: res.StatusCode}
	if len(res.Header) > 0 {
		out.Header = res.Header.Clone()
	}
	return out, nil
}

func (p *Pool) tooLarge() error {
	return Permanent(&operation.Problem{Type: ProblemResultTooLarge, Title: "Result too large", Status: 500,
		Detail: fmt.Sprintf("the result is over the limit of %d bytes", p.cfg.MaxResultBytes)})
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

// supervise renews the lease, writes progress reports and watches for
// cancellation of the operation while the handler runs. When the running
// state was written lazily, it is made durable once the handler has run
// for a moment (syncAfter), so that a crash during a long attempt is
// recorded as an interrupted attempt. The returned function stops it and
// waits for it.
func (p *Pool) supervise(work, hctx context.Context, cancel context.CancelFunc, d queue.Delivery, id string, attempt int, prog *progress, canceledOp *atomic.Bool, lazyStart bool) func() {
	st := p.cfg.Store
	changed, stopWatch, err := st.Watch(work, id)
	if err != nil {
		changed = nil // no cancel signal; the final transition still refuses
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if stopWatch != nil {
			defer stopWatch()
		}
		// The lease is renewed until the handler has returned, also after
		// its context ended: a command given its kill grace, say, must not
		// see its operation delivered to another worker meanwhile.
		beatTicker := time.NewTicker(p.cfg.Lease / 3)
		defer beatTicker.Stop()
		beat := beatTicker.C
		flush := time.NewTicker(250 * time.Millisecond)
		defer flush.Stop()
		var syncStart <-chan time.Time
		if lazyStart {
			t := time.NewTimer(syncAfter)
			defer t.Stop()
			syncStart = t.C
		}
		ended := hctx.Done()
		for {
			select {
			case <-stop:
				return
			case <-ended:
				// Timed out, canceled or shutting down: the handler is
				// winding down; no more progress or cancel checks.
				ended, changed, syncStart = nil, nil, nil
			case <-syncStart:
				_ = st.Sync(hctx)
			case <-beat:
				if err := d.InProgress(work, p.cfg.Lease); errors.Is(err, queue.ErrLeaseLost) {
					cancel()
					beat = nil
				}
			case <-flush.C:
				if ended == nil {
					continue
				}
				if pct, msg, ok := prog.take(); ok {
					_, _ = st.TransitionLazy(hctx, id, func(op *operation.Operation) error {
						if !ours(op, attempt) {
							return opstore.ErrSkip
						}
						op.PercentComplete, op.Message = pct, msg
						return nil
					})
				}
			case <-changed:
				if op, err := st.Get(hctx, id); err == nil && op.Status == operation.Canceled ||
					errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
					canceledOp.Store(true)
					cancel()
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

func (p *Pool) succeed(ctx context.Context, d queue.Delivery, op *operation.Operation, pol Policy, res *operation.Result) {
	now := time.Now().UTC()
	superseded := false
	_, err := p.cfg.Store.Transition(ctx, op.ID, func(cur *operation.Operation) error {
		if !ours(cur, op.Attempts) {
			superseded = cur.Attempts != op.Attempts
			return opstore.ErrSkip
		}
		cur.Status = operation.Succeeded
		cur.PercentComplete, cur.Message = 100, ""
		cur.Error = nil
		cur.Result = res
		cur.ExpiresAt = now.Add(pol.Retention)
		cur.TombstoneUntil = cur.ExpiresAt.Add(pol.Tombstone)
		return nil
	})
	switch {
	case err == nil:
		// The terminal state is durable; a redelivery after a crash that
		// lost a lazy ack finds it and is acked without running.
		p.completed.WithLabelValues(op.Route, "succeeded").Inc()
		_ = queue.AckLazy(ctx, d)
	case errors.Is(err, opstore.ErrSkip) && superseded:
		// This attempt lost its lease and a later one owns the operation
		// (and writes the same result key): leave both to it.
		_ = d.Ack(ctx)
	case errors.Is(err, opstore.ErrSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		// Canceled or deleted while the result was being written.
		_ = p.cfg.Results.Delete(ctx, op.ID)
		p.completed.WithLabelValues(op.Route, "canceled").Inc()
		_ = d.Ack(ctx)
	default:
		p.cfg.Logger.Error("worker: finish", "id", op.ID, "err", err)
		_ = d.Nak(ctx, time.Second)
	}
}

// ours reports whether op is still in the attempt numbered attempt: a
// worker that lost its lease must not end (or report progress on) the
// attempt that a later delivery started.
func ours(op *operation.Operation, attempt int) bool {
	return op.Status == operation.Running && op.Attempts == attempt
}

// failAttempt records a failed attempt: the operation goes back to pending
// with a backoff (at least retryAfter), or, when permanent or out of
// attempts, ends failed.
func (p *Pool) failAttempt(ctx context.Context, d queue.Delivery, op *operation.Operation, pol Policy, prob *operation.Problem, permanent bool, retryAfter time.Duration) {
	now := time.Now().UTC()
	var final bool
	var failures int
	attempt := op.Attempts
	_, err := p.cfg.Store.Transition(ctx, op.ID, func(op *operation.Operation) error {
		if !ours(op, attempt) {
			return opstore.ErrSkip
		}
		op.Failures++
		failures = op.Failures
		final = permanent || op.Failures >= pol.MaxAttempts
		op.AddAttempt(operation.Attempt{Number: op.Attempts, StartedAt: op.AttemptStartedAt, EndedAt: now,
			Outcome: operation.OutcomeFailed, Error: prob})
		op.Error = prob
		if final {
			op.Status = operation.Failed
			op.ExpiresAt = now.Add(pol.Retention)
			op.TombstoneUntil = op.ExpiresAt.Add(pol.Tombstone)
		} else {
			op.Status = operation.Pending
		}
		return nil
	})
	switch {
	case err == nil && final:
		p.completed.WithLabelValues(op.Route, "failed").Inc()
		_ = queue.AckLazy(ctx, d)
	case err == nil:
		p.completed.WithLabelValues(op.Route, "retried").Inc()
		_ = d.Nak(ctx, max(pol.Backoff(failures), min(retryAfter, time.Hour)))
	case errors.Is(err, opstore.ErrSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		_ = d.Ack(ctx)
	default:
		p.cfg.Logger.Error("worker: record failure", "id", op.ID, "err", err)
		_ = d.Nak(ctx, time.Second)
	}
}

// fail ends op failed without running it (no handler, unreadable request,
// interruptions exhausted).
func (p *Pool) fail(ctx context.Context, d queue.Delivery, op *operation.Operation, pol Policy, now time.Time, prob *operation.Problem) {
	attempt := op.Attempts
	_, err := p.cfg.Store.Transition(ctx, op.ID, func(op *operation.Operation) error {
		if !ours(op, attempt) {
			return opstore.ErrSkip
		}
		op.Error = prob
		op.Status = operation.Failed
		op.ExpiresAt = now.Add(pol.Retention)
		op.TombstoneUntil = op.ExpiresAt.Add(pol.Tombstone)
		return nil
	})
	switch {
	case err == nil:
		p.completed.WithLabelValues(op.Route, "failed").Inc()
		_ = queue.AckLazy(ctx, d)
	case errors.Is(err, opstore.ErrSkip), errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		_ = d.Ack(ctx)
	default:
		p.cfg.Logger.Error("worker: record failure", "id", op.ID, "err", err)
		_ = d.Nak(ctx, time.Second)
	}
}

func (p *Pool) observe(d time.Duration) {
	for {
		old := p.meanRunNanos.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if p.meanRunNanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// progress holds the handler's latest report until the supervisor writes it.
type progress struct {
	mu      sync.Mutex
	pct     int
	msg     string
	pending bool
}

func (p *progress) Report(percent int, message string) {
	percent = max(0, min(100, percent))
	p.mu.Lock()
	p.pct, p.msg, p.pending = percent, message, true
	p.mu.Unlock()
}

func (p *progress) take() (int, string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := p.pending
	p.pending = false
	return p.pct, p.msg, ok
}
