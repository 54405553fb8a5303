// Package callback delivers the callbacks operations owe: the loop that
// takes the due entries of the core's outbox (arr.Client.DueCallbacks),
// claims one attempt at a time, renders the CloudEvents event, signs it
// per Standard Webhooks and sends it (package webhook), and records the
// outcome with the core. It is to callbacks what package worker is to
// handlers: an adapter over the core, which decides what is owed.
//
// Delivery is at-least-once, under the same webhook-id on every attempt.
// Attempts back off exponentially with jitter (webhook.Backoff), at least
// as long as a Retry-After asks, for up to MaxAge after the event; a 410
// Gone, or a target arr's address rule refuses, ends them at once.
package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/webhook"
)

// Defaults of Config.
const (
	// DefaultMaxAge: how long after its event (or its redelivery) a
	// callback is retried.
	DefaultMaxAge = webhook.DefaultMaxAge
	// DefaultConcurrency: callbacks in flight per process.
	DefaultConcurrency = 64
	// DefaultMaxPerDestination: callbacks in flight per process to one
	// host and port. A destination at its bound is skipped (its
	// callbacks stay due), so a slow one holds up no other.
	DefaultMaxPerDestination = 16
	// DefaultPoll: how often the outbox is read for callbacks other
	// processes owe and retries that came due.
	DefaultPoll = time.Second
	// EventTypePrefix prefixes the CloudEvents type: the status the
	// operation entered follows (arr.operation.succeeded).
	EventTypePrefix = "arr.operation."
)

// Config configures a Dispatcher. Client, Secrets and Render are
// required; every other field has a default.
type Config struct {
	Client *arr.Client
	// Secrets signs the callbacks.
	Secrets *Secrets
	// Render returns the operation JSON an event carries (the api's
	// rendering, with absolute links).
	Render func(ctx context.Context, op *operation.Operation) ([]byte, error)
	// Sender sends them. Default: webhook.NewSender with Allow, Timeout
	// and MaxPerDestination (a Sender given here bounds destinations by
	// its own setting too).
	Sender *webhook.Sender
	// Timeout bounds one attempt (for the default Sender). Default
	// webhook.DefaultTimeout.
	Timeout time.Duration
	// Allow lists the targets exempt from the private-address rule
	// (used for the default Sender).
	Allow webhook.AllowList
	// Source is the events' CloudEvents source: arr's public URL.
	// Default "arr".
	Source string
	// Backoff spaces the attempts. Default: webhook's defaults.
	Backoff webhook.Backoff
	// MaxAge: see DefaultMaxAge.
	MaxAge time.Duration
	// Concurrency: see DefaultConcurrency.
	Concurrency int
	// MaxPerDestination: see DefaultMaxPerDestination.
	MaxPerDestination int
	// Poll: see DefaultPoll.
	Poll time.Duration
	// Registerer receives the dispatcher's metrics. Default: none.
	Registerer prometheus.Registerer
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Dispatcher delivers callbacks; see the package documentation.
type Dispatcher struct {
	cfg   Config
	lease time.Duration
	sem   chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]int      // attempts in flight by destination (host:port)
	sending  map[string]struct{} // the callbacks those attempts are of
	freed    chan struct{}       // an attempt ended: its slot is free (coalesced)

	sent     *prometheus.CounterVec
	duration prometheus.Histogram
}

// New checks cfg and returns a Dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Client == nil || cfg.Secrets == nil || cfg.Render == nil {
		return nil, errors.New("callback: Client, Secrets and Render are required")
	}
	if cfg.MaxPerDestination <= 0 {
		cfg.MaxPerDestination = DefaultMaxPerDestination
	}
	if cfg.Sender == nil {
		cfg.Sender = webhook.NewSender(webhook.Config{Allow: cfg.Allow, Timeout: cfg.Timeout, MaxPerDestination: cfg.MaxPerDestination})
	}
	if cfg.Source == "" {
		cfg.Source = "arr"
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff.Min = webhook.DefaultMinBackoff
	}
	if cfg.Backoff.Max <= 0 {
		cfg.Backoff.Max = webhook.DefaultMaxBackoff
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dispatcher{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), inflight: map[string]int{}, sending: map[string]struct{}{}, freed: make(chan struct{}, 1),
		// A claim outlives the send's timeout, so that no other
		// dispatcher sends while this one may still be sending; a
		// process that dies mid-attempt leaves its callback due again
		// that long after.
		lease: cfg.Sender.Timeout() + claimMargin}
	d.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arr_callback_attempts_total",
		Help: "Callback attempts, by outcome: delivered, retried (will be tried again), failed (given up), refused (arr's target rule)."},
		[]string{"outcome"})
	d.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "arr_callback_attempt_duration_seconds",
		Help: "Time to send a callback and read its answer.", Buckets: prometheus.DefBuckets})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{d.sent, d.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// claimMargin is how much longer than an attempt's timeout its claim
// lasts.
const claimMargin = 5 * time.Second

// batch is how many owing operations one read of the outbox takes.
const batch = 64

// Run delivers callbacks until ctx ends, then waits for the attempts in
// flight (each bounded by the sender's timeout).
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	var due []work // read from the outbox, not started yet
	read, full := true, false
	for {
		if read {
			due, full = d.read(ctx)
			read = false
		}
		due = d.start(ctx, due)
		if len(due) == 0 && full {
			read = true // the outbox may hold more than one read took
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.cfg.Client.CallbackWake():
			read = true
		case <-tick.C:
			read = true
		case <-d.freed:
			// A slot is free: go on with what was read, and read
			// again once it is all started.
			read = len(due) == 0
		}
	}
}

// work is one callback attempt to start.
type work struct {
	id, cbID, dest string
}

// read returns the callbacks due now, oldest first, and whether the read
// was a full batch (the outbox may hold more).
func (d *Dispatcher) read(ctx context.Context) ([]work, bool) {
	now := time.Now()
	ops, err := d.cfg.Client.DueCallbacks(ctx, now, batch)
	if err != nil {
		if ctx.Err() == nil {
			d.cfg.Logger.Warn("arr: read the callback outbox", "err", err)
		}
		return nil, false
	}
	var due []work
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range ops {
		for _, cb := range op.Callbacks {
			if _, busy := d.sending[cb.ID]; busy {
				continue // this process is sending it (its claim may be in memory only)
			}
			if cb.State == operation.CallbackPending && !cb.NextAt.After(now) {
				due = append(due, work{id: op.ID, cbID: cb.ID, dest: destination(cb.URL)})
			}
		}
	}
	return due, len(ops) == batch
}

// start starts an attempt of each of due whose destination, and the
// process, have a free slot, and returns the others, in order: a
// destination at its bound holds up no other.
func (d *Dispatcher) start(ctx context.Context, due []work) []work {
	rest := due[:0]
	for i, w := range due {
		if ctx.Err() != nil {
			return nil
		}
		if !d.take(w) {
			rest = append(rest, w)
			continue
		}
		select {
		case d.sem <- struct{}{}:
		default: // the process is at its bound: the rest wait
			d.untake(w)
			return append(rest, due[i:]...)
		}
		d.wg.Add(1)
		go func() {
			defer func() { <-d.sem; d.give(w); d.wg.Done() }()
			d.attempt(context.WithoutCancel(ctx), w.id, w.cbID)
		}()
	}
	return rest
}

// destination is the destination of a callback URL, as the sender bounds
// it (webhook.Destination).
func destination(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return webhook.Destination(u)
}

// take counts an attempt of w in flight, unless its destination is at
// its bound or this process is sending w's callback already.
func (d *Dispatcher) take(w work) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, busy := d.sending[w.cbID]; busy || d.inflight[w.dest] >= d.cfg.MaxPerDestination {
		return false
	}
	d.inflight[w.dest]++
	d.sending[w.cbID] = struct{}{}
	return true
}

// untake gives back what take took, for an attempt that did not start.
func (d *Dispatcher) untake(w work) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight[w.dest]--; d.inflight[w.dest] <= 0 {
		delete(d.inflight, w.dest)
	}
	delete(d.sending, w.cbID)
}

// give ends an attempt of w, and wakes the loop: callbacks it skipped for
// want of a slot may go now.
func (d *Dispatcher) give(w work) {
	d.untake(w)
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// attempt claims, sends and records one attempt of a callback. It runs
// to its end when the dispatcher stops (bounded by the send timeout), so
// that an attempt made is recorded.
func (d *Dispatcher) attempt(ctx context.Context, id, cbID string) {
	op, cb, err := d.cfg.Client.ClaimCallback(ctx, id, cbID, time.Now(), d.lease)
	if err != nil {
		if !errors.Is(err, arr.ErrCallbackNotDue) {
			d.cfg.Logger.Warn("arr: claim a callback", "id", id, "callback", cbID, "err", err)
		}
		return
	}
	body, err := d.event(ctx, op, cb)
	if err != nil {
		d.cfg.Logger.Error("arr: render a callback", "id", id, "callback", cb.ID, "err", err)
		d.record(ctx, op.ID, cb, arr.CallbackResult{Error: "the event could not be rendered", Next: time.Now().Add(d.cfg.Backoff.Delay(cb.Attempts, 0))}, "retried")
		return
	}
	now := time.Now()
	h := http.Header{}
	h.Set("Content-Type", webhook.ContentType)
	h.Set("webhook-id", cb.ID)
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", webhook.Sign(cb.ID, now, body, d.cfg.Secrets.signing(ctx, cb.Secret)...))
	start := time.Now()
	res := d.cfg.Sender.Send(ctx, cb.URL, h, body)
	d.duration.Observe(time.Since(start).Seconds())
	out := arr.CallbackResult{Status: res.Status, Delivered: res.Delivered}
	if res.Err != nil {
		out.Error = res.Err.Error()
	} else if !res.Delivered {
		out.Error = fmt.Sprintf("the target answered %d", res.Status)
	}
	outcome := "delivered"
	switch {
	case res.Delivered:
	case res.Refused:
		outcome = "refused"
	case res.Gone:
		outcome = "failed"
	case time.Since(seriesStart(cb)) >= d.cfg.MaxAge:
		outcome = "failed"
		out.Error += fmt.Sprintf(" (given up: not delivered within %s)", d.cfg.MaxAge)
	default:
		outcome = "retried"
		out.Next = time.Now().Add(d.cfg.Backoff.Delay(cb.Attempts, res.RetryAfter))
	}
	d.record(ctx, op.ID, cb, out, outcome)
}

func (d *Dispatcher) record(ctx context.Context, id string, cb operation.Callback, out arr.CallbackResult, outcome string) {
	d.sent.WithLabelValues(outcome).Inc()
	if outcome != "delivered" {
		d.cfg.Logger.Info("arr: callback not delivered", "id", id, "callback", cb.ID, "attempt", cb.Attempts, "outcome", outcome, "status", out.Status, "err", out.Error)
	}
	if err := d.cfg.Client.RecordCallback(ctx, id, cb, time.Now(), out); err != nil {
		// The claim lapses and the callback is sent again: at least once.
		d.cfg.Logger.Warn("arr: record a callback attempt", "id", id, "callback", cb.ID, "err", err)
	}
}

// event renders the CloudEvents event of cb: the operation JSON as it is
// now (fresh links), under cb's id.
func (d *Dispatcher) event(ctx context.Context, op *operation.Operation, cb operation.Callback) ([]byte, error) {
	data, err := d.cfg.Render(ctx, op)
	if err != nil {
		return nil, err
	}
	return webhook.Event{ID: cb.ID, Source: d.cfg.Source, Type: EventTypePrefix + cb.Event, Subject: op.ID,
		Time: cb.CreatedAt, Data: data}.Marshal()
}

// seriesStart is when cb's current series of attempts began: its event,
// or its latest redelivery.
func seriesStart(cb operation.Callback) time.Time {
	if cb.RedeliveredAt.After(cb.CreatedAt) {
		return cb.RedeliveredAt
	}
	return cb.CreatedAt
}
