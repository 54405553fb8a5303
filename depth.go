package arr

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arrhq/arr/operation"
)

// depthTTL is the least time a queue depth read from the queue is reused.
// Reading it costs a round trip or more on a shared engine (a count in
// PostgreSQL, stream and consumer info in JetStream, a scan of the index
// partition on Azure Queue Storage), and every submit and every status
// read of a pending operation needs it; the bound it enforces and the
// Retry-After it estimates need not be exact.
const depthTTL = 250 * time.Millisecond

// depthReadShare bounds the time spent reading the depth: a depth is
// reused for depthReadShare times as long as its read took, when that is
// longer than depthTTL. A queue whose count costs 100 ms (Azure Queue
// Storage's index, 100,000 messages deep) is read every 2 s, not 4 times
// a second.
const depthReadShare = 20

// depthGauge estimates the queue depth: the last depth read from the queue
// plus the operations this process enqueued since, read afresh once it is
// older than depthTTL (or depthReadShare times its read's duration). Only
// the first call waits for a read: while one goroutine reads a fresh depth,
// the others get the last estimate. Within one process the estimate never
// lags its own submits, so a bound like MaxQueue holds exactly for one api
// process and within a read's worth of other processes' submits for
// several.
type depthGauge struct {
	read func(context.Context) (int64, error)

	mu      sync.Mutex // guards depth, at, ttl, reading
	depth   int64
	at      time.Time     // when depth was read; zero before the first read
	ttl     time.Duration // how long depth is reused
	reading bool          // a read is in flight
	readMu  sync.Mutex    // held by the one read in flight
	added   atomic.Int64  // enqueued by this process since at
}

// get returns the estimated depth.
func (g *depthGauge) get(ctx context.Context) (int64, error) {
	g.mu.Lock()
	fresh := !g.at.IsZero() && time.Since(g.at) < g.ttl
	if fresh || (!g.at.IsZero() && g.reading) {
		d := g.depth
		g.mu.Unlock()
		return d + g.added.Load(), nil
	}
	g.mu.Unlock()

	// Stale (another read may have finished meanwhile) or never read: one
	// read at a time.
	g.readMu.Lock()
	defer g.readMu.Unlock()
	g.mu.Lock()
	if !g.at.IsZero() && time.Since(g.at) < g.ttl {
		d := g.depth
		g.mu.Unlock()
		return d + g.added.Load(), nil
	}
	g.reading = true
	g.mu.Unlock()

	added := g.added.Load()
	start := time.Now()
	d, err := g.read(ctx)
	took := time.Since(start)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reading = false
	if err != nil {
		return 0, err
	}
	// Submits that finished during the read may or may not be in d; they
	// are counted once more until the next read rather than not at all.
	g.added.Add(-added)
	g.depth, g.at, g.ttl = d, time.Now(), max(depthTTL, depthReadShare*took)
	return d + g.added.Load(), nil
}

// enqueued counts an operation this process enqueued.
func (g *depthGauge) enqueued() { g.added.Add(1) }

// runTimes keeps, per route, a moving average of the run times of the
// attempts that ended in this process. The zero value is ready to use.
type runTimes struct {
	m sync.Map // route name → *atomic.Int64 (nanoseconds; 0 = none yet)
}

// observe folds one attempt's run time d into route's average: the first
// is taken as it is, each later one weighs 1/8.
func (r *runTimes) observe(route string, d time.Duration) {
	if d <= 0 {
		d = 1 // a run too short for the clock still counts as one
	}
	v, _ := r.m.LoadOrStore(route, new(atomic.Int64))
	mean := v.(*atomic.Int64)
	for {
		old := mean.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if mean.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// get returns route's average run time, and false before its first run.
func (r *runTimes) get(route string) (time.Duration, bool) {
	v, ok := r.m.Load(route)
	if !ok {
		return 0, false
	}
	d := v.(*atomic.Int64).Load()
	return time.Duration(d), d > 0
}

// RunTime returns a moving average of the run times of route's attempts
// that ended (succeeded or failed) in this process, and false before the
// first one: a process that runs no worker knows none.
func (c *Client) RunTime(route string) (time.Duration, bool) { return c.runs.get(route) }

// maxOverrunPoll bounds PollAfter's guess for an operation that has run
// longer than its route's runs usually take (or whose route has no run
// time yet): a client asks at least this often.
const maxOverrunPoll = 30 * time.Second

// PollAfter estimates how long from now op is worth asking about again,
// for a Retry-After. It is op's own estimate, by its route and state:
//
//   - pending: queueWait (the caller's estimate of the time until a
//     worker takes it) plus its route's run time (RunTime), 0 when neither
//     is known;
//   - running: what is left of its route's run time since its attempt
//     started; once it has run that long (or when the route has no run
//     time yet), a quarter of the time it has run so far, at most 30 s,
//     so that a long run is asked about less often than a short one;
//   - finished: 0.
//
// The caller rounds and bounds it (a Retry-After is whole seconds, ≥ 1).
func (c *Client) PollAfter(op *operation.Operation, queueWait time.Duration, now time.Time) time.Duration {
	mean, known := c.runs.get(op.Route)
	switch op.Status {
	case operation.Pending:
		return max(queueWait, 0) + mean
	case operation.Running:
		elapsed := max(now.Sub(op.AttemptStartedAt), 0)
		if op.AttemptStartedAt.IsZero() {
			elapsed = 0
		}
		if known && elapsed < mean {
			return mean - elapsed
		}
		return min(elapsed/4, maxOverrunPoll)
	default:
		return 0
	}
}
