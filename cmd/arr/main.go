// Command arr is the Async Request-Reply server.
//
//	arr serve [flags]    run the api and the workers in one process
//	arr api [flags]      run the HTTP api only
//	arr worker [flags]   run the workers only
//	arr keys list|rotate [-revoke KID] [-data DIR] [-results URL]
//	                     show or rotate the signing keys of result URLs
//	arr version
//
// With no flags, arr serve listens on 127.0.0.1:8080 and keeps its state in
// ./arr-data: no other process is needed. arr api and arr worker share one
// store on an engine several processes can use (-store nats://… or
// postgres://…, -results s3://… or azblob://…); see docs/scale-out.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/arrhq/arr/config"
	"github.com/arrhq/arr/handler/command"
	"github.com/arrhq/arr/internal/trustedproxy"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/webhook"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp): // -h: the usage was asked for
			os.Exit(0)
		case errors.Is(err, errUsage): // the usage is printed
		default:
			fmt.Fprintln(os.Stderr, "arr:", err)
		}
		os.Exit(2)
	}
}

const usage = `arr — Async Request-Reply

Usage:
  arr serve [flags]   run the HTTP api and the workers (arr serve -h for flags)
  arr api [flags]     run the HTTP api only, over a shared store
  arr worker [flags]  run the workers only, over a shared store
  arr keys list|rotate [-revoke KID]
                      show or rotate the signing keys of result URLs
  arr version         print the version
`

// errUsage: arr was run without a command; the usage says what to give.
var errUsage = errors.New("no command")

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(server.RoleAll, args[1:], stderr)
	case "api":
		return serve(server.RoleAPI, args[1:], stderr)
	case "worker":
		return serve(server.RoleWorker, args[1:], stderr)
	case "keys":
		return keysCmd(args[1:], stdout, stderr)
	case "version":
		v := "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		fmt.Fprintln(stdout, "arr", v)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func serve(role server.Role, args []string, stderr io.Writer) error {
	name := "arr " + role.String()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := server.Config{Role: role}
	if role == server.RoleWorker {
		fs.StringVar(&cfg.Addr, "addr", "", "if set, serve /healthz, /readyz and /metrics on this address")
	} else {
		fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	}
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "", "if set, serve /metrics, Go's pprof profiles (/debug/pprof/) and /healthz, /readyz on this address (e.g. 127.0.0.1:9090), and /metrics no longer on -addr; no authentication: keep it on loopback or a private network")
	fs.StringVar(&cfg.DataDir, "data", "arr-data", "data directory (embedded store, result files, signing keys)")
	fs.StringVar(&cfg.StoreURL, "store", "", "operations store URL: embedded:DIR, nats://host:port[,host:port…][?…] (TLS: tls://… or ?tls_ca=FILE&tls_cert=FILE&tls_key=FILE), postgres://…[?sslmode=verify-full] (default embedded:{data}/db)")
	fs.StringVar(&cfg.QueueURL, "queue", "", "queue URL: the store's engines, azqueue://QUEUE?account=NAME (Azure Queue Storage) or azservicebus://NAMESPACE/QUEUE (Azure Service Bus), keyless (DefaultAzureCredential; see docs/scale-out.md) (default: the store's URL)")
	fs.StringVar(&cfg.ResultsURL, "results", "", "result store URL: embedded:DIR, file:DIR, s3://bucket?…, azblob://container?account=NAME (default embedded:{data}/db; required with a shared store)")
	fs.StringVar(&cfg.API.PublicURL, "public-url", "", "scheme://host[:port] of absolute links (default: https://$WEBSITE_HOSTNAME if set, else the request's Host)")
	fs.IntVar(&cfg.Workers, "workers", 16, "operations run at once (0: the default; -1: run no workers)")
	fs.Int64Var(&cfg.API.MaxBodyBytes, "max-body", 1<<20, "largest accepted request body, in bytes")
	fs.Int64Var(&cfg.Core.MaxQueue, "max-queue", 1_000_000, "queued operations at which submits get 503")
	fs.DurationVar(&cfg.Core.ResultURLTTL, "result-url-ttl", 10*time.Minute, "lifetime of signed result URLs; no URL expiring later than the longest configured lifetime (this or a route's) is signed or served")
	fs.DurationVar(&cfg.API.SyncWait, "sync-wait", 127*time.Second, "longest wait of the seed's OnPending=Synchronous")
	fs.DurationVar(&cfg.API.MaxWait, "max-wait", 60*time.Second, "longest long-poll wait (?wait=, Prefer: wait=)")
	fs.DurationVar(&cfg.Core.Retention, "retention", 24*time.Hour, "how long finished operations and results are kept")
	fs.DurationVar(&cfg.Core.Timeout, "timeout", 10*time.Minute, "time limit of one handler attempt")
	fs.IntVar(&cfg.Core.MaxAttempts, "max-attempts", 3, "attempts before an operation fails")
	fs.DurationVar(&cfg.Worker.ShutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long running handlers may finish")
	fs.DurationVar(&cfg.Worker.Lease, "lease", 30*time.Second, "a worker's hold on an operation, renewed every third of it; a killed worker's operations run again after it")
	fs.DurationVar(&cfg.Core.Tombstone, "tombstone", 7*24*time.Hour, "after an operation is deleted, how long its status answers 410 before 404")
	fs.IntVar(&cfg.Core.MaxInterruptions, "max-interruptions", 10, "attempts of an operation that a dead worker or lost lease may cut short before it fails")
	fs.Int64Var(&cfg.Core.MaxResultBytes, "max-result", 64<<20, "largest result, in bytes; a larger one fails the operation (results are written and served as streams)")
	fs.DurationVar(&cfg.JanitorInterval, "janitor-interval", time.Minute, "how often expired operations and their results are deleted")
	allowedHosts := fs.String("allowed-hosts", "", "host[:port],… the api answers for besides loopback ones, when links are built from the request's Host (no -public-url); other Hosts get 421")
	allowedOrigins := fs.String("allowed-origins", "", "scheme://host[:port],… whose browsers may POST, PUT, PATCH or DELETE cross-site (others get 403)")
	callbackAllow := fs.String("callback-allow", "", "host[:port],*.domain or * …: callback targets requests may name with X-Callback-Url; exact entries may be loopback or private addresses, which callbacks otherwise never reach")
	configFile := fs.String("config", "", "YAML config file with routes and settings (see examples/arr.yaml); flags given explicitly override it")
	gateway := fs.String("forward", "", "gateway mode: answer any request no route takes with 202 and forward it to this upstream URL")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var af authFlags
	if role != server.RoleWorker {
		af.register(fs)
	}
	var applyLimits []func(map[string]bool) error
	for _, g := range limitFlags {
		applyLimits = append(applyLimits, g(fs, &cfg, role))
	}
	debugAddr := fs.String("debug-addr", "", "deprecated: use -admin-addr, which serves pprof too; if set, serve only Go's pprof profiles on this address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", name, fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	cfg.API.AllowedHosts, cfg.API.AllowedOrigins = splitList(*allowedHosts), splitList(*allowedOrigins)
	logger, err := server.NewLogger(stderr, cfg.Logs, level)
	if err != nil {
		return fmt.Errorf("-log-format: %w", err)
	}
	cfg.Logger = logger
	slog.SetDefault(logger) // the engines' own warnings (e.g. postgres's sslmode) go to the same log
	if cfg.API.PublicURL == "" {
		cfg.API.PublicURL = publicURLFromEnv(os.Getenv("WEBSITE_HOSTNAME"))
	}
	if err := applyAuthEnv(fs, os.Getenv); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var file *config.File
	if *configFile != "" {
		if file, err = config.Load(*configFile, nil); err != nil {
			return err
		}
		applyFile(&cfg, file, set, gateway)
	}
	if set["callback-allow"] || file == nil {
		if cfg.CallbackAllow, err = webhook.ParseAllowList(*callbackAllow); err != nil {
			return fmt.Errorf("-callback-allow: %w", err)
		}
	}
	for _, apply := range applyLimits {
		if err := apply(set); err != nil {
			return err
		}
	}
	if err := checkShared(role, cfg); err != nil {
		return err
	}
	if *debugAddr != "" && cfg.AdminAddr != "" {
		return errors.New("-debug-addr is deprecated and -admin-addr serves pprof too: give only -admin-addr")
	}
	if cfg.AdminAddr != "" {
		cfg.AdminHandlers = map[string]http.Handler{"/debug/pprof/": debugMux()}
		if !isLoopback(cfg.AdminAddr) {
			logger.Warn("the admin listener is not on loopback and has no authentication: /metrics and pprof are open to whoever reaches it; keep it on a private network", "admin_addr", cfg.AdminAddr)
		}
	}
	authCfg, tlsFiles, insecure, err := af.resolve(file, set)
	if err != nil {
		return err
	}
	// One setting, two uses: the proxies whose Forwarded/X-Forwarded-*
	// headers the api believes, and whose identity header authenticates.
	if set["trusted-proxies"] {
		cfg.API.TrustedProxies = authCfg.TrustedProxies
	} else {
		authCfg.TrustedProxies = cfg.API.TrustedProxies
	}
	if role != server.RoleWorker {
		if err := checkExposure(cfg.Addr, authCfg, insecure); err != nil {
			return err
		}
	}
	creds, err := credentials(context.Background(), file, cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.API.Credentials = creds
	rs, err := routes(file, *gateway, cfg.DataDir, cfg.Core.MaxResultBytes, creds)
	if err != nil {
		return err
	}
	cfg.Mux = server.NewServeMux()
	for _, r := range rs {
		cfg.Mux.HandleRoute(r)
	}

	ctx, stop := onSignals(logger)
	defer stop()
	if role != server.RoleWorker {
		if err := setupAuth(ctx, &cfg, authCfg, tlsFiles, logger); err != nil {
			return err
		}
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	// The data directory is locked: no other arr uses it, and the commands
	// recorded in it are a previous run's.
	if n, err := command.Reap(execPIDDir(cfg.DataDir)); err != nil {
		srv.Close()
		return fmt.Errorf("reaping commands of a previous run: %w", err)
	} else if n > 0 {
		logger.Warn("killed process groups left by a previous run", "groups", n)
	}
	if cfg.Addr != "" || cfg.AdminAddr != "" {
		if err := srv.Listen(); err != nil {
			srv.Close()
			return err
		}
	}
	if *debugAddr != "" {
		logger.Warn("-debug-addr is deprecated: -admin-addr serves pprof, /metrics and the probes", "debug_addr", *debugAddr)
		dbg := &http.Server{Addr: *debugAddr, Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("debug listener", "err", err)
			}
		}()
		defer dbg.Close()
	}
	if cfg.AdminAddr != "" {
		logger.Info("admin listener serving /metrics, /debug/pprof/, /healthz, /readyz", "admin_addr", "http://"+srv.AdminAddr())
	}
	if cfg.Addr != "" {
		scheme := "http://"
		if cfg.TLS != nil {
			scheme = "https://"
		}
		logger.Info("arr "+role.String()+" serving", "addr", scheme+srv.Addr(), "data", cfg.DataDir)
	} else {
		logger.Info("arr "+role.String()+" running", "data", cfg.DataDir)
	}
	err = srv.Serve(ctx)
	logger.Info("arr stopped")
	return err
}

// checkShared refuses the set-ups that cannot work across processes: an
// api or a worker alone over the embedded store (one process's), and a
// shared store whose results would stay in one process's data directory.
func checkShared(role server.Role, cfg server.Config) error {
	embedded := func(u string) bool { return u == "" || strings.HasPrefix(u, "embedded:") }
	if role != server.RoleAll && (embedded(cfg.StoreURL) || strings.HasPrefix(cfg.QueueURL, "embedded:")) {
		return fmt.Errorf("arr %s runs beside other arr processes and needs a store they share: -store nats://… or postgres://… (the embedded store belongs to one process; use arr serve for that)", role)
	}
	if !embedded(cfg.StoreURL) && embedded(cfg.ResultsURL) {
		return fmt.Errorf("-store %s is shared, so results must be too: give -results s3://bucket?… or azblob://container?… (or file:DIR on a directory every arr process mounts)", redactURL(cfg.StoreURL))
	}
	return nil
}

// redactURL hides a URL's password for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}

// applyFile takes the file's server settings for the flags not given on
// the command line.
func applyFile(cfg *server.Config, f *config.File, set map[string]bool, gateway *string) {
	fs := f.Server
	str := func(flag string, dst *string, v string) {
		if v != "" && !set[flag] {
			*dst = v
		}
	}
	dur := func(flag string, dst *time.Duration, v config.Duration) {
		if v > 0 && !set[flag] {
			*dst = v.Std()
		}
	}
	str("addr", &cfg.Addr, fs.Addr)
	str("admin-addr", &cfg.AdminAddr, fs.AdminAddr)
	str("data", &cfg.DataDir, fs.Data)
	str("public-url", &cfg.API.PublicURL, fs.PublicURL)
	str("store", &cfg.StoreURL, fs.Store)
	str("queue", &cfg.QueueURL, fs.Queue)
	str("results", &cfg.ResultsURL, fs.Results)
	str("forward", gateway, fs.Forward)
	if !set["allowed-hosts"] {
		cfg.API.AllowedHosts = append(cfg.API.AllowedHosts, fs.AllowedHosts...)
	}
	if !set["allowed-origins"] {
		cfg.API.AllowedOrigins = append(cfg.API.AllowedOrigins, fs.AllowedOrigins...)
	}
	if !set["trusted-proxies"] {
		for _, v := range fs.TrustedProxies {
			ps, _ := trustedproxy.Parse(v) // checked by config.Load
			cfg.API.TrustedProxies = append(cfg.API.TrustedProxies, ps...)
		}
	}
	if fs.Workers != nil && !set["workers"] {
		cfg.Workers = *fs.Workers
	}
	if fs.MaxBody > 0 && !set["max-body"] {
		cfg.API.MaxBodyBytes = int64(fs.MaxBody)
	}
	if fs.MaxQueue > 0 && !set["max-queue"] {
		cfg.Core.MaxQueue = fs.MaxQueue
	}
	dur("result-url-ttl", &cfg.Core.ResultURLTTL, fs.ResultURLTTL)
	dur("sync-wait", &cfg.API.SyncWait, fs.SyncWait)
	dur("max-wait", &cfg.API.MaxWait, fs.MaxWait)
	dur("shutdown-grace", &cfg.Worker.ShutdownGrace, fs.ShutdownGrace)
	dur("lease", &cfg.Worker.Lease, fs.Lease)
	dur("janitor-interval", &cfg.JanitorInterval, fs.JanitorInterval)
	cb := fs.Callbacks
	if !set["callback-allow"] {
		cfg.CallbackAllow, _ = webhook.ParseAllowList(cb.Allow...) // checked by config.Load
	}
	cfg.Callbacks.MaxAge = cb.MaxAge.Std()
	cfg.Callbacks.Backoff = webhook.Backoff{Min: cb.MinBackoff.Std(), Max: cb.MaxBackoff.Std()}
	cfg.Callbacks.Timeout = cb.Timeout.Std()
	if fs.MaxInterruptions > 0 && !set["max-interruptions"] {
		cfg.Core.MaxInterruptions = fs.MaxInterruptions
	}
	if fs.MaxResult > 0 && !set["max-result"] {
		cfg.Core.MaxResultBytes = int64(fs.MaxResult)
	}
	if fs.SeedRoutes != nil && !*fs.SeedRoutes {
		cfg.NoSeedRoutes = true
	}
	// A flag given explicitly overrides the file's defaults (a route's own
	// setting still wins over both).
	d := &f.Defaults
	if set["timeout"] {
		d.Timeout = config.Duration(cfg.Core.Timeout)
	}
	if set["max-attempts"] {
		d.MaxAttempts = cfg.Core.MaxAttempts
	}
	if set["retention"] {
		d.Retention = config.Duration(cfg.Core.Retention)
	}
	if set["tombstone"] {
		d.Tombstone = config.Duration(cfg.Core.Tombstone)
	}
	if set["result-url-ttl"] {
		d.ResultTTL = config.Duration(cfg.Core.ResultURLTTL)
	}
	if set["max-body"] {
		d.MaxBody = config.ByteSize(cfg.API.MaxBodyBytes)
	}
	// The defaults are also the server's, for operations of routes the
	// file does not list.
	dur("timeout", &cfg.Core.Timeout, d.Timeout)
	dur("retention", &cfg.Core.Retention, d.Retention)
	dur("tombstone", &cfg.Core.Tombstone, d.Tombstone)
	if d.MaxAttempts > 0 && !set["max-attempts"] {
		cfg.Core.MaxAttempts = d.MaxAttempts
	}
}

// debugMux serves net/http/pprof's handlers under /debug/pprof/, on the
// admin listener (or the deprecated -debug-addr), except cmdline: a
// command line may hold credentials (a -store URL's password).
func debugMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// publicURLFromEnv turns the seed's WEBSITE_HOSTNAME (a host[:port], set
// by Azure App Service) into a base URL: https, except for local hosts.
func publicURLFromEnv(host string) string {
	if host == "" {
		return ""
	}
	if strings.Contains(host, "://") {
		return host
	}
	if strings.HasPrefix(host, "localhost") || strings.HasPrefix(host, "127.") {
		return "http://" + host
	}
	return "https://" + host
}

// onSignals returns a context that SIGINT or SIGTERM cancels, which starts
// a graceful shutdown; a second signal exits the process at once (status
// 1), whatever the shutdown is waiting for. stop releases the signals.
func onSignals(logger *slog.Logger) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			logger.Info("arr: shutting down on a signal; a second one exits at once", "signal", sig.String())
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			logger.Error("arr: second signal: exiting at once without waiting for the shutdown", "signal", sig.String())
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
