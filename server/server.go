// Package server runs arr as one process: it opens the operations store,
// the queue and the result store from URLs, builds the core (package arr)
// over them, serves the HTTP api and runs the worker pool and the janitor,
// and shuts them down gracefully. It is what `arr serve` runs, and what a
// Go program embeds to run arr with its own handlers.
//
// The package links no engine: the program imports the engines whose URL
// schemes it opens (the arr command imports them all; an embedding program
// imports, say, only package embedded).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/auth"
	"github.com/arrhq/arr/callback"
	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/webhook"
	"github.com/arrhq/arr/worker"
)

// Config configures a Server. Every field has a default, given in its
// comment; the zero Config runs the seed's behaviour on 127.0.0.1:8080 with
// its state under ./arr-data.
type Config struct {
	// Addr is the listen address. Default 127.0.0.1:8080, except for a
	// worker (RoleWorker), which listens only when it is set.
	Addr string
	// AdminAddr, when set, is the address of the admin listener: it
	// serves /metrics, /healthz, /readyz and AdminHandlers, and /metrics
	// is then no longer served on Addr (the probes still are, for
	// orchestrators that probe the main port). Empty: no admin listener,
	// and /metrics is served on Addr. Keep it on loopback or a private
	// network: it has no authentication.
	AdminAddr string
	// AdminHandlers are more handlers of the admin listener, by
	// http.ServeMux pattern (the arr command serves net/http/pprof's
	// under /debug/pprof/ there). Ignored without AdminAddr.
	AdminHandlers map[string]http.Handler
	// DataDir holds the embedded store and the result files. Default
	// ./arr-data.
	DataDir string
	// StoreURL and QueueURL open the engines of the operations store and
	// the queue (package engine; the program imports the engines it
	// uses). The same URL is the same engine, whose one-step writes of an
	// operation and its message the core then uses. Default
	// embedded:{DataDir}/db for both (QueueURL defaults to StoreURL when
	// that is not embedded).
	StoreURL, QueueURL string
	// ResultsURL opens the engine of the result store and of its URL
	// signer. Default embedded:{DataDir}/db:
	// result bytes in the embedded database, whose synced writes are
	// group-committed with the operations' (file:{DataDir}/results keeps
	// each result in a file of its own, at two fsyncs per result).
	ResultsURL string
	// Mux holds the submit routes and their handlers. Default: none but the
	// seed's routes.
	Mux *ServeMux
	// NoSeedRoutes leaves out the seed's routes (arr.SeedRoutes), which are
	// otherwise served unless Mux has a route on the same method and path.
	NoSeedRoutes bool
	// Core configures the lifecycle of operations (attempts, timeouts,
	// retention, result URLs, the queue bound); its stores are filled in
	// and its Routes come from Mux (setting Core.Routes directly bypasses
	// Mux). See arr.Config for the rest.
	Core arr.Config
	// API configures the HTTP api; its Client is filled in. See
	// api.Config for the rest.
	API api.Config
	// Worker configures the worker pool; its Client is filled in, and its
	// Handlers add to (and override) the routes'. Workers set to -1 runs
	// no pool (an api-only process, as Role RoleAPI). See worker.Config for
	// the rest.
	Worker  worker.Config
	Workers int
	// Role says which parts of arr this process runs. Default RoleAll:
	// the HTTP api, the workers and the janitor. Several processes of any
	// roles can share one store only on a shared engine (nats://,
	// postgres://): the embedded store belongs to one process.
	Role Role
	// JanitorInterval is how often expired operations, their results and
	// past tombstones are deleted. Default arr.DefaultJanitorInterval (1m).
	JanitorInterval time.Duration
	// Logger receives the server's log. Default slog.Default().
	Logger *slog.Logger
	// Auth authenticates the api's requests (package auth): a request it
	// refuses is answered 401. /healthz, /readyz and the signed result
	// URLs (capabilities of their own) are served without it. Nil: every
	// request is the anonymous caller.
	Auth auth.Authenticator
	// TLS, if not nil, makes the listener serve HTTPS with it (see
	// auth.ServerTLS, which also verifies client certificates).
	TLS *tls.Config
	// CallbackAllow lists the callback targets a request may name with
	// X-Callback-Url on every route that does not say otherwise
	// (arr.Route.CallbackRequests), and, by its exact entries, the
	// targets exempt from the rule that callbacks never reach loopback,
	// private, link-local or metadata addresses. Default: none.
	CallbackAllow webhook.AllowList
	// Callbacks configures the callback dispatcher, which runs when a
	// route has callbacks or CallbackAllow is not empty. Its Client,
	// Secrets, Render, Allow, Source, Registerer and Logger are filled in;
	// see callback.Config for the rest. The secrets that sign callbacks
	// derive from the result URL signer's keyring (see callback.Secrets),
	// so every process over the same result store signs alike.
	Callbacks callback.Config

	// Storage: free-space watermark, store write deadline, readiness and
	// exit on fatal engine errors (server/storage.go).
	Storage StorageConfig
	// Admission: rate limits, stored-bytes budgets, header bounds, route
	// shares (server/admission.go).
	Admission AdmissionConfig
	// Conns: connection caps, deadlines and minimum transfer rates,
	// stream caps (server/conns.go).
	Conns ConnConfig
	// Logs: access log and format (server/logs.go).
	Logs LogConfig
}

// Role is the part of arr a process runs.
type Role int

const (
	// RoleAll runs the HTTP api, the worker pool and the janitor.
	RoleAll Role = iota
	// RoleAPI runs the HTTP api only: submits, status, results, cancel,
	// events. Workers in other processes run the operations.
	RoleAPI
	// RoleWorker runs the worker pool and the janitor; Addr, when not
	// empty, serves only /healthz, /readyz and (without AdminAddr)
	// /metrics.
	RoleWorker
)

// String names the role as the arr command does: serve, api or worker.
func (r Role) String() string {
	switch r {
	case RoleAPI:
		return "api"
	case RoleWorker:
		return "worker"
	}
	return "serve"
}

// Server is a running arr: stores, api and workers.
type Server struct {
	cfg     Config
	client  *arr.Client
	engines []*engine.Engine // one reference per URL; they own the ports
	store   *opstore.Store
	queue   *queue.Queue
	results *resultstore.Store
	signer  *urlsign.Signer

	secrets    *callback.Secrets
	dispatcher *callback.Dispatcher
	api        *api.Server
	handler    http.Handler // api behind authentication
	pool       *worker.Pool
	ln         net.Listener
	adminLn    net.Listener
	reg        *prometheus.Registry
	lock       *dirLock
	conns      *conns // the api listener's bounds (server/conns.go)

	// Storage faults (storage.go): the free-space watch; opened says the
	// stores are open and the fields above set (before openedCh closes);
	// openErr is the last error of a background open.
	disk     *diskWatch
	opened   atomic.Bool
	openedCh chan struct{}
	openErr  atomic.Pointer[error]
	// openFailed gets the error of a background open that cannot succeed
	// (Serve returns it).
	openFailed chan error
	engMu      sync.Mutex // guards engines, which a background open fills
}

// New opens the stores and builds the api and the worker pool; Serve runs
// them. When a volume is under its free-space watermark at start, or the
// stores take longer than Storage.OpenWait to open, New returns a Server
// whose stores go on opening in the background (until ctx ends): Serve
// then serves the probes only until they are open (see StorageConfig).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Addr == "" && cfg.Role != RoleWorker { // a worker serves probes only if asked
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "arr-data"
	}
	if cfg.StoreURL == "" {
		cfg.StoreURL = "embedded:" + filepath.Join(cfg.DataDir, "db")
	}
	if cfg.QueueURL == "" {
		// A shared store's engine also holds the queue.
		cfg.QueueURL = "embedded:" + filepath.Join(cfg.DataDir, "db")
		if !strings.HasPrefix(cfg.StoreURL, "embedded:") {
			cfg.QueueURL = cfg.StoreURL
		}
	}
	if cfg.ResultsURL == "" {
		cfg.ResultsURL = "embedded:" + filepath.Join(cfg.DataDir, "db")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = tidyLogger(cfg.Logger, cfg.Logs.SampleWindow)
	if cfg.Role == RoleAPI {
		cfg.Workers = -1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("arr: data dir: %w", err)
	}
	// One process per data dir: it holds the embedded store, result files
	// and the records of running commands, which a starting worker reaps.
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.Storage.setDefaults()
	s := &Server{cfg: cfg, reg: prometheus.NewRegistry(), lock: lock, openedCh: make(chan struct{}), openFailed: make(chan error, 1)}
	s.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if s.conns, err = newConns(cfg.Conns, s.reg); err != nil {
		s.Close()
		return nil, err
	}
	// The free space is read before the stores open: a start on a full
	// disk still serves the probes and says so.
	s.disk = newDiskWatch(cfg.Storage, storageDirs(cfg), cfg.Logger)
	s.disk.check()
	s.disk.register(s.reg)
	go s.disk.run()
	if err := s.disk.full(); err != nil {
		cfg.Logger.Error("arr: starting on a full disk: serving the probes, and opening the stores once there is room", "err", err)
		go s.openInBackground(ctx, nil)
		return s, nil
	}
	done := make(chan error, 1)
	go func() { done <- s.open(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			s.Close()
			if be := (*buildError)(nil); errors.As(err, &be) {
				err = be.error
			}
			return nil, err
		}
		s.markOpen()
	case <-time.After(cfg.Storage.OpenWait):
		cfg.Logger.Error("arr: the stores are not open yet: serving the probes while they open", "waited", cfg.Storage.OpenWait)
		go s.openInBackground(ctx, done)
	}
	return s, nil
}

// open opens the engines and builds the core, the api, the worker pool and
// the dispatcher over them; on an error it closes what it opened.
func (s *Server) open(ctx context.Context) (err error) {
	cfg := s.cfg
	portsOpen := false
	defer func() {
		if err != nil {
			s.closeEngines()
			if portsOpen { // not the storage's: trying again would not help
				err = &buildError{err}
			}
		}
	}()
	// Each URL opens its engine once; the same URL is the same engine.
	var storeEng, queueEng, resultsEng *engine.Engine
	for _, o := range []struct {
		url string
		eng **engine.Engine
	}{{cfg.StoreURL, &storeEng}, {cfg.QueueURL, &queueEng}, {cfg.ResultsURL, &resultsEng}} {
		if *o.eng, err = engine.Open(ctx, o.url); err != nil {
			return err
		}
		s.engMu.Lock()
		s.engines = append(s.engines, *o.eng)
		s.engMu.Unlock()
	}
	if s.store, err = storeEng.Store(ctx); err == nil {
		if s.queue, err = queueEng.Queue(ctx); err == nil {
			if s.results, err = resultsEng.Results(ctx); err == nil {
				s.signer, err = resultsEng.Signer(ctx)
			}
		}
	}
	if err != nil {
		return err
	}
	portsOpen = true
	cc := cfg.Core
	cc.Store, cc.Queue, cc.Results, cc.Signer = s.store, s.queue, s.results, s.signer
	if cfg.CallbackAllow.Len() > 0 && cc.CallbackRequests == nil {
		cc.CallbackRequests = cfg.CallbackAllow
	}
	if storeEng == queueEng {
		// One engine's: an operation and its message in one write, when
		// the engine can.
		cc.Atomic = storeEng.Atomic()
	}
	cc.ResultsSyncedByStore = resultsEng == storeEng && storeEng.Caps().ResultsInLog
	if cc.Routes == nil {
		var routes []Route
		if cfg.Mux != nil {
			routes = cfg.Mux.Routes()
			if err := checkHandlers(routes); err != nil {
				return fmt.Errorf("arr: %w", err)
			}
		}
		if !cfg.NoSeedRoutes {
			routes = arr.WithSeedRoutes(routes, nil)
		}
		cc.Routes = routes
	}
	if cc.Logger == nil {
		cc.Logger = cfg.Logger
	}
	if cfg.Storage.WriteDeadline > 0 {
		cc.WriteDeadline = cfg.Storage.WriteDeadline
	}
	if cc.StorageCheck == nil {
		cc.StorageCheck = s.disk.full
	}
	if s.client, err = arr.New(cc); err != nil {
		return err
	}
	// No result URL outlives the longest lifetime configured, even one
	// signed with a leaked key.
	s.signer.SetMaxTTL(maxResultURLTTL(cc))
	if cfg.Workers >= 0 {
		wc := cfg.Worker
		wc.Client = s.client
		if cfg.Workers > 0 {
			wc.Concurrency = cfg.Workers
		}
		if wc.Logger == nil {
			wc.Logger = cfg.Logger
		}
		wc.Registerer = s.reg
		cfg.Admission.apply(nil, &wc)
		if s.pool, err = worker.New(wc); err != nil {
			return err
		}
	}
	ac := cfg.API
	ac.Client = s.client
	ready := ac.Ready
	ac.Ready = func(ctx context.Context) error {
		if err := s.ready(); err != nil {
			return err
		}
		if ready != nil {
			return ready(ctx)
		}
		return nil
	}
	ac.ResultsPrefix, ac.ResultsHandler = s.signer.Handler()
	ac.Registerer, ac.Gatherer = s.reg, s.reg
	ac.NoMetrics = ac.NoMetrics || cfg.AdminAddr != ""
	if ac.Logger == nil {
		ac.Logger = cfg.Logger
	}
	if ac.QueueWait == nil && s.pool != nil {
		pool := s.pool
		ac.QueueWait = func(depth int64) time.Duration {
			// The queue ahead of a new operation (all routes), shared by
			// the pool; its own run time is its route's (api adds it).
			return time.Duration(depth/int64(pool.Concurrency())) * pool.MeanRunTime()
		}
	}
	if s.wantsCallbacks(cc) {
		if s.secrets, err = s.callbackSecrets(ctx); err != nil {
			return err
		}
		ac.CallbackSecrets = s.secrets
	}
	cfg.Admission.apply(&ac, nil)
	if s.api, err = api.New(ac); err != nil {
		return err
	}
	if s.secrets != nil {
		dc := cfg.Callbacks
		dc.Client, dc.Secrets, dc.Allow, dc.Registerer = s.client, s.secrets, cfg.CallbackAllow, s.reg
		if dc.Logger == nil {
			dc.Logger = cfg.Logger
		}
		dc.Source = ac.PublicURL
		dc.Render = func(ctx context.Context, op *operation.Operation) ([]byte, error) {
			return s.api.RenderOperation(ctx, s.publicBase(), op)
		}
		if s.dispatcher, err = callback.New(dc); err != nil {
			return err
		}
	}
	s.handler = withAuth(notePrincipal(s.api), cfg.Auth, ac.ResultsPrefix, cfg.Logger)
	if !cfg.Logs.NoAccessLog {
		s.handler = accessLog(s.handler, cfg.Logger, ac.ResultsPrefix)
	}
	s.registerStorageMetrics()
	return nil
}

// markOpen says the stores are open and the server built.
func (s *Server) markOpen() {
	s.opened.Store(true)
	close(s.openedCh)
}

// openInBackground opens the stores after New returned: it waits for a
// pending open (when not nil) and, while opening fails, tries again every
// few seconds once no volume is under its watermark, until ctx ends.
func (s *Server) openInBackground(ctx context.Context, pending <-chan error) {
	for {
		var err error
		if pending != nil {
			err = <-pending
			pending = nil
		} else {
			for s.disk.full() != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(s.cfg.Storage.CheckInterval):
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-s.disk.stop:
				return
			default:
			}
			err = s.open(ctx)
		}
		if err == nil {
			s.cfg.Logger.Info("arr: the stores are open")
			s.markOpen()
			return
		}
		s.openErr.Store(&err)
		if be := (*buildError)(nil); errors.As(err, &be) {
			s.openFailed <- be.error
			return
		}
		s.cfg.Logger.Error("arr: opening the stores failed; trying again", "err", err, "retry_in", openRetry)
		select {
		case <-ctx.Done():
			return
		case <-s.disk.stop:
			return
		case <-time.After(openRetry):
		}
	}
}

// buildError is an error of open after the stores opened: a
// configuration that cannot work, which no retry mends.
type buildError struct{ error }

func (e *buildError) Unwrap() error { return e.error }

// openRetry is the pause between two background tries to open the stores.
const openRetry = 5 * time.Second

// wantsCallbacks reports whether cc's routes owe callbacks or take
// requested ones.
func (s *Server) wantsCallbacks(cc arr.Config) bool {
	if cc.CallbackRequests != nil {
		return true
	}
	for _, r := range cc.Routes {
		if len(r.Callbacks) > 0 || r.CallbackRequests != nil {
			return true
		}
	}
	return false
}

// callbackKeysFile keeps the master keys of callback secrets in the data
// directory when the result store's URLs are not signed with arr's keys.
const callbackKeysFile = "callback-keys.json"

// callbackSecrets opens the keyring callback secrets derive from: the
// result URL signer's, which every process over the same result store
// shares, else one in the data directory.
func (s *Server) callbackSecrets(ctx context.Context) (*callback.Secrets, error) {
	var keys urlsign.Keys
	if h, ok := s.signer.Driver().(*urlsign.HMAC); ok {
		keys = h.Keys()
	} else {
		fk, err := urlsign.OpenFileKeys(filepath.Join(s.cfg.DataDir, callbackKeysFile), "")
		if err != nil {
			return nil, err
		}
		keys = fk
	}
	return callback.NewSecrets(ctx, keys)
}

// publicBase is the scheme and authority of the links callbacks carry:
// the api's PublicURL, else the address this process listens on.
func (s *Server) publicBase() string {
	if s.cfg.API.PublicURL != "" {
		return strings.TrimRight(s.cfg.API.PublicURL, "/")
	}
	if s.ln != nil {
		scheme := "http"
		if s.cfg.TLS != nil {
			scheme = "https"
		}
		return scheme + "://" + s.ln.Addr().String()
	}
	return ""
}

// maxResultURLTTL is the longest lifetime of the result URLs of cc: its
// ResultURLTTL (default arr.DefaultResultURLTTL) or a route's longer one.
func maxResultURLTTL(cc arr.Config) time.Duration {
	m := cc.ResultURLTTL
	if m <= 0 {
		m = arr.DefaultResultURLTTL
	}
	for _, r := range cc.Routes {
		m = max(m, r.ResultURLTTL)
	}
	return m
}

// Client is the core the server runs: the Go API for callers (Submit,
// Get, Wait, Cancel, Retry, OpenResult…), the same one the HTTP api uses.
// It is nil while the stores are not open yet (see New).
func (s *Server) Client() *arr.Client {
	if !s.opened.Load() {
		return nil
	}
	return s.client
}

// Gatherer is the server's Prometheus registry: what /metrics serves.
func (s *Server) Gatherer() prometheus.Gatherer { return s.reg }

// Handler is the HTTP api behind Config.Auth, for tests and embedding;
// nil while the stores are not open yet (see New).
func (s *Server) Handler() http.Handler {
	if !s.opened.Load() {
		return nil
	}
	return s.handler
}

// Listen binds the listen address and the admin address, if set; Addr and
// AdminAddr then tell the bound addresses (useful with port 0). A worker
// (RoleWorker) with an empty Addr binds only the admin address.
func (s *Server) Listen() error {
	if s.cfg.Role != RoleWorker || s.cfg.Addr != "" {
		ln, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return err
		}
		s.ln = ln
	}
	if s.cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			if s.ln != nil {
				_ = s.ln.Close()
				s.ln = nil
			}
			return fmt.Errorf("admin listener: %w", err)
		}
		s.adminLn = ln
	}
	return nil
}

// AdminAddr is the bound admin address after Listen, or Config.AdminAddr.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return s.cfg.AdminAddr
	}
	return s.adminLn.Addr().String()
}

// Addr is the bound address after Listen.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Serve serves HTTP and runs the workers until ctx is canceled, then stops
// accepting requests, lets running handlers finish within the worker's
// shutdown grace, gives the rest back to the queue and closes the stores.
// It returns at most the grace plus Storage.CloseTimeout after ctx ends,
// whatever the stores do: what it still waited for then is logged and
// abandoned, and Serve returns an error saying so. While the stores are
// not open yet (see StorageConfig.OpenWait) it serves the probes only, and
// comes up fully once they are.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil && s.adminLn == nil && (s.cfg.Role != RoleWorker || s.cfg.Addr != "" || s.cfg.AdminAddr != "") {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	var mainMetrics http.Handler
	if s.cfg.AdminAddr == "" && !s.cfg.API.NoMetrics {
		mainMetrics = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	}
	cc := s.conns.cfg
	starting := s.starting(mainMetrics)
	workerProbes := s.probes(s.cfg.AdminAddr == "", nil)
	var inflight atomic.Int64
	main := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		switch {
		case !s.opened.Load():
			starting.ServeHTTP(w, r)
		case s.cfg.Role == RoleWorker:
			workerProbes.ServeHTTP(w, r)
		default:
			s.handler.ServeHTTP(w, r)
		}
	})
	newHTTP := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: timeout(cc.ReadHeaderTimeout), IdleTimeout: timeout(cc.IdleTimeout),
			MaxHeaderBytes: s.cfg.Admission.maxHeaderBytes(),
			ErrorLog:       slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)}
	}
	var servers []*http.Server
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	for _, l := range []struct {
		ln  net.Listener
		h   http.Handler
		tls bool
	}{{s.ln, main, true}, {s.adminLn, s.probes(true, s.cfg.AdminHandlers), false}} {
		if l.ln == nil { // a worker without a probe listener; no admin listener
			continue
		}
		hs := newHTTP(l.h)
		ln := l.ln
		if l.tls { // the api listener, bounded (the admin one is not)
			hs.Handler, hs.ConnState, hs.ConnContext = s.conns.handler(l.h), s.conns.connState, s.conns.connContext
			ln = s.conns.listener(ln, s.cfg.TLS)
		}
		serve := func() error { return hs.Serve(ln) }
		if l.tls && s.cfg.TLS != nil { // the admin listener stays plain HTTP
			hs.TLSConfig = s.cfg.TLS.Clone()
			serve = func() error { return hs.ServeTLS(ln, "", "") }
		}
		servers = append(servers, hs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var err error
	stopping := false
	if !s.opened.Load() {
		select {
		case <-s.openedCh:
		case <-ctx.Done():
			stopping = true
		case err = <-errc:
			stopping = true
		case err = <-s.openFailed:
			stopping = true
		}
	}
	if !stopping {
		s.runWork(workCtx, &wg)
		select {
		case <-ctx.Done():
		case err = <-errc:
		}
	}
	if serr := s.shutdown(servers, stopWork, &wg, &inflight); err == nil {
		err = serr
	}
	return err
}

// runWork starts the worker pool, the janitor and the dispatcher, as the
// role has them, in wg.
func (s *Server) runWork(ctx context.Context, wg *sync.WaitGroup) {
	if s.pool != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.pool.Run(ctx)
		}()
	}
	if s.cfg.Role != RoleAPI {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client.RunJanitor(ctx, s.cfg.JanitorInterval)
		}()
	}
	if s.cfg.Role != RoleWorker { // where submits are: the stored-bytes budget's count
		wg.Add(1)
		go func() { defer wg.Done(); s.client.RunStoredBytes(ctx) }()
	}
	if s.dispatcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.dispatcher.Run(ctx)
		}()
	}
}

// shutdownHTTPGrace is how long requests (long-polls and event streams
// among them) get to finish on shutdown before their connections close.
const shutdownHTTPGrace = 5 * time.Second

// shutdown stops the listeners and the workers together, waits for the
// requests and the running handlers (within the worker's grace), closes
// the stores (within Storage.CloseTimeout), and logs what it waits for.
// It returns after the grace plus CloseTimeout whatever is left: storage
// that does not answer must not keep the process alive.
func (s *Server) shutdown(servers []*http.Server, stopWork func(), wg *sync.WaitGroup, inflight *atomic.Int64) error {
	grace := s.cfg.Worker.ShutdownGrace
	if grace <= 0 {
		grace = worker.DefaultShutdownGrace
	}
	limit := max(grace, shutdownHTTPGrace) + s.cfg.Storage.CloseTimeout
	var running int64
	if s.pool != nil && s.opened.Load() {
		running = s.pool.Running()
	}
	log := s.cfg.Logger
	log.Info("arr: shutting down: waiting for requests (long-polls and event streams among them), running handlers and the stores; a second signal exits at once",
		"requests", inflight.Load(), "running_handlers", running, "handler_grace", grace, "at_most", limit)
	var phase atomic.Value
	phase.Store("requests and running handlers")
	done := make(chan error, 1)
	go func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), shutdownHTTPGrace)
		var hwg sync.WaitGroup
		for _, hs := range servers {
			hwg.Add(1)
			go func() {
				defer hwg.Done()
				if hs.Shutdown(shutCtx) != nil {
					_ = hs.Close()
				}
			}()
		}
		stopWork()
		hwg.Wait()
		cancel()
		wg.Wait()
		phase.Store("the stores to close")
		log.Info("arr: requests and handlers are done; closing the stores")
		done <- s.Close()
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			var running int64
			if s.pool != nil && s.opened.Load() {
				running = s.pool.Running()
			}
			log.Info("arr: still shutting down", "waiting_for", phase.Load(), "requests", inflight.Load(), "running_handlers", running)
		case <-deadline.C:
			var running int64
			if s.pool != nil && s.opened.Load() {
				running = s.pool.Running()
			}
			log.Error("arr: shutdown outlived its limit: exiting without waiting longer (acknowledged operations are durable; the abandoned ones run again after a restart)",
				"abandoned", phase.Load(), "requests", inflight.Load(), "running_handlers", running, "limit", limit)
			return fmt.Errorf("arr: shutdown abandoned after %s, still waiting for %s", limit, phase.Load())
		}
	}
}

// Close stops the free-space watch and closes the stores; Serve calls it
// on the way out.
func (s *Server) Close() error {
	if s.disk != nil {
		s.disk.close()
	}
	errs := []error{s.closeEngines()}
	if s.lock != nil {
		errs = append(errs, s.lock.release())
		s.lock = nil
	}
	return errors.Join(errs...)
}

// closeEngines closes the engines opened so far.
func (s *Server) closeEngines() error {
	s.engMu.Lock()
	engines := s.engines
	s.engines = nil
	s.engMu.Unlock()
	var errs []error
	for _, e := range engines {
		errs = append(errs, e.Close())
	}
	s.signer, s.results, s.queue, s.store = nil, nil, nil, nil
	return errors.Join(errs...)
}

// engineList is the engines open now.
func (s *Server) engineList() []*engine.Engine {
	s.engMu.Lock()
	defer s.engMu.Unlock()
	return append([]*engine.Engine(nil), s.engines...)
}
