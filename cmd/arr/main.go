// Command arr is the Async Request-Reply server.
//
//	arr serve [flags]    run the api and the workers in one process
//	arr version
//
// With no flags, arr serve listens on 127.0.0.1:8080 and keeps its state in
// ./arr-data: no other process is needed.
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
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "arr:", err)
		}
		os.Exit(2)
	}
}

const usage = `arr — Async Request-Reply

Usage:
  arr serve [flags]   run the HTTP api and the workers (arr serve -h for flags)
  arr version         print the version
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
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

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("arr serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&cfg.DataDir, "data", "arr-data", "data directory (embedded store, result files, signing keys)")
	fs.StringVar(&cfg.StoreURL, "store", "", "operations store URL (default embedded:{data}/db)")
	fs.StringVar(&cfg.QueueURL, "queue", "", "queue URL (default embedded:{data}/db)")
	fs.StringVar(&cfg.ResultsURL, "results", "", "result store URL (default embedded:{data}/db; file:DIR for one file per result)")
	fs.StringVar(&cfg.API.PublicURL, "public-url", "", "scheme://host[:port] of absolute links (default: https://$WEBSITE_HOSTNAME if set, else the request's Host)")
	fs.IntVar(&cfg.Workers, "workers", 16, "operations run at once (0: the default; -1: run no workers)")
	fs.Int64Var(&cfg.API.MaxBodyBytes, "max-body", 1<<20, "largest accepted request body, in bytes")
	fs.Int64Var(&cfg.API.MaxQueue, "max-queue", 1_000_000, "queued operations at which submits get 503")
	fs.DurationVar(&cfg.API.ResultURLTTL, "result-url-ttl", 10*time.Minute, "lifetime of signed result URLs")
	fs.DurationVar(&cfg.API.SyncWait, "sync-wait", 127*time.Second, "longest wait of the seed's OnPending=Synchronous")
	fs.DurationVar(&cfg.API.MaxWait, "max-wait", 60*time.Second, "longest long-poll wait (?wait=, Prefer: wait=)")
	fs.DurationVar(&cfg.Worker.Retention, "retention", 24*time.Hour, "how long finished operations and results are kept")
	fs.DurationVar(&cfg.Worker.Timeout, "timeout", 10*time.Minute, "time limit of one handler attempt")
	fs.IntVar(&cfg.Worker.MaxAttempts, "max-attempts", 3, "attempts before an operation fails")
	fs.DurationVar(&cfg.Worker.ShutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long running handlers may finish")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	debugAddr := fs.String("debug-addr", "", "if set, serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); never expose it publicly")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("arr serve takes no arguments, got %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = logger
	if cfg.API.PublicURL == "" {
		cfg.API.PublicURL = publicURLFromEnv(os.Getenv("WEBSITE_HOSTNAME"))
	}
	cfg.API.Routes = []api.Route{api.SeedRoute(), api.EchoRoute()}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	if *debugAddr != "" {
		dbg := &http.Server{Addr: *debugAddr, Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("debug listener", "err", err)
			}
		}()
		defer dbg.Close()
	}
	logger.Info("arr serving", "addr", "http://"+srv.Addr(), "data", cfg.DataDir)
	err = srv.Serve(ctx)
	logger.Info("arr stopped")
	return err
}

// debugMux serves net/http/pprof's handlers under /debug/pprof/.
func debugMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
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
