// Package api serves arr's HTTP contract (docs/http-api.md): submit routes
// that answer 202 once an operation is durable, the status monitor with
// long-poll and Server-Sent Events, results behind signed URLs, cancel,
// list, the seed's /api routes, health and metrics.
//
// The api holds no business logic: it validates, writes to the operations
// store and the queue, and reads them back.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
)

// Route is a submit route: a request to Method Path becomes an operation
// run by the handler registered for Name.
type Route struct {
	// Name names the route; the worker runs the handler registered under it.
	Name string
	// Method is the HTTP method; "*" accepts any. Default POST. Routes may
	// share a Path with different methods.
	Method string
	// Path is a net/http ServeMux path pattern: an exact path (/v1/echo),
	// one with wildcards (/v1/items/{id}), or a prefix ending in / (/ in
	// gateway mode). arr's own paths take precedence as more specific.
	Path string
	// CaseInsensitive matches Path regardless of case (the seed's routes).
	CaseInsensitive bool
	// Seed makes the 202's Location the seed's status URL,
	// /api/RequestStatus/{id}, instead of /v1/operations/{id}.
	Seed bool
	// MediaTypes, when not empty, lists the accepted Content-Types (without
	// parameters); any other is 415. Empty accepts any.
	MediaTypes []string
	// MaxBodyBytes overrides Config.MaxBodyBytes for this route when > 0.
	MaxBodyBytes int64
	// Validate, when not nil, checks the body; an error is a 400 whose
	// detail is the error's text (and whose extension members are the
	// error's ProblemExtensions(), when it has that method).
	Validate func(body []byte) error
	// ResultURLTTL, Retention and Tombstone override the Config's for this
	// route's operations when > 0.
	ResultURLTTL, Retention, Tombstone time.Duration
}

// Config configures a Server. Every field but the stores has a default,
// given in its comment.
type Config struct {
	Store   *opstore.Store
	Queue   *queue.Queue
	Results *resultstore.Store
	// Signer signs the URLs of results; its handler is mounted.
	Signer *urlsign.Signer

	// Routes are the submit routes. Default: SeedRoute() and EchoRoute().
	Routes []Route
	// PublicURL is the scheme, host and optional path prefix of absolute
	// links, e.g. https://arr.example.com. Default: http(s)://{request Host}.
	PublicURL string
	// MaxBodyBytes bounds request bodies; larger ones are 413. Default 1 MiB.
	MaxBodyBytes int64
	// MaxQueue bounds the queue: at this many queued operations submits
	// are 503 with Retry-After. Default 1,000,000.
	MaxQueue int64
	// ResultURLTTL is the lifetime of signed result URLs. Default 10m (the
	// seed's).
	ResultURLTTL time.Duration
	// SyncWait bounds the seed's OnPending=Synchronous wait. Default 127s
	// (the seed's backoff of 0.5 s doubling to 64 s).
	SyncWait time.Duration
	// MaxWait caps long-poll waits (?wait=, Prefer: wait=). Default 60s.
	MaxWait time.Duration
	// Retention is how long a canceled operation is kept. Default 24h.
	Retention time.Duration
	// Tombstone is how long, after its deletion, a canceled operation's
	// status answers 410. Default 7 days.
	Tombstone time.Duration
	// RetryAfter estimates, from the queue depth, when a pending operation
	// is worth asking about again. Default: 1s.
	RetryAfter func(queueDepth int64) time.Duration
	// Ready reports whether the server is ready for traffic (/readyz).
	// Default: always ready.
	Ready func(context.Context) error
	// Registerer receives the api's metrics and Gatherer serves /metrics.
	// Default: a new registry with the Go and process collectors.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger logs internal errors. Default slog.Default().
	Logger *slog.Logger
}

// Server is the http.Handler of the api.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics
	ciPaths map[string]bool   // lower-cased paths of case-insensitive routes
	routes  map[string]*Route // by name
	depth   depthGauge
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Queue == nil || cfg.Results == nil || cfg.Signer == nil {
		return nil, errors.New("api: Store, Queue, Results and Signer are required")
	}
	if cfg.Routes == nil {
		cfg.Routes = []Route{SeedRoute(), EchoRoute()}
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1_000_000
	}
	if cfg.ResultURLTTL <= 0 {
		cfg.ResultURLTTL = 10 * time.Minute
	}
	if cfg.SyncWait <= 0 {
		cfg.SyncWait = 127 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.Tombstone <= 0 {
		cfg.Tombstone = 7 * 24 * time.Hour
	}
	if cfg.RetryAfter == nil {
		cfg.RetryAfter = func(int64) time.Duration { return time.Second }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil || cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), ciPaths: map[string]bool{}, routes: map[string]*Route{}}
	s.depth.read = func(ctx context.Context) (int64, error) {
		st, err := cfg.Queue.Stats(ctx)
		return st.Ready + st.Delayed + st.InFlight, err
	}
	var err error
	if s.metrics, err = newMetrics(cfg.Registerer, cfg.Queue); err != nil {
		return nil, err
	}
	// Routes that share a path are served by one handler that picks the
	// route by method.
	var paths []string
	byPath := map[string][]*Route{}
	catchAll := false
	for i := range cfg.Routes {
		rt := &cfg.Routes[i]
		if rt.Name == "" || !strings.HasPrefix(rt.Path, "/") {
			return nil, errors.New("api: a route needs a Name and a Path starting with /")
		}
		if rt.Method == "" {
			rt.Method = http.MethodPost
		}
		rt.Method = strings.ToUpper(rt.Method)
		if rt.CaseInsensitive {
			rt.Path = strings.ToLower(rt.Path)
			s.ciPaths[rt.Path] = true
		}
		for _, o := range byPath[rt.Path] {
			if o.Method == rt.Method {
				return nil, fmt.Errorf("api: two routes for %s %s", rt.Method, rt.Path)
			}
		}
		if byPath[rt.Path] == nil {
			paths = append(paths, rt.Path)
		}
		byPath[rt.Path] = append(byPath[rt.Path], rt)
		if prev, ok := s.routes[rt.Name]; !ok || prev.Seed {
			s.routes[rt.Name] = rt
		}
		catchAll = catchAll || rt.Path == "/"
	}
	for _, p := range paths {
		if err := handle(s.mux, p, s.submitHandler(byPath[p])); err != nil {
			return nil, err
		}
	}
	s.mux.HandleFunc("/v1/operations", s.list)
	s.mux.HandleFunc("/v1/operations/{id}", s.operation)
	s.mux.HandleFunc("/v1/operations/{id}/result", s.result)
	s.mux.HandleFunc("/v1/operations/{id}/events", s.events)
	s.mux.HandleFunc("/v1/operations/{id}/retry", s.retry)
	s.mux.HandleFunc(seedStatusPrefix+"{id}", s.seedStatus)
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("/readyz", s.readyz)
	doc, err := openAPIFor(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.json: %w", err)
	}
	s.mux.HandleFunc("/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	s.mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	if prefix, h := cfg.Signer.Handler(); h != nil {
		s.mux.Handle(prefix, h)
	}
	noRoute := func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, ProblemNotFound, "Not found", "no route for "+r.URL.Path)
	}
	// arr's own prefixes are never a route's, even a catch-all's.
	s.mux.HandleFunc("/v1/operations/", noRoute)
	s.mux.HandleFunc(seedStatusPrefix, noRoute)
	if !catchAll {
		s.mux.HandleFunc("/", noRoute)
	}
	return s, nil
}

// handle registers h on pattern, turning ServeMux's panic on an invalid
// or conflicting pattern into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("api: route path %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// route returns the route named name, or nil.
func (s *Server) route(name string) *Route { return s.routes[name] }

// routeDuration is the route's d when it sets one, else def.
func (s *Server) routeDuration(name string, d func(*Route) time.Duration, def time.Duration) time.Duration {
	if rt := s.routes[name]; rt != nil && d(rt) > 0 {
		return d(rt)
	}
	return def
}

// ServeHTTP routes r. The paths of case-insensitive routes and the seed's
// /api/RequestStatus/ match regardless of case (its id keeps its case).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := s.canonicalPath(r.URL.Path); p != r.URL.Path {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		r = r2
	}
	s.mux.ServeHTTP(w, r)
}

const seedStatusPrefix = "/api/requeststatus/"

func (s *Server) canonicalPath(p string) string {
	lower := strings.ToLower(p)
	if s.ciPaths[lower] {
		return lower
	}
	if strings.HasPrefix(lower, seedStatusPrefix) {
		return seedStatusPrefix + p[len(seedStatusPrefix):]
	}
	return p
}

// base is the scheme://host[/prefix] of absolute links for r.
func (s *Server) base(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			writeProblem(w, http.StatusServiceUnavailable, ProblemInternal, "Not ready", err.Error())
			return
		}
	}
	if _, err := s.cfg.Queue.Stats(r.Context()); err != nil {
		writeProblem(w, http.StatusServiceUnavailable, ProblemInternal, "Not ready", "queue: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ready\n"))
}

// retryAfter sets Retry-After from the current queue depth.
func (s *Server) retryAfter(w http.ResponseWriter, ctx context.Context) {
	var depth int64
	if d, err := s.depth.get(ctx); err == nil {
		depth = d
	}
	s.setRetryAfter(w, depth)
}

func (s *Server) setRetryAfter(w http.ResponseWriter, depth int64) {
	d := min(s.cfg.RetryAfter(depth), time.Hour)
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, secs), 10))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeProblem(w, http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed",
		r.Method+" is not allowed here; allowed: "+allow)
}
