// Command arrbench measures arr side by side with the HTTP ceilings and the
// job systems a user would pick instead (asynq on Redis, River on
// PostgreSQL), in one run on one machine, and prints one Markdown report of
// medians, ranges and ratios. Run it from arr's bench module:
//
//	cd bench && go run ./cmd/arrbench -out ../docs/benchmarks-run.md
//
// Workloads (see docs/benchmarks.md):
//
//	W1 durable accept: -n submissions of 1 KiB from -clients clients, no workers
//	W2 end to end: the same with -workers workers, until every result is readable
//	W3 completion latency: -w3 operations one at a time, submit then wait for the result
//	W4 status reads: -w4 reads of existing operations' status from -clients clients
//	W5 scale of state: -w5 pending operations in the embedded store; RSS and time to ready
//
// `arrbench scale` measures instead the scale-out drivers: separate arr api
// and arr worker processes over NATS JetStream and PostgreSQL, with 1, 2
// and 4 worker processes (see scale.go).
//
// Every workload but W5 is repeated -reps times, systems interleaved, and
// reported as the median with min–max.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	reps, n, clients, workers, w3, w4, w4existing, w5 int
	systems, workloads                                []string
	redisAddr, databaseURL, out                       string
	arrArgs                                           []string
	warmup                                            bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		serveBaseline(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "scale" {
		runScale(os.Args[2:])
		return
	}
	var cfg config
	var systems, workloads string
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions of W1–W4")
	flag.IntVar(&cfg.n, "n", 20000, "submissions in W1 and W2")
	flag.IntVar(&cfg.clients, "clients", 64, "concurrent clients in W1, W2 and W4")
	flag.IntVar(&cfg.workers, "workers", 16, "workers in W2 and W3")
	flag.IntVar(&cfg.w3, "w3", 1000, "operations in W3")
	flag.IntVar(&cfg.w4, "w4", 100000, "status reads in W4")
	flag.IntVar(&cfg.w4existing, "w4-existing", 2000, "operations whose status W4 reads")
	flag.IntVar(&cfg.w5, "w5", 1000000, "pending operations in W5")
	flag.StringVar(&systems, "systems", "bare,durable,arr-http,arr-lib,asynq,asynq-always,river", "systems to run")
	flag.StringVar(&workloads, "workloads", "w1,w2,w3,w4,w5", "workloads to run")
	flag.StringVar(&cfg.redisAddr, "redis", envOr("REDIS_ADDR", "127.0.0.1:6379"), "the machine's Redis, for asynq as configured")
	flag.StringVar(&cfg.databaseURL, "database-url", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL for River (a database arrbench_river is created)")
	flag.StringVar(&cfg.out, "out", "", "also write the report to this file")
	flag.BoolVar(&cfg.warmup, "warmup", true, "run one unrecorded round at a tenth of the size first")
	arrArgs := flag.String("arr-args", "", "more arguments for arr serve, space-separated (e.g. -debug-addr 127.0.0.1:6061 to profile it)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the harness process (library systems run in it)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.systems, cfg.workloads = strings.Split(systems, ","), strings.Split(workloads, ",")
	cfg.arrArgs = strings.Fields(*arrArgs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var out io.Writer = os.Stdout
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	if err := run(ctx, cfg, out); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// applies says which workloads a system takes part in: the baselines have
// no workers, so no W2; W5 is arr's embedded store alone.
func applies(sys, w string) bool {
	switch w {
	case "w2":
		return sys != "bare" && sys != "durable"
	case "w5":
		return false
	}
	return true
}

func newSystem(name string, cfg config) (System, error) {
	switch name {
	case "bare", "durable":
		return newBaseline(name, cfg.clients), nil
	case "arr-http", "arr-http-auth", "arr-http-callbacks":
		a := newArrHTTP(cfg.clients)
		a.extra, a.auth, a.callbacks = cfg.arrArgs, name == "arr-http-auth", name == "arr-http-callbacks"
		return a, nil
	case "arr-lib":
		return newArrLib(), nil
	case "asynq":
		return newAsynq(cfg.redisAddr, false), nil
	case "asynq-always":
		return newAsynq(cfg.redisAddr, true), nil
	case "river":
		return newRiver(cfg.databaseURL), nil
	}
	return nil, fmt.Errorf("unknown system %q", name)
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	rep := newReport(cfg)
	systems := map[string]System{}
	for _, name := range cfg.systems {
		s, err := newSystem(name, cfg)
		if err != nil {
			return err
		}
		systems[name] = s
	}
	if cfg.warmup {
		// One unrecorded round at a tenth of the size: builds, first
		// starts, page cache and connection pools are warm before rep 1.
		wcfg := cfg
		wcfg.n, wcfg.w3, wcfg.w4, wcfg.w4existing = max(cfg.n/10, 100), max(cfg.w3/10, 10), max(cfg.w4/10, 100), max(cfg.w4existing/10, 10)
		fmt.Fprintln(os.Stderr, "warm-up round (not recorded)")
		if err := runRep(ctx, wcfg, systems, 0, nil); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for r := range cfg.reps {
		if err := runRep(ctx, cfg, systems, r+1, rep); err != nil {
			return err
		}
	}
	if slices.Contains(cfg.workloads, "w5") {
		fmt.Fprintf(os.Stderr, "W5: filling %d operations…\n", cfg.w5)
		r, err := w5(ctx, cfg.w5, cfg.clients)
		if err != nil {
			return fmt.Errorf("W5: %w", err)
		}
		rep.w5 = &r
	}
	rep.write(out)
	return nil
}

// runRep runs W1–W4 once on every system, interleaved, adding the samples
// to rep (nil: a warm-up, not recorded).
func runRep(ctx context.Context, cfg config, systems map[string]System, r int, rep *report) error {
	for _, w := range []string{"w1", "w2", "w3", "w4"} {
		if !slices.Contains(cfg.workloads, w) {
			continue
		}
		for _, name := range cfg.systems {
			if !applies(name, w) {
				continue
			}
			s := systems[name]
			var smp sample
			var err error
			start := time.Now()
			switch w {
			case "w1":
				smp, err = withSystem(ctx, s, 0, func() (sample, error) { return w1(ctx, s, cfg.n, cfg.clients) })
			case "w2":
				smp, err = withSystem(ctx, s, cfg.workers, func() (sample, error) { return w2(ctx, s, cfg.n, cfg.clients, cfg.workers) })
			case "w3":
				smp, err = withSystem(ctx, s, cfg.workers, func() (sample, error) { return w3(ctx, s, cfg.w3, cfg.workers) })
			case "w4":
				smp, err = withSystem(ctx, s, 0, func() (sample, error) { return w4(ctx, s, cfg.w4existing, cfg.w4, cfg.clients) })
			}
			if err != nil {
				return fmt.Errorf("%s on %s (rep %d): %w", strings.ToUpper(w), name, r, err)
			}
			fmt.Fprintf(os.Stderr, "rep %d %s %-13s %8.0f/s  p50 %.2f p99 %.2f ms  cpu %.3f s/1k  (%v)\n",
				r, w, name, smp.rate, smp.lat[0], smp.lat[2], smp.cpuPerK, time.Since(start).Round(time.Millisecond))
			if rep != nil {
				rep.add(w, name, s, smp)
			}
		}
	}
	return nil
}
