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
	// MaxAttempts is how many times an operation runs before it fails.
	// Default 3.
	MaxAttempts int
	// Backoff gives the delay before retry number attempt (1 after the
	// first failure). Default: 1s doubling per attempt, at most 5m, with
	// ±25% jitter.
	Backoff func(attempt int) time.Duration
	// Retention is how long a finished operation and its result are kept;
	// the operation's ExpiresAt is set from it when it ends. Default 24h.
	Retention time.Duration
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
	d := time.Second
	for i := 1; i < attempt && d < 5*time.Minute; i++ {
		d *= 2
	}
	d = min(d, 5*time.Minute)
	return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Pool runs operations from the queue with a bounded number of goroutines.
type Pool struct {
	cfg Config

	completed *prometheus.CounterVec
	runTime   *prometheus.HistogramVec

	meanRunNanos atomic.Int64 // EWMA of handler run time
	running      atomic.Int64
}

// New checks cfg and returns a Pool; Run starts it.
func New(cfg Config) (*Pool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg: cfg,
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
				var once sync.Once
				// The slot is the handler's: it is given back when the
				// handler returns, so that the bookkeeping after it
				// (storing the result, the synced transition, the ack)
				// waits for its fsync without keeping the next handler
				// from running. finishing bounds that bookkeeping.
				release := func() {
					once.Do(func() {
						finishing <- struct{}{}
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

// process runs one delivery. shutdown is the pool's context: when it is
// done before the handler ends, the handler was interrupted by shutdown.
func (p *Pool) process(shutdown, work context.Context, d queue.Delivery, handlerDone func()) {
	id := d.Message().ID
	st := p.cfg.Store
	// A first delivery's running state is lazily durable: if a crash loses
	// it, the redelivery sets it again. A redelivery's is synced, so that
	// the attempts of an operation that keeps crashing its worker are
	// counted and its MaxAttempts ends it (the lazy first one makes the
	// count at most one low).
	begin := st.TransitionLazy
	if d.Attempt() > 1 {
		begin = st.Transition
	}
	op, err := begin(work, id, func(op *operation.Operation) error {
		if op.Status != operation.Pending && op.Status != operation.Running {
			return opstore.ErrSkip
		}
		op.Status = operation.Running
		op.Attempts++
		op.PercentComplete = 0
		op.Message = ""
		return nil
	})
	switch {
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrSkip):
		// Deleted, or already finished or canceled: nothing to run.
		_ = queue.AckLazy(work, d)
		return
	case err != nil:
		p.cfg.Logger.Error("worker: start", "id", id, "err", err)
		_ = d.Nak(work, time.Second)
		return
	}
	if op.Attempts > p.cfg.MaxAttempts {
		// Redelivered after crashes more often than allowed: give up
		// without running it again.
		p.fail(work, d, op, &operation.Problem{Type: ProblemAttemptsExhausted, Title: "Attempts exhausted",
			Status: 500, Detail: fmt.Sprintf("the operation was started %d times without finishing", op.Attempts-1)}, true)
		return
	}
	h := p.cfg.Handlers[op.Route]
	req, err := st.GetRequest(work, id)
	if h == nil || err != nil {
		detail := fmt.Sprintf("no handler for route %q", op.Route)
		if err != nil {
			detail = "the request could not be read: " + err.Error()
		}
		p.fail(work, d, op, &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500, Detail: detail}, true)
		return
	}

	// The handler's context: canceled on timeout, on cancel of the
	// operation, on loss of the lease, and at the end of the grace period.
	hctx, cancel := context.WithTimeoutCause(work, p.cfg.Timeout, errTimeout)
	defer cancel()
	var canceledOp atomic.Bool
	prog := &progress{}
	stopWatch := p.supervise(hctx, cancel, d, id, prog, &canceledOp)

	p.running.Add(1)
	start := time.Now()
	res, herr := p.run(hctx, h, &Task{ID: id, Route: op.Route, Attempt: op.Attempts, Request: req}, prog)
	var body []byte
	var ct string
	if herr == nil {
		body, ct, herr = readResult(res)
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
		p.completed.WithLabelValues(op.Route, "canceled").Inc()
		_ = d.Ack(fin)
	case herr != nil && shutdown.Err() != nil && errors.Is(herr, context.Canceled):
		// Interrupted by shutdown: give it back without counting the attempt.
		_, _ = st.Transition(fin, id, func(op *operation.Operation) error {
			if op.Status != operation.Running {
				return opstore.ErrSkip
			}
			op.Status = operation.Pending
			op.Attempts--
			return nil
		})
		_ = d.Nak(fin, 0)
	case herr != nil:
		if errors.Is(context.Cause(hctx), errTimeout) {
			herr = fmt.Errorf("%w after %s", errTimeout, p.cfg.Timeout)
		}
		prob := &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500, Detail: herr.Error()}
		p.cfg.Logger.Warn("worker: attempt failed", "id", id, "route", op.Route, "attempt", op.Attempts, "err", herr)
		p.fail(fin, d, op, prob, IsPermanent(herr))
	default:
		p.succeed(fin, d, op, body, ct)
	}
}

var errTimeout = errors.New("attempt timed out")

// Problem types the worker records.
const (
	ProblemHandlerFailed     = "urn:arr:problem:handler-failed"
	ProblemAttemptsExhausted = "urn:arr:problem:attempts-exhausted"
)

func (p *Pool) run(ctx context.Context, h Handler, t *Task, prog Progress) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return h.Process(ctx, t, prog)
}

func readResult(res *Result) ([]byte, string, error) {
	if res == nil {
		return nil, "application/octet-stream", nil
	}
	ct := res.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	if res.Reader == nil {
		return res.Body, ct, nil
	}
	if c, ok := res.Reader.(io.Closer); ok {
		defer c.Close()
	}
	b, err := io.ReadAll(res.Reader)
	return b, ct, err
}

// supervise renews the lease, writes progress reports and watches for
// cancellation of the operation while the handler runs. The returned
// function stops it and waits for it.
func (p *Pool) supervise(ctx context.Context, cancel context.CancelFunc, d queue.Delivery, id string, prog *progress, canceledOp *atomic.Bool) func() {
	st := p.cfg.Store
	changed, stopWatch, err := st.Watch(ctx, id)
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
		beat := time.NewTicker(p.cfg.Lease / 3)
		defer beat.Stop()
		flush := time.NewTicker(250 * time.Millisecond)
		defer flush.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-beat.C:
				if err := d.InProgress(ctx, p.cfg.Lease); errors.Is(err, queue.ErrLeaseLost) {
					cancel()
					return
				}
			case <-flush.C:
				if pct, msg, ok := prog.take(); ok {
					_, _ = st.TransitionLazy(ctx, id, func(op *operation.Operation) error {
						if op.Status != operation.Running {
							return opstore.ErrSkip
						}
						op.PercentComplete, op.Message = pct, msg
						return nil
					})
				}
			case <-changed:
				if op, err := st.Get(ctx, id); err == nil && op.Status == operation.Canceled ||
					errors.Is(err, opstore.ErrNotFound) {
					canceledOp.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

func (p *Pool) succeed(ctx context.Context, d queue.Delivery, op *operation.Operation, body []byte, ct string) {
	st := p.cfg.Store
	// When the results live in the operations' database, the result need
	// not be durable before the success below is: that synced write makes
	// both durable.
	attrs, err := p.cfg.Results.PutSyncedBy(ctx, op.ID, bytes.NewReader(body), ct, st.Driver())
	if err != nil {
		p.fail(ctx, d, op, &operation.Problem{Type: ProblemHandlerFailed, Title: "Result not stored", Status: 500, Detail: err.Error()}, false)
		return
	}
	now := time.Now().UTC()
	_, err = st.Transition(ctx, op.ID, func(op *operation.Operation) error {
		if op.Status != operation.Running {
			return opstore.ErrSkip
		}
		op.Status = operation.Succeeded
		op.PercentComplete = 100
		op.Error = nil
		op.Result = &operation.Result{Key: op.ID, ContentType: ct, Size: attrs.Size, ETag: attrs.ETag}
		op.ExpiresAt = now.Add(p.cfg.Retention)
		return nil
	})
	switch {
	case err == nil:
		// The terminal state is durable; a redelivery after a crash that
		// lost a lazy ack finds it and is acked without running.
		p.completed.WithLabelValues(op.Route, "succeeded").Inc()
		_ = queue.AckLazy(ctx, d)
	case errors.Is(err, opstore.ErrSkip), errors.Is(err, opstore.ErrNotFound):
		// Canceled or deleted while the result was being written.
		_ = p.cfg.Results.Delete(ctx, op.ID)
		p.completed.WithLabelValues(op.Route, "canceled").Inc()
		_ = d.Ack(ctx)
	default:
		p.cfg.Logger.Error("worker: finish", "id", op.ID, "err", err)
		_ = d.Nak(ctx, time.Second)
	}
}

// fail records a failed attempt: the operation goes back to pending with a
// backoff, or, when permanent or out of attempts, ends failed.
func (p *Pool) fail(ctx context.Context, d queue.Delivery, op *operation.Operation, prob *operation.Problem, permanent bool) {
	final := permanent || op.Attempts >= p.cfg.MaxAttempts
	now := time.Now().UTC()
	_, err := p.cfg.Store.Transition(ctx, op.ID, func(op *operation.Operation) error {
		if op.Status != operation.Running {
			return opstore.ErrSkip
		}
		op.Error = prob
		if final {
			op.Status = operation.Failed
			op.ExpiresAt = now.Add(p.cfg.Retention)
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
		_ = d.Nak(ctx, p.cfg.Backoff(op.Attempts))
	case errors.Is(err, opstore.ErrSkip), errors.Is(err, opstore.ErrNotFound):
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
