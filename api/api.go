// Package api serves arr's HTTP contract (docs/http-api.md): submit routes
// that answer 202 once an operation is durable, the status monitor with
// long-poll and Server-Sent Events, results behind signed URLs, cancel,
// list, the seed's /api routes, health and metrics.
//
// The api is an adapter: it authenticates, validates, maps the HTTP
// contract onto calls of the core (package arr) and renders their answers.
// It makes no store or queue calls of its own.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/callback"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// Config configures a Server. Client is required; every other field has a
// default, given in its comment.
type Config struct {
	// Client is the core the api adapts to HTTP: every submit, read,
	// cancel and retry is a call to it. Its routes are the submit routes.
	Client *arr.Client
	// ResultsPrefix and ResultsHandler, when the handler is not nil, serve
	// the signed result URLs under the prefix (see urlsign.Signer.Handler).
	ResultsPrefix  string
	ResultsHandler http.Handler

	// PublicURL is the scheme, host and optional path prefix of absolute
	// links, e.g. https://arr.example.com. Default: http(s)://{request
	// Host}, where the Host must be allowed (see AllowedHosts).
	PublicURL string
	// AllowedHosts are the Hosts (host[:port]; without a port, any port)
	// requests may be sent to besides the loopback ones (localhost,
	// 127.0.0.0/8, [::1], any port), which are always allowed. Without
	// PublicURL, links are built from the request's Host, so a request
	// to any other Host is refused with 421 Misdirected Request; with
	// PublicURL and no AllowedHosts, any Host is served (links come from
	// PublicURL); with both, the Host must be PublicURL's or in the list.
	// /healthz, /readyz and /metrics answer whatever the Host.
	AllowedHosts []string
	// TrustedProxies are the direct peers whose Forwarded and
	// X-Forwarded-* headers are believed (for the scheme and Host of
	// links, and passed on to forward routes). From any other peer those
	// headers are deleted before anything is stored or forwarded.
	// Default: none.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are origins (scheme://host[:port]) whose browsers may
	// send state-changing requests (POST, PUT, PATCH, DELETE) cross-site;
	// any other cross-site browser request gets 403 (see
	// http.CrossOriginProtection). Requests without Sec-Fetch-Site and
	// Origin (non-browser clients) are never refused. Default: none.
	AllowedOrigins []string
	// MaxBodyBytes bounds request bodies; larger ones are 413. Default 1 MiB.
	MaxBodyBytes int64
	// SyncWait bounds the seed's OnPending=Synchronous wait. Default 127s
	// (the seed's backoff of 0.5 s doubling to 64 s).
	SyncWait time.Duration
	// MaxWait caps long-poll waits (?wait=, Prefer: wait=). Default 60s.
	MaxWait time.Duration
	// QueueWait estimates, from the queue depth (all routes), how long a
	// newly queued operation waits for a worker; the Retry-After of a
	// pending operation is that plus its route's run time (see
	// arr.Client.PollAfter). Default: no wait.
	QueueWait func(queueDepth int64) time.Duration
	// Admission (issue 14): rate limits and header bounds.

	// RateLimits limits requests per principal, per client address for
	// anonymous callers (see RateLimits; admins are not limited). Default:
	// no limits (arr serve sets its own defaults, see server.AdmissionConfig).
	RateLimits RateLimits
	// MaxHeaderBytes bounds a request's header block (request line and
	// header fields, as sent); a larger one is answered 431 with a
	// problem. Default DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int

	// Ready reports whether the server is ready for traffic (/readyz).
	// Default: always ready.
	Ready func(context.Context) error
	// Registerer receives the api's metrics and Gatherer serves /metrics.
	// Default: a new registry with the Go and process collectors.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Streams (issue 14): SSE and long-poll caps and lifetimes.
	//
	// MaxStreams caps the SSE streams (GET /v1/operations/{id}/events)
	// open at once, and MaxStreamsPerPrincipal one principal's (one
	// client address's when anonymous); beyond them a stream is answered
	// 503 with Retry-After and ProblemTooManyStreams. Defaults
	// DefaultMaxStreams (1000) and DefaultMaxStreamsPerPrincipal (100);
	// -1: no cap.
	MaxStreams, MaxStreamsPerPrincipal int
	// MaxLongPolls and MaxLongPollsPerPrincipal cap the long-polls
	// waiting at once (?wait= and Prefer: wait= on the monitor, the
	// seed's OnPending=Synchronous): beyond them a status read is
	// answered 503 with Retry-After and ProblemTooManyStreams, and a
	// submit with Prefer: wait= its 202 at once, without waiting.
	// Defaults DefaultMaxLongPolls (1000) and
	// DefaultMaxLongPollsPerPrincipal (100); -1: no cap.
	MaxLongPolls, MaxLongPollsPerPrincipal int
	// StreamLifetime ends an SSE stream this long after it started; the
	// client reconnects with Last-Event-ID and gets what changed since.
	// Default DefaultStreamLifetime (10m); -1: no end.
	StreamLifetime time.Duration
	// StreamRetry is the reconnection delay an SSE stream asks of its
	// client (its retry: field). Default DefaultStreamRetry (2s).
	StreamRetry time.Duration

	// NoMetrics leaves /metrics out of the api (404): the server serves
	// it on its admin listener instead (server.Config.AdminAddr).
	NoMetrics bool
	// Records and logs (issue 14): list byte cap, schema error cap,
	// access log.

	// MaxListBytes bounds a page of GET /v1/operations: items are encoded
	// and written one by one, and the page ends, with a next link from
	// its last item, before the item that would take it past this many
	// bytes (a page holds at least one item), whatever limit= asked for.
	// Default DefaultMaxListBytes (2 MiB).
	MaxListBytes int

	// Logger logs internal errors. Default slog.Default().
	Logger *slog.Logger
	// Credentials seals the credential headers of routes with
	// ForwardCredentials (see arr.StoredHeaders). Required when a route
	// has some; otherwise unused.
	Credentials *arr.Credentials
	// CallbackSecrets, when not nil, serves GET /v1/callbacks/secret: the
	// secrets that sign callbacks (package callback's Secrets). Nil: that
	// path answers 404.
	CallbackSecrets interface {
		For(ctx context.Context, scope string) []callback.Secret
	}
}

// route is a submit route as the api serves it.
type route struct {
	arr.Route
	method, path string
}

// Server is the http.Handler of the api.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics
	ciPaths map[string]bool // lower-cased paths of case-insensitive routes
	c       *arr.Client

	allowedHosts []hostPort
	trusted      []netip.Prefix
	cop          *http.CrossOriginProtection
	inline       map[string]bool // names of the routes whose results are served inline
	slashless    map[string]bool // subtree roots without their slash: 404, not a redirect
	streams      *streams
	noRoute      http.HandlerFunc

	submitLimit, readLimit *limiter // nil: no limit
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("api: Client is required")
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.SyncWait <= 0 {
		cfg.SyncWait = 127 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.QueueWait == nil {
		cfg.QueueWait = func(int64) time.Duration { return 0 }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxListBytes <= 0 {
		cfg.MaxListBytes = DefaultMaxListBytes
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Registerer == nil || cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), ciPaths: map[string]bool{}, c: cfg.Client,
		trusted: cfg.TrustedProxies, cop: http.NewCrossOriginProtection(), inline: map[string]bool{},
		submitLimit: newLimiter("submit", cfg.RateLimits.Submit, cfg.RateLimits.MaxKeys),
		readLimit:   newLimiter("read", cfg.RateLimits.Read, cfg.RateLimits.MaxKeys)}
	var err error
	if s.allowedHosts, err = parseAllowedHosts(cfg.AllowedHosts); err != nil {
		return nil, err
	}
	if cfg.PublicURL != "" && len(s.allowedHosts) > 0 {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil {
			return nil, fmt.Errorf("api: PublicURL: %w", err)
		}
		if h, ok := parseHost(u.Host); ok {
			s.allowedHosts = append(s.allowedHosts, h)
		}
	}
	for _, o := range cfg.AllowedOrigins {
		if err := s.cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("api: AllowedOrigins: %w", err)
		}
	}
	if s.metrics, err = newMetrics(cfg.Registerer, cfg.Client); err != nil {
		return nil, err
	}
	if s.streams, err = newStreams(&s.cfg); err != nil {
		return nil, err
	}
	// Routes that share a path are served by one handler that picks the
	// route by method.
	var paths []string
	byPath := map[string][]*route{}
	catchAll := false
	var all []*route
	for _, r := range cfg.Client.Routes() {
		method, path, err := arr.ParsePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		if len(r.ForwardCredentials) > 0 && cfg.Credentials == nil {
			return nil, fmt.Errorf("api: route %s keeps credentials (ForwardCredentials) but Config.Credentials is nil", r.Name)
		}
		rt := &route{Route: r, method: method, path: path}
		if rt.InlineResults {
			s.inline[rt.Name] = true
		}
		if rt.CaseInsensitive {
			rt.path = asciiLower(rt.path)
			s.ciPaths[rt.path] = true
		}
		for _, o := range byPath[rt.path] {
			if o.method == rt.method {
				return nil, fmt.Errorf("api: two routes for %s %s", rt.method, rt.path)
			}
		}
		if byPath[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
		all = append(all, rt)
		catchAll = catchAll || rt.path == "/"
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
	s.mux.HandleFunc("/v1/operations/{id}/callbacks/redeliver", s.redeliver)
	s.mux.HandleFunc("/v1/callbacks/secret", s.callbackSecret)
	s.mux.HandleFunc(seedStatusPrefix+"{id}", s.seedStatus)
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("/readyz", s.readyz)
	doc, err := openAPIFor(all)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.json: %w", err)
	}
	s.mux.HandleFunc("/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	if !cfg.NoMetrics {
		s.mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	if cfg.ResultsHandler != nil {
		s.mux.Handle(cfg.ResultsPrefix, cfg.ResultsHandler)
	}
	noRoute := func(w http.ResponseWriter, r *http.Request) {
		if !s.readLimited(r.URL.Path) && !s.admit(w, r, s.readLimit) {
			return
		}
		writeProblem(w, http.StatusNotFound, ProblemNotFound, "Not found", "no route for "+r.URL.Path)
	}
	// arr's own prefixes are never a route's, even a catch-all's.
	s.mux.HandleFunc("/v1/operations/", noRoute)
	s.mux.HandleFunc(seedStatusPrefix, noRoute)
	if !catchAll {
		s.mux.HandleFunc("/", noRoute)
	}
	// The roots of subtrees, named without their trailing slash, are 404s
	// rather than ServeMux's 307 to the subtree. (With a catch-all route
	// the mux does not redirect: the catch-all takes them.)
	s.noRoute = noRoute
	s.slashless = map[string]bool{}
	exact := map[string]bool{"/v1/operations": true}
	subtrees := []string{"/v1/operations/", seedStatusPrefix, cfg.ResultsPrefix}
	for _, p := range paths {
		exact[p] = true
		subtrees = append(subtrees, p)
	}
	for _, p := range subtrees {
		if catchAll {
			break
		}
		if i := strings.LastIndexByte(p, '{'); i >= 0 && strings.HasSuffix(p, "...}") {
			p = p[:i]
		}
		root, ok := strings.CutSuffix(p, "/")
		if ok && root != "" && !strings.Contains(root, "{") && !exact[root] {
			s.slashless[root] = true
		}
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

// ServeHTTP routes r, once it passed the guard (see Config and
// docs/http-api.md): a path with a dot segment, an encoded slash, a
// backslash, NUL, another control character or invalid UTF-8 is a 400
// problem, as is an invalid Host; a Host links may not be built from is
// 421; a cross-site browser's state-changing request is 403. The paths of
// case-insensitive routes and the seed's /api/RequestStatus/ match
// regardless of ASCII case (its id keeps its case). Before all that, a
// header block over Config.MaxHeaderBytes is 431; after it, a request over
// its caller's rate (Config.RateLimits) is 429.
//
// Every request is a caller's: one that carries no arr.Caller (no
// authentication in front of the api) is Anonymous's, so the api's calls
// of the core are always scoped.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.headersFit(w, r) {
		return
	}
	if r = s.guard(w, r); r == nil {
		return
	}
	if _, ok := arr.CallerFrom(r.Context()); !ok {
		r = r.WithContext(arr.WithCaller(r.Context(), arr.Caller{Principal: arr.Anonymous}))
	}
	if s.readLimited(r.URL.Path) && !s.admit(w, r, s.readLimit) {
		return
	}
	if p := s.canonicalPath(r.URL.Path); p != r.URL.Path {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		r = r2
	}
	if s.slashless[r.URL.Path] {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

const seedStatusPrefix = "/api/requeststatus/"

func (s *Server) canonicalPath(p string) string {
	lower := asciiLower(p)
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
	o := s.originOf(r)
	return o.scheme + "://" + o.host
}

// NotReadyDetail is the detail of a failed /readyz: it says nothing of
// the store or of its error, which go to the log.
const NotReadyDetail = "a store is unavailable"

// readyz answers 200 "ready" when Config.Ready and the queue answer, else
// a 503 problem whose detail is NotReadyDetail (or the error's
// PublicDetail(), when it has one: what an operator may read, as "the
// disk of the store has 12 MiB free") and whose instance is the error id
// logged with the error. A *arr.StorageError makes its type a storage
// problem, with Retry-After.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	err := error(nil)
	if s.cfg.Ready != nil {
		err = s.cfg.Ready(r.Context())
	}
	if err == nil {
		if _, err = s.c.QueueStats(r.Context()); err != nil {
			err = fmt.Errorf("queue: %w", err)
		}
	}
	if err != nil {
		id := problem.ErrorID()
		s.cfg.Logger.Error("api: not ready", "err", err, "error_id", id)
		detail := NotReadyDetail
		var pd interface{ PublicDetail() string }
		if errors.As(err, &pd) {
			detail = pd.PublicDetail()
		}
		typ := ProblemInternal
		var se *arr.StorageError
		if errors.As(err, &se) {
			typ = ProblemStorageUnavailable
			if se.Reason != arr.StorageUnavailable {
				typ = ProblemStorageFull
			}
			setRetryAfter(w, se.RetryAfter)
		}
		writeProblemValue(w, &operation.Problem{Type: typ, Title: "Not ready",
			Status: http.StatusServiceUnavailable, Detail: detail, Instance: id})
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ready\n"))
}

// retryAfter sets Retry-After for a client asking about op: its own
// estimate (arr.Client.PollAfter: its route's run time, the queue ahead
// when it is pending, the time it has run when it is running).
func (s *Server) retryAfter(w http.ResponseWriter, ctx context.Context, op *operation.Operation) {
	var wait time.Duration
	if op.Status == operation.Pending {
		if d, err := s.c.QueueDepth(ctx); err == nil {
			wait = s.cfg.QueueWait(d)
		}
	}
	setRetryAfter(w, s.c.PollAfter(op, wait, time.Now()))
}

// setRetryAfter sets Retry-After to d in whole seconds, rounded up,
// from 1 s to 1 h.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	d = min(max(d, time.Second), time.Hour)
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeProblem(w, http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed",
		r.Method+" is not allowed here; allowed: "+allow)
}
