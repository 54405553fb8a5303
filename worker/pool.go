package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/queue"
)

// Problem types the core records for attempts; see package arr.
const (
	ProblemHandlerFailed     = arr.ProblemHandlerFailed
	ProblemTimeout           = arr.ProblemTimeout
	ProblemAttemptsExhausted = arr.ProblemAttemptsExhausted
	ProblemWorkerLost        = arr.ProblemWorkerLost
	ProblemResultTooLarge    = arr.ProblemResultTooLarge
)

// Defaults of Config.
const (
	// DefaultConcurrency is how many handlers a pool runs at once.
	DefaultConcurrency = 16
	// DefaultLease is how long a delivery is leased.
	DefaultLease = 30 * time.Second
	// DefaultShutdownGrace is how long running handlers may finish on
	// shutdown.
	DefaultShutdownGrace = 30 * time.Second
	// DefaultRouteShare is the share of a pool's slots one route may hold
	// when it sets no Concurrency of its own.
	DefaultRouteShare = 0.75
)

// Config configures a Pool. Client is required; every other field has a
// default, given in its comment.
type Config struct {
	// Client is the core the pool reports to: it decides every state of
	// an operation; the pool only runs handlers and settles deliveries.
	Client *arr.Client

	// Handlers maps a route name to the handler that runs its operations,
	// over the Client's routes' handlers. An operation whose route has no
	// handler fails permanently.
	Handlers map[string]Handler

	// Concurrency is how many handlers run at once. Default
	// DefaultConcurrency (16). When a handler returns, its result and
	// state are recorded (waiting for an fsync) while the next handler
	// already runs; up to 4×Concurrency operations can be in that step.
	Concurrency int
	// Lease is how long a delivery is leased; the worker renews it every
	// Lease/3 from the delivery's receipt until it is settled (through the
	// handler's run and the write of its outcome). Default DefaultLease
	// (30s).
	Lease time.Duration
	// ShutdownGrace is how long Run lets running handlers finish after its
	// context is canceled; the rest are canceled and given back to the
	// queue. Default DefaultShutdownGrace (30s).
	ShutdownGrace time.Duration
	// RouteShare is the share of Concurrency one route may hold when it
	// sets no Concurrency of its own (arr.Route.Concurrency, which wins
	// when set): ceil(RouteShare×Concurrency) slots, and never all of them
	// when Concurrency > 1, so that a route whose handlers are slow or
	// stuck (a slow upstream) leaves slots to the other routes. Its
	// operations beyond that wait for a slot of the route without holding
	// one of the pool's, as with a route's own Concurrency. Default
	// DefaultRouteShare (3/4: 12 of 16 slots); 1 or more: no default share.
	RouteShare float64
	// Logger receives the pool's errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when not nil, gets the pool's Prometheus metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("worker: Client is required")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RouteShare <= 0 {
		c.RouteShare = DefaultRouteShare
	}
	return nil
}

// routeShare is how many slots a route without a Concurrency of its own
// may hold: ceil(share×concurrency), at least 1 and at most
// concurrency-1; 0 when that is every slot (no limit).
func routeShare(share float64, concurrency int) int {
	if share >= 1 || concurrency <= 1 {
		return 0
	}
	n := min(max(int(math.Ceil(share*float64(concurrency))), 1), concurrency-1)
	return n
}

// Pool runs operations from the queue with a bounded number of goroutines.
type Pool struct {
	cfg      Config
	handlers map[string]Handler

	completed *prometheus.CounterVec
	runTime   *prometheus.HistogramVec

	meanRunNanos atomic.Int64 // EWMA of handler run time
	running      atomic.Int64
	limits       map[string]*routeLimit // routes with a concurrency limit

	// waiting counts the deliveries waiting for a slot of their route;
	// progressed is signaled when one gets it (see Run).
	waiting    atomic.Int64
	progressed chan struct{}

	// busy holds the operations this pool has a delivery of in hand, from
	// its receipt to its settlement (see claim).
	busyMu sync.Mutex
	busy   map[string]struct{}
}

// claim marks operation id as in this pool's hands and returns true, or
// returns false when it already is: the queue delivered its message again
// while this pool still works on (or records the outcome of) an earlier
// delivery, whose lease ran out under a stalled write or a lost heartbeat.
// Starting a second attempt then would only wait for the first one's
// writes, and count it as interrupted although it is not over.
func (p *Pool) claim(id string) bool {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if _, ok := p.busy[id]; ok {
		return false
	}
	p.busy[id] = struct{}{}
	return true
}

func (p *Pool) unclaim(id string) {
	p.busyMu.Lock()
	delete(p.busy, id)
	p.busyMu.Unlock()
}

// busyDelay is how long a delivery of an operation the pool is busy with
// is given back for.
const busyDelay = time.Second

// New checks cfg and returns a Pool; Run starts it.
func New(cfg Config) (*Pool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:        cfg,
		handlers:   map[string]Handler{},
		limits:     map[string]*routeLimit{},
		progressed: make(chan struct{}, 1),
		busy:       map[string]struct{}{},
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
	for _, r := range cfg.Client.Routes() {
		if r.Handler != nil {
			p.handlers[r.Name] = r.Handler
		}
		if p.limits[r.Name] != nil {
			continue
		}
		if r.Concurrency > 0 {
			p.limits[r.Name] = &routeLimit{slots: make(chan struct{}, min(r.Concurrency, cfg.Concurrency))}
		} else if n := routeShare(cfg.RouteShare, cfg.Concurrency); n > 0 {
			p.limits[r.Name] = &routeLimit{slots: make(chan struct{}, n)}
		}
	}
	for name, h := range cfg.Handlers {
		p.handlers[name] = h
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

// Running is the number of operations whose handler is running now.
func (p *Pool) Running() int64 { return p.running.Load() }

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
		// While many deliveries wait for a slot of their route, take no
		// more until one of them got its slot, or for a moment: the
		// queue is then drained at the pace its routes run (as when the
		// pool's slots are all taken), and a route whose slots stay
		// taken still lets the loop reach other routes' operations.
		if p.waiting.Load() >= int64(p.cfg.Concurrency) {
			t := time.NewTimer(waitPause)
			select {
			case <-p.progressed:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
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
		ds, err := p.cfg.Client.Receive(ctx, n, p.cfg.Lease)
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
		if len(ds) > 0 {
			p.cfg.Logger.Debug("worker: claimed deliveries", "n", len(ds), "free_slots", n-len(ds))
		}
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg, err := arr.DecodeMessage(d.Message())
				if err != nil {
					// Written by a later arr: leave it to a worker that
					// reads it.
					p.cfg.Logger.Error("worker: message", "id", msg.ID, "err", err)
					<-slots
					_ = d.Nak(work, time.Minute)
					return
				}
				if !p.claim(msg.ID) {
					// Given back untouched: the earlier delivery's run
					// settles the operation, or this one runs it after.
					p.cfg.Logger.Debug("worker: delivered again while still in hand; given back", "id", msg.ID, "delay", busyDelay)
					<-slots
					_ = d.Nak(work, busyDelay)
					return
				}
				defer p.unclaim(msg.ID)
				// The lease is held from here until the delivery is
				// settled (process stops it first).
				l := p.holdLease(d, msg.ID)
				defer l.stop()
				var routeSlot chan struct{}
				if rl := p.limits[msg.Route]; rl != nil {
					if !rl.acquire(ctx, work, d, slots, l, &p.waiting, p.progressed) {
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
				p.process(ctx, work, d, msg.ID, release, l)
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

// holdSlot is how long a delivery whose route is at its limit waits for
// a slot of its route while it keeps its pool slot (see acquire).
const holdSlot = 20 * time.Millisecond

// waitPause is how long Run waits, while many deliveries wait for their
// routes' slots, for one of them to get its slot before it takes more.
const waitPause = 50 * time.Millisecond

// routeLimit holds a route's concurrency limit in one pool.
type routeLimit struct {
	slots   chan struct{} // one per running operation of the route
	waiting atomic.Int64  // deliveries waiting for a slot
}

// acquire takes a route slot for d, which holds a pool slot. When the
// route is full, d waits for holdSlot with its pool slot, and then
// without it (so that other routes' work runs meanwhile; its lease is
// held meanwhile, see holdLease), and takes a pool slot again once it has
// a route slot. At most 4× the limit wait; beyond that, and on shutdown,
// d is given back to the queue (its operation untouched) and acquire
// returns false. It also returns false when the lease is lost: the
// delivery is another's now.
func (rl *routeLimit) acquire(shutdown, work context.Context, d queue.Delivery, slots chan struct{}, l *lease,
	poolWaiting *atomic.Int64, progressed chan struct{}) bool {
	select {
	case rl.slots <- struct{}{}:
		return true
	default:
	}
	// A route whose operations are quick frees a slot within moments:
	// wait that long with the pool's slot, so that a busy route that runs
	// quickly is drained as without a limit (the loop taking deliveries
	// in batches as slots free). Only then give the pool's slot back to
	// other routes.
	hold := time.NewTimer(holdSlot)
	select {
	case rl.slots <- struct{}{}:
		hold.Stop()
		return true
	case <-hold.C:
	case <-shutdown.Done():
		hold.Stop()
	}
	<-slots
	if shutdown.Err() != nil {
		l.giveBack(work, d, 0)
		return false
	}
	if rl.waiting.Add(1) > int64(4*cap(rl.slots)) {
		rl.waiting.Add(-1)
		l.giveBack(work, d, time.Second+time.Duration(rand.Int64N(int64(time.Second))))
		return false
	}
	poolWaiting.Add(1)
	defer func() {
		rl.waiting.Add(-1)
		poolWaiting.Add(-1)
	}()
	for {
		select {
		case rl.slots <- struct{}{}:
			select {
			case progressed <- struct{}{}:
			default:
			}
			select {
			case slots <- struct{}{}:
				return true
			case <-shutdown.Done():
				<-rl.slots
				l.giveBack(work, d, 0)
				return false
			}
		case <-l.lost:
			return false
		case <-shutdown.Done():
			l.giveBack(work, d, 0)
			return false
		}
	}
}

// settle stops holding d's lease and does with d what the core said.
func (p *Pool) settle(ctx context.Context, d queue.Delivery, l *lease, id, route string, disp arr.Disposition) {
	l.stop()
	if disp.Outcome != "" {
		p.completed.WithLabelValues(route, disp.Outcome).Inc()
	}
	switch disp.Settle {
	case arr.Ack:
		_ = d.Ack(ctx)
	case arr.AckLazy:
		_ = queue.AckLazy(ctx, d)
	case arr.Nak:
		_ = d.Nak(ctx, disp.Delay)
	}
	if err := p.cfg.Client.Settled(ctx, id, disp); err != nil && ctx.Err() == nil {
		p.cfg.Logger.Error("worker: after settling", "id", id, "err", err)
	}
}

// process runs one delivery of operation id. shutdown is the pool's
// context: when it is done before the handler ends, the handler was
// interrupted by shutdown.
func (p *Pool) process(shutdown, work context.Context, d queue.Delivery, id string, handlerDone func(), l *lease) {
	a, disp, err := p.cfg.Client.StartAttempt(work, id, d.Attempt() == 1)
	if err != nil {
		p.cfg.Logger.Error("worker: start", "id", id, "err", err)
	}
	if a == nil {
		p.settle(work, d, l, id, "", disp)
		return
	}
	defer a.Close()
	t := a.Task()
	p.cfg.Logger.Debug("attempt started", "route", t.Route, "id", id, "attempt", t.Attempt, "delivery", d.Attempt())
	h := p.handlers[t.Route]
	if h == nil {
		p.settle(work, d, l, id, t.Route, a.Abort(work, &operation.Problem{Type: ProblemHandlerFailed, Title: "Handler failed", Status: 500,
			Detail: fmt.Sprintf("no handler for route %q", t.Route)}))
		return
	}

	// The handler's context: canceled on timeout, on cancel of the
	// operation, on loss of the lease, and at the end of the grace period.
	hctx, cancel := context.WithTimeoutCause(work, a.Timeout(), errTimeout)
	defer cancel()
	var canceledOp atomic.Bool
	prog := &progress{}
	stopWatch := p.supervise(hctx, cancel, l, a, prog, &canceledOp)

	p.running.Add(1)
	start := time.Now()
	res, herr := p.run(hctx, h, t, prog)
	var stored *operation.Result
	if herr == nil {
		// The result is stored while the attempt is still supervised: a
		// streamed result is read from the handler's source (an upstream's
		// response, a spooled stdout) under the attempt's context.
		stored, herr = a.StoreResult(hctx, res)
	}
	elapsed := time.Since(start)
	p.running.Add(-1)
	stopWatch()
	handlerDone()
	// The bookkeeping below must happen even when work was canceled at the
	// end of the shutdown grace.
	fin, cancelFin := context.WithTimeout(context.WithoutCancel(work), 30*time.Second)
	defer cancelFin()
	p.runTime.WithLabelValues(t.Route).Observe(elapsed.Seconds())
	p.observe(elapsed)

	switch {
	case canceledOp.Load():
		disp = a.Discard(fin, stored)
	case herr != nil && shutdown.Err() != nil && errors.Is(herr, context.Canceled):
		// Interrupted by shutdown: give it back without counting the attempt.
		disp = a.GiveBack(fin)
	case herr != nil:
		disp = a.Fail(fin, herr, errors.Is(context.Cause(hctx), errTimeout))
	default:
		disp = a.Succeed(fin, stored)
	}
	p.settle(fin, d, l, id, t.Route, disp)
}

// lease is a delivery's lease as a pool holds it (see holdLease).
type lease struct {
	lost <-chan struct{} // closed when the queue says the lease is lost
	stop func()          // stops the renewals and waits for them; idempotent
}

// giveBack stops the renewals and Naks d with delay: a renewal after the
// Nak would find the lease gone and report it lost.
func (l *lease) giveBack(ctx context.Context, d queue.Delivery, delay time.Duration) {
	l.stop()
	_ = d.Nak(ctx, delay)
}

// holdLease renews d's lease every third of it, from the delivery's
// receipt until it is settled (stop): while it waits for its route's slot,
// while its attempt starts, while its handler runs (also after the
// handler's context ended: a command given its kill grace must not see
// its operation delivered to another worker meanwhile), and while the
// attempt's outcome is written, so that a write which stalls (a store node
// killed under it) does not let the message run elsewhere meanwhile. Each
// renewal is bounded by the lease. When the queue answers ErrLeaseLost,
// lost is closed and the renewals end.
func (p *Pool) holdLease(d queue.Delivery, id string) *lease {
	lost, stop, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		beat := time.NewTicker(p.cfg.Lease / 3)
		defer beat.Stop()
		for {
			select {
			case <-stop:
				return
			case <-beat.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Lease)
			err := d.InProgress(ctx, p.cfg.Lease)
			cancel()
			switch {
			case errors.Is(err, queue.ErrLeaseLost):
				p.cfg.Logger.Warn("worker: lease lost; a run of the operation, if any, is canceled", "id", id)
				close(lost)
				return
			case err != nil:
				p.cfg.Logger.Debug("worker: lease renewal failed", "id", id, "err", err)
			default:
				p.cfg.Logger.Debug("worker: lease renewed", "id", id, "lease", p.cfg.Lease)
			}
		}
	}()
	var once sync.Once
	return &lease{lost: lost, stop: func() { once.Do(func() { close(stop) }); <-done }}
}

// syncAfter is how long a handler runs before its lazily written running
// state is synced.
const syncAfter = 200 * time.Millisecond

var errTimeout = errors.New("attempt timed out")

func (p *Pool) run(ctx context.Context, h Handler, t *Task, prog Progress) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return h.Process(ctx, t, prog)
}

// supervise writes progress reports and watches for cancellation of the
// operation and for the loss of its lease while the handler runs. When the
// running state was written lazily, it is made durable once the handler has run
// for a moment (syncAfter), so that a crash during a long attempt is
// recorded as an interrupted attempt. The returned function stops it and
// waits for it.
func (p *Pool) supervise(hctx context.Context, cancel context.CancelFunc, l *lease, a *arr.Attempt, prog *progress, canceledOp *atomic.Bool) func() {
	changed := a.Changed()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lost := l.lost
		flush := time.NewTicker(250 * time.Millisecond)
		defer flush.Stop()
		var syncStart <-chan time.Time
		if a.Lazy() {
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
				_ = a.Sync(hctx)
			case <-lost:
				// Another worker may run the operation now: stop this run
				// (holdLease logged it).
				cancel()
				lost = nil
			case <-flush.C:
				if ended == nil {
					continue
				}
				if pct, msg, ok := prog.take(); ok {
					a.Progress(hctx, pct, msg)
				}
			case <-changed:
				// The read is bounded by a heartbeat's period: a store
				// that does not answer must not hold up the progress
				// reports (nor the shutdown); a cancel missed here is
				// still refused by the attempt's final transition.
				cctx, stopCheck := context.WithTimeout(hctx, p.cfg.Lease/3)
				if a.Canceled(cctx) {
					canceledOp.Store(true)
					cancel()
				}
				stopCheck()
			}
		}
	}()
	return func() { close(stop); <-done }
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
