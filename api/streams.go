package api

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the stream fields of Config (docs/operations.md,
// "Connections and streams").
const (
	// DefaultMaxStreams caps the SSE streams open at once.
	DefaultMaxStreams = 1000
	// DefaultMaxStreamsPerPrincipal caps one principal's SSE streams
	// (one client address's, for anonymous requests).
	DefaultMaxStreamsPerPrincipal = 100
	// DefaultMaxLongPolls caps the long-polls waiting at once.
	DefaultMaxLongPolls = 1000
	// DefaultMaxLongPollsPerPrincipal caps one principal's long-polls.
	DefaultMaxLongPollsPerPrincipal = 100
	// DefaultStreamLifetime ends an SSE stream; the client resumes with
	// Last-Event-ID.
	DefaultStreamLifetime = 10 * time.Minute
	// DefaultStreamRetry is the reconnection delay an SSE stream asks of
	// its client (its retry: field).
	DefaultStreamRetry = 2 * time.Second
	// streamRetryAfter is the Retry-After of a stream refused at a cap.
	streamRetryAfter = 5 * time.Second
)

// ProblemBodyTooSlow (408) answers a request whose body arrived below the
// server's minimum transfer rate (server.ConnConfig.MinBodyRate); its
// connection is closed and nothing of it is stored.
const ProblemBodyTooSlow = "urn:arr:problem:body-too-slow"

// ErrBodyTooSlow is the error a request body reader returns when the body
// arrives below the minimum rate (package server sets it up): a submit
// that meets it answers 408 with ProblemBodyTooSlow.
var ErrBodyTooSlow = errors.New("request body arrived below the minimum rate")

// streams holds the caps of SSE streams and long-polls.
type streams struct {
	sse, poll *streamCap
}

// newStreams fills in the defaults of cfg's stream fields and registers
// the streams' metrics.
func newStreams(cfg *Config) (*streams, error) {
	def := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&cfg.MaxStreams, DefaultMaxStreams)
	def(&cfg.MaxStreamsPerPrincipal, DefaultMaxStreamsPerPrincipal)
	def(&cfg.MaxLongPolls, DefaultMaxLongPolls)
	def(&cfg.MaxLongPollsPerPrincipal, DefaultMaxLongPollsPerPrincipal)
	if cfg.StreamLifetime == 0 {
		cfg.StreamLifetime = DefaultStreamLifetime
	}
	if cfg.StreamRetry <= 0 {
		cfg.StreamRetry = DefaultStreamRetry
	}
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "arr_streams_open",
		Help: "Open SSE streams (kind sse) and waiting long-polls (kind long_poll).",
	}, []string{"kind"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arr_streams_rejected_total",
		Help: "SSE streams and long-polls refused at a cap (503), by kind and by the cap that refused them (process or principal).",
	}, []string{"kind", "cap"})
	for _, c := range []prometheus.Collector{open, rejected} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, err
		}
	}
	mk := func(kind, what string, total, per int) *streamCap {
		for _, c := range []string{"process", "principal"} {
			rejected.WithLabelValues(kind, c) // exported at 0 before the first refusal
		}
		return &streamCap{kind: kind, what: what, max: total, perPrincipal: per, by: map[string]int{},
			open: open.WithLabelValues(kind), rejected: rejected}
	}
	return &streams{
		sse:  mk("sse", "event streams", cfg.MaxStreams, cfg.MaxStreamsPerPrincipal),
		poll: mk("long_poll", "long-polls", cfg.MaxLongPolls, cfg.MaxLongPollsPerPrincipal),
	}, nil
}

// streamCap counts the streams of one kind open at once, in all and by
// principal.
type streamCap struct {
	kind, what        string
	max, perPrincipal int // -1: no cap
	mu                sync.Mutex
	n                 int
	by                map[string]int
	open              prometheus.Gauge
	rejected          *prometheus.CounterVec
}

// tryAcquire takes a place for one stream of the client key names (the
// rate limits' key, Server.bucketKey: a principal, or an anonymous
// client's address; "" for an admin, who has no cap of its own), or says
// which cap is full ("process" or "principal"). release gives the place
// back.
func (c *streamCap) tryAcquire(key string) (release func(), full string) {
	c.mu.Lock()
	switch {
	case c.max >= 0 && c.n >= c.max:
		full = "process"
	case key != "" && c.perPrincipal >= 0 && c.by[key] >= c.perPrincipal:
		full = "principal"
	}
	if full != "" {
		c.mu.Unlock()
		c.rejected.WithLabelValues(c.kind, full).Inc()
		return nil, full
	}
	c.n++
	c.by[key]++
	c.mu.Unlock()
	c.open.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.n--
			if c.by[key]--; c.by[key] <= 0 {
				delete(c.by, key)
			}
			c.mu.Unlock()
			c.open.Dec()
		})
	}, ""
}

// acquire is tryAcquire that answers a refusal itself: 503 with
// Retry-After and ProblemTooManyStreams.
func (c *streamCap) acquire(w http.ResponseWriter, key string) (release func(), ok bool) {
	release, full := c.tryAcquire(key)
	if full == "" {
		return release, true
	}
	detail := fmt.Sprintf("the server holds its maximum of %d %s", c.max, c.what)
	if full == "principal" {
		detail = fmt.Sprintf("you hold the maximum of %d %s per client", c.perPrincipal, c.what)
	}
	setRetryAfter(w, streamRetryAfter)
	writeProblem(w, http.StatusServiceUnavailable, ProblemTooManyStreams, "Too many streams", detail+"; retry later")
	return nil, false
}
