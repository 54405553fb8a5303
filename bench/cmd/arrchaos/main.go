// Command arrchaos audits arr's guarantees under chaos: it runs a real
// `arr serve`, submits a steady load of POST /v1/echo from many clients
// (each request with its own Idempotency-Key, retried with the same key
// while the server is down), SIGKILLs the server at random intervals and
// restarts it on the same address and data directory, and at the end checks
// that nothing acknowledged was lost, that nothing unsent appeared, that no
// key made two operations, and that no request has two different results.
//
//	go run ./cmd/arrchaos -duration 30s
//
// It prints one summary line on stdout (progress goes to stderr):
//
//	accepted=12345 completed=12345 lost=0 phantom=0 duplicate_ops=0 duplicates_executed=17 differing_results=0 kills=9 duration=30s
//
// With -kill-starting P, each restart is, with probability P, SIGKILLed
// again while arr is still starting (recovering its store), and so on.
//
// With -engine nats or -engine postgres, it audits arr scaled out instead:
// it starts the engine itself (a 3-node NATS JetStream cluster with R3
// streams, or a private PostgreSQL server), two `arr api` and two
// `arr worker` processes over it sharing a file: result store, spreads the
// load round-robin over the two apis (a retry may go to the other one), and
// each kill hits a random one of api A, api B, worker 1, worker 2 and the
// engine (a NATS node, one at a time; the whole PostgreSQL server), which is
// restarted after a short random pause (-down-max):
//
//	go run ./cmd/arrchaos -engine nats -duration 2m
//
// It exits 1 if lost, phantom, duplicate_ops or differing_results is not 0,
// if a valid request was refused with a 4xx, or if a run of 5s or more
// killed nothing; 2 if the run itself failed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// mainModule is the module path of arr itself.
const mainModule = "github.com/arrhq/arr"

type config struct {
	Arr      string        // prebuilt arr binary; "" builds one from Src
	Src      string        // the main module's directory; "" finds it
	Duration time.Duration // how long the load runs
	Clients  int           // concurrent clients
	KillMin  time.Duration // shortest time between kills
	KillMax  time.Duration // longest time between kills
	// KillStarting is the probability that a restart after a kill is
	// itself killed while arr starts (before /readyz answers 200).
	KillStarting float64
	Settle       time.Duration // how long to wait for accepted operations to finish
	Grace        time.Duration // how long past Duration a client keeps retrying an unacknowledged request
	Workers      int           // arr serve -workers; 0: arr's default (not passed)
	BodySize     int           // bytes of each request body
	Keep         bool          // keep the temp dir (data, logs, client log)
	Log          io.Writer     // progress; default os.Stderr
	// Engine is "" for one arr serve over its embedded store, or "nats" or
	// "postgres": two arr api and two arr worker over that engine.
	Engine  string
	DownMax time.Duration // scale-out: longest pause before a killed process or node is restarted
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Arr, "arr", "", "prebuilt arr binary (default: build ./cmd/arr of the main module)")
	flag.StringVar(&cfg.Src, "src", "", "directory of the main module github.com/arrhq/arr (default: the parent of the bench module)")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the load runs")
	flag.IntVar(&cfg.Clients, "clients", 16, "concurrent clients")
	flag.DurationVar(&cfg.KillMin, "kill-min", time.Second, "shortest interval between two SIGKILLs")
	flag.DurationVar(&cfg.KillMax, "kill-max", 4*time.Second, "longest interval between two SIGKILLs")
	flag.Float64Var(&cfg.KillStarting, "kill-starting", 0, "probability (0–1) that a restart is SIGKILLed again while arr is starting (recovering)")
	flag.DurationVar(&cfg.Settle, "settle", 60*time.Second, "after the load, how long to wait for every accepted operation to finish (with -engine: since the number still open last fell)")
	flag.DurationVar(&cfg.Grace, "grace", 30*time.Second, "how long after -duration a client keeps retrying a request not yet acknowledged")
	flag.IntVar(&cfg.Workers, "workers", 0, "passed to arr serve as -workers (default: arr's default)")
	flag.IntVar(&cfg.BodySize, "body-size", 256, "bytes in each request body")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the temp dir (arr data, arr.log, requests.jsonl)")
	flag.StringVar(&cfg.Engine, "engine", "", `"" for one arr serve; "nats" (3-node JetStream cluster) or "postgres": two arr api and two arr worker over that engine, started by arrchaos`)
	flag.DurationVar(&cfg.DownMax, "down-max", 2*time.Second, "with -engine, longest pause before a killed process or engine node is restarted")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "arrchaos: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sum, err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "arrchaos:", err)
		os.Exit(2)
	}
	fmt.Println(sum)
	if f := sum.Failures(); len(f) > 0 {
		fmt.Fprintln(os.Stderr, "arrchaos: FAIL:", strings.Join(f, "; "))
		os.Exit(1)
	}
}

// summary is the outcome of a run.
type summary struct {
	auditReport
	Kills    int
	Duration time.Duration
	Rejected int // requests refused with an unexpected answer (a 4xx)
}

func (s summary) String() string {
	return fmt.Sprintf("accepted=%d completed=%d lost=%d phantom=%d duplicate_ops=%d duplicates_executed=%d differing_results=%d kills=%d duration=%s",
		s.Accepted, s.Completed, s.Lost, s.Phantom, s.DuplicateOps, s.DuplicatesExecuted, s.DifferingResults, s.Kills, s.Duration)
}

// Failures says why the run fails the audit; none when it passes.
func (s summary) Failures() []string {
	var f []string
	if s.Lost > 0 {
		f = append(f, fmt.Sprintf("%d accepted operations lost", s.Lost))
	}
	if s.Phantom > 0 {
		f = append(f, fmt.Sprintf("%d phantom operations", s.Phantom))
	}
	if s.DuplicateOps > 0 {
		f = append(f, fmt.Sprintf("%d duplicate operations for one idempotency key", s.DuplicateOps))
	}
	if s.DifferingResults > 0 {
		f = append(f, fmt.Sprintf("%d requests with differing results", s.DifferingResults))
	}
	if s.Rejected > 0 {
		f = append(f, fmt.Sprintf("%d valid requests refused with a 4xx", s.Rejected))
	}
	if s.Kills == 0 && s.Duration >= 5*time.Second {
		f = append(f, "the server was never killed: nothing was audited under chaos")
	}
	return f
}

// run builds (or takes) arr, runs the load under kills, audits and cleans
// up. An error means the run could not be carried out; the audit's verdict
// is in the summary.
func run(ctx context.Context, cfg config) (summary, error) {
	sum := summary{Duration: cfg.Duration}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.Clients < 1 {
		cfg.Clients = 1
	}
	if cfg.KillMin <= 0 {
		cfg.KillMin = time.Second
	}
	if cfg.KillMax < cfg.KillMin {
		cfg.KillMax = cfg.KillMin
	}
	cfg.KillStarting = min(max(cfg.KillStarting, 0), 0.95)
	if cfg.Settle <= 0 {
		cfg.Settle = 60 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.BodySize < 128 {
		cfg.BodySize = 128
	}
	switch cfg.Engine {
	case "", "nats", "postgres":
	default:
		return sum, fmt.Errorf("-engine %q: want nats or postgres (or nothing for arr serve)", cfg.Engine)
	}
	if cfg.DownMax < 0 {
		cfg.DownMax = 0
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, "arrchaos: "+format+"\n", args...) }

	tmp, err := os.MkdirTemp("", "arrchaos-")
	if err != nil {
		return sum, err
	}
	if cfg.Keep {
		defer logf("kept %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	bin := cfg.Arr
	if bin == "" {
		src := cfg.Src
		if src == "" {
			if src, err = findMainModule(); err != nil {
				return sum, err
			}
		}
		bin = filepath.Join(tmp, "arr")
		start := time.Now()
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/arr")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			return sum, fmt.Errorf("go build ./cmd/arr in %s: %v\n%s", src, err, out)
		}
		logf("built arr from %s in %s", src, time.Since(start).Round(time.Millisecond))
	} else if bin, err = filepath.Abs(bin); err != nil {
		return sum, err
	}

	// procs are the arr processes, victims what the killer picks from, bases
	// the apis the clients submit to.
	var procs []*server
	var victims []victim
	var bases []string
	if cfg.Engine == "" {
		addr, err := freeAddr()
		if err != nil {
			return sum, err
		}
		logFile, err := os.Create(filepath.Join(tmp, "arr.log"))
		if err != nil {
			return sum, err
		}
		defer logFile.Close()
		srv := &server{
			bin: bin, addr: addr, data: filepath.Join(tmp, "data"), workers: cfg.Workers,
			out: &serverLog{file: logFile}, logf: logf, killStarting: cfg.KillStarting,
		}
		defer srv.stop()
		if err := srv.start(ctx, false); err != nil {
			return sum, err
		}
		procs, bases = []*server{srv}, []string{"http://" + addr}
		victims = []victim{srv.victim()}
		logf("arr serving at %s, data %s; load for %s from %d clients, kills every %s–%s",
			bases[0], srv.data, cfg.Duration, cfg.Clients, cfg.KillMin, cfg.KillMax)
	} else {
		so, err := startScaleOut(ctx, cfg, bin, tmp, logf)
		if so != nil {
			defer so.stop()
		}
		if err != nil {
			return sum, err
		}
		procs, bases, victims = so.procs, so.bases, so.victims
		logf("%s; apis at %s; load for %s from %d clients, kills every %s–%s of one of %d victims, down for up to %s",
			so.engine.describe(), strings.Join(bases, " and "), cfg.Duration, cfg.Clients, cfg.KillMin, cfg.KillMax, len(victims), cfg.DownMax)
	}

	// The load and the killer.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	begin := time.Now()
	loadEnd := begin.Add(cfg.Duration)
	giveUp := loadEnd.Add(cfg.Grace)
	loadCtx, cancelLoad := context.WithDeadline(runCtx, loadEnd)
	defer cancelLoad()

	var fatal atomic.Pointer[error]
	var kills atomic.Int64
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for {
			d := cfg.KillMin + rand.N(cfg.KillMax-cfg.KillMin+1)
			t := time.NewTimer(d)
			select {
			case <-loadCtx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			v := victims[rand.N(len(victims))]
			what, pid, err := v.kill()
			if err != nil {
				fatal.Store(&err)
				cancelRun()
				return
			}
			n := kills.Add(1)
			down := time.Now()
			if cfg.Engine == "" {
				logf("kill %d: SIGKILLed pid %d at t=%s", n, pid, down.Sub(begin).Round(10*time.Millisecond))
			} else {
				pause := rand.N(cfg.DownMax + 1)
				logf("kill %d: SIGKILLed %s (pid %d) at t=%s; restarting it in %s",
					n, what, pid, down.Sub(begin).Round(10*time.Millisecond), pause.Round(time.Millisecond))
				select {
				case <-runCtx.Done():
					return
				case <-time.After(pause):
				}
			}
			if err := v.restart(runCtx); err != nil {
				if runCtx.Err() == nil {
					err = fmt.Errorf("restart of %s after kill %d: %w", what, n, err)
					fatal.Store(&err)
					cancelRun()
				}
				return
			}
			if cfg.Engine == "" {
				logf("ready again after %s", time.Since(down).Round(time.Millisecond))
			} else {
				logf("%s ready again after %s", what, time.Since(down).Round(time.Millisecond))
			}
		}
	}()

	ld := &load{bases: bases, bodySize: cfg.BodySize, giveUp: giveUp, loadEnd: loadEnd, nonce: rand.Uint64(),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}}
	perClient := make([][]*request, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			perClient[c] = ld.client(runCtx, c)
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-tick.C:
				logf("t=%s acked=%d tries=%d conn_errors=%d 5xx=%d replayed=%d kills=%d",
					time.Since(begin).Round(time.Second), ld.acked.Load(), ld.tries.Load(), ld.connErrs.Load(),
					ld.serverErrs.Load(), ld.replayed.Load(), kills.Load())
			}
		}
	}()
	wg.Wait()
	<-killerDone
	close(progressDone)
	startKills := int64(0)
	for _, p := range procs {
		startKills += p.startKills.Load()
	}
	sum.Kills = int(kills.Load() + startKills)
	if n := startKills; n > 0 {
		logf("%d of the %d kills hit arr while it was starting", n, sum.Kills)
	}
	if p := fatal.Load(); p != nil {
		return sum, *p
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	var reqs []*request
	for _, rs := range perClient {
		reqs = append(reqs, rs...)
	}
	if err := writeClientLog(filepath.Join(tmp, "requests.jsonl"), reqs); err != nil {
		logf("writing the client log: %v", err)
	}
	for _, r := range reqs {
		if r.Rejected != "" {
			sum.Rejected++
			if sum.Rejected <= 10 {
				logf("request %s refused: %s", r.Key, r.Rejected)
			}
		}
	}
	logf("load over after %s: %d requests sent, %d acked (%d replayed), %d never acked, %d refused; %d tries, %d connection errors, %d 5xx; %d kills",
		time.Since(begin).Round(time.Millisecond), len(reqs), ld.acked.Load(), ld.replayed.Load(),
		int64(len(reqs))-ld.acked.Load()-int64(sum.Rejected), sum.Rejected, ld.tries.Load(), ld.connErrs.Load(), ld.serverErrs.Load(), sum.Kills)

	// The audit, against servers left running (through every api).
	for _, p := range procs {
		if !p.running() {
			if err := p.start(ctx, false); err != nil {
				return sum, err
			}
		}
	}
	ac := &auditClient{bases: bases, hc: &http.Client{Timeout: 30 * time.Second}}
	acked := map[string]bool{}
	for _, r := range reqs {
		if r.Acked {
			acked[r.ID] = true
		}
	}
	if err := ac.settle(ctx, acked, cfg.Settle, cfg.Engine != "", logf); err != nil {
		return sum, err
	}
	ops, listedTwice, err := ac.observe(ctx, acked)
	if err != nil {
		return sum, err
	}
	sum.auditReport = audit(reqs, ops)
	sum.ListedTwice = listedTwice
	for _, p := range sum.Problems {
		logf("audit: %s", p)
	}
	if n := sum.problemCount - len(sum.Problems); n > 0 {
		logf("audit: … and %d more", n)
	}
	logf("audit: %d operations stored, %d of requests never acknowledged (client gave up), %d not in the listing, %d listed twice",
		sum.Stored, sum.Orphans, sum.Unlisted, sum.ListedTwice)
	for _, p := range procs {
		if w, e, lines := p.out.counts(); w+e > 0 {
			logf("%s logged %d warnings and %d errors over %d starts; the last ones:", p.label(), w, e, p.starts)
			for _, l := range lines {
				fmt.Fprintln(cfg.Log, "  "+l)
			}
		}
	}
	return sum, nil
}

// findMainModule finds the directory of the module github.com/arrhq/arr:
// from `go env GOMOD` (the module itself, or the bench module in it), else by
// walking up from the working directory.
func findMainModule() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			dir := filepath.Dir(gomod)
			for range 3 {
				if modulePath(filepath.Join(dir, "go.mod")) == mainModule {
					return dir, nil
				}
				dir = filepath.Dir(dir)
			}
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == mainModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the module " + mainModule + " above the working directory; use -src or -arr")
		}
		dir = parent
	}
}

// modulePath is the module path declared by a go.mod file, "" if none.
func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ---- the arr child processes ----

// server is one arr process: arr serve, or (scale-out) arr api or arr
// worker.
type server struct {
	bin, addr, data string
	workers         int
	role            string   // "serve" when empty, "api" or "worker"
	name            string   // in messages: "arr" when empty, e.g. "api A"
	extra           []string // more arguments (the shared store and result store)
	out             *serverLog
	logf            func(string, ...any)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	starts int

	killStarting float64      // probability of a kill while starting, on chaos restarts
	startKills   atomic.Int64 // kills while starting
	lastStartup  atomic.Int64 // how long the last start took to be ready (time.Duration)
	expectExit   atomic.Bool  // the current process is being killed or stopped by arrchaos
}

func (s *server) label() string {
	if s.name != "" {
		return s.name
	}
	return s.command()
}

func (s *server) command() string {
	if s.role == "" {
		return "arr serve"
	}
	return "arr " + s.role
}

// victim is the server as a target of the killer.
func (s *server) victim() victim {
	return victim{
		kill: func() (string, int, error) {
			pid, err := s.kill9()
			return s.label(), pid, err
		},
		restart: func(ctx context.Context) error { return s.start(ctx, true) },
	}
}

// victim is something the killer SIGKILLs and then restarts.
type victim struct {
	// kill SIGKILLs it (a cluster: one node) and waits for the exit; it
	// returns what it killed and the pid.
	kill    func() (what string, pid int, err error)
	restart func(context.Context) error // restarts what kill killed, and waits until it is ready
}

var errKilledStarting = errors.New("SIGKILLed while starting")

// start starts arr serve and waits for /readyz, retrying while it cannot
// (the port still busy, a start that dies); the error carries the log tail.
// With chaos, the start may be SIGKILLed before it is ready (see
// KillStarting), and is then started again.
func (s *server) start(ctx context.Context, chaos bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		var killAfter time.Duration
		if chaos && rand.Float64() < s.killStarting {
			// Somewhere in the time a start takes.
			killAfter = 1 + rand.N(max(time.Duration(s.lastStartup.Load()), 10*time.Millisecond))
		}
		err := s.startOnce(ctx, killAfter)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errKilledStarting) {
			s.startKills.Add(1)
			s.logf("%v; starting again", err)
			deadline = time.Now().Add(60 * time.Second)
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start after %d attempts: %v\n--- %s log tail ---\n%s", s.command(), attempt, err, s.command(), s.out.tail())
		}
		s.logf("start attempt %d failed: %v; retrying", attempt, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startOnce starts arr serve once and waits for it to be ready; if
// killAfter > 0, it SIGKILLs it after that long if it is not ready yet.
func (s *server) startOnce(ctx context.Context, killAfter time.Duration) error {
	role := s.role
	if role == "" {
		role = "serve"
	}
	args := []string{role, "-addr", s.addr, "-data", s.data, "-log-level", "warn"}
	if s.workers != 0 && role != "api" {
		args = append(args, "-workers", fmt.Sprint(s.workers))
	}
	if role != "worker" { // the audit is a few clients at full speed: no rate limits
		args = append(args, "-rate-limit-submit", "0", "-rate-limit-read", "0")
	}
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	s.mu.Lock()
	s.starts++
	n := s.starts
	s.mu.Unlock()
	s.out.mark(fmt.Sprintf("--- start %d at %s ---", n, time.Now().Format(time.RFC3339Nano)))
	cmd.Stdout, cmd.Stderr = s.out, s.out
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	s.expectExit.Store(false)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
		if !s.expectExit.Load() && s.role != "" {
			// Not killed by arrchaos: worth knowing (it is restarted for
			// the audit, or when it is next picked as a victim).
			s.logf("%s (pid %d) exited on its own: %v", s.label(), cmd.Process.Pid, waitErr)
		}
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	// state: 0 starting, 1 ready, 2 killed while starting; whichever of
	// the readiness probe and the kill timer comes first wins.
	var state atomic.Int32
	killedStarting := func() bool { return state.Load() == 2 }
	if killAfter > 0 {
		t := time.AfterFunc(killAfter, func() {
			if state.CompareAndSwap(0, 2) {
				s.expectExit.Store(true)
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		})
		defer t.Stop()
	}

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := hc.Get("http://" + s.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && (killAfter == 0 || state.CompareAndSwap(0, 1)) {
				s.lastStartup.Store(int64(time.Since(began)))
				return nil
			}
			err = fmt.Errorf("/readyz: %s", res.Status)
		}
		select {
		case <-exited:
			if killedStarting() {
				return fmt.Errorf("%s (pid %d) %w, %s after its start", s.label(), cmd.Process.Pid, errKilledStarting, killAfter.Round(time.Millisecond))
			}
			return fmt.Errorf("%s (pid %d) exited before ready: %v", s.label(), cmd.Process.Pid, waitErr)
		case <-ctx.Done():
			s.kill9()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill9()
			return fmt.Errorf("%s (pid %d) not ready after 30s: %v", s.label(), cmd.Process.Pid, err)
		}
	}
}

// kill9 SIGKILLs the server and waits for it to exit.
func (s *server) kill9() (int, error) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("no server to kill")
	}
	s.expectExit.Store(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return cmd.Process.Pid, fmt.Errorf("kill -9 %d: %w", cmd.Process.Pid, err)
	}
	<-exited
	return cmd.Process.Pid, nil
}

func (s *server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 10s.
func (s *server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	s.expectExit.Store(true)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.logf("%s (pid %d) still running 10s after SIGTERM; SIGKILL", s.label(), cmd.Process.Pid)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// serverLog collects the output of every arr serve started: all of it to a
// file, the last 64 KiB and the warning and error lines in memory.
type serverLog struct {
	mu       sync.Mutex
	file     io.Writer
	buf      []byte
	partial  []byte
	warns    int
	errs     int
	notables []string
}

const tailSize = 64 << 10

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.add(p)
	return len(p), nil
}

func (l *serverLog) mark(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.add([]byte("\n"))
	}
	l.add([]byte(line + "\n"))
}

func (l *serverLog) add(p []byte) {
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	l.buf = append(l.buf, p...)
	if len(l.buf) > 2*tailSize {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-tailSize:]...)
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		switch {
		case strings.Contains(line, "level=WARN"):
			l.warns++
		case strings.Contains(line, "level=ERROR"), strings.HasPrefix(line, "panic:"), strings.HasPrefix(line, "fatal error:"):
			l.errs++
		default:
			continue
		}
		if l.notables = append(l.notables, line); len(l.notables) > 20 {
			l.notables = l.notables[1:]
		}
	}
	if len(l.partial) > tailSize {
		l.partial = l.partial[:0]
	}
}

func (l *serverLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
	}
	return string(b)
}

func (l *serverLog) counts() (warns, errs int, last []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warns, l.errs, slices.Clone(l.notables)
}

// ---- the load ----

// request is one logical request of a client, however many times it was
// sent: the client log.
type request struct {
	Client   int    `json:"client"`
	Seq      int    `json:"seq"`
	Key      string `json:"key"`
	Body     string `json:"body"`
	Tries    int    `json:"tries"`
	Acked    bool   `json:"acked"`
	ID       string `json:"id,omitempty"`
	Replayed bool   `json:"replayed,omitempty"` // the 202 was a replay (Idempotent-Replayed: true)
	// Retried: the client kept sending it until it was acknowledged or the
	// give-up time passed (false only when the run was interrupted).
	Retried bool `json:"retried"`
	// Rejected is an unexpected answer that ended the retries (a 4xx).
	Rejected string `json:"rejected,omitempty"`
}

type load struct {
	bases    []string // the apis, taken in turn by every try
	rr       atomic.Uint64
	bodySize int
	loadEnd  time.Time
	giveUp   time.Time
	nonce    uint64
	hc       *http.Client

	tries, acked, replayed, connErrs, serverErrs atomic.Int64
}

// client sends requests one after another until the load ends, each until
// it is acknowledged, and returns its log.
func (l *load) client(ctx context.Context, c int) []*request {
	var log []*request
	for seq := 0; time.Now().Before(l.loadEnd) && ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("arrchaos-%016x-c%d-s%d", l.nonce, c, seq)
		r := &request{Client: c, Seq: seq, Key: key, Body: makeBody(c, seq, key, l.bodySize)}
		log = append(log, r)
		l.send(ctx, r)
	}
	return log
}

func makeBody(c, seq int, key string, size int) string {
	head := fmt.Sprintf(`{"client":%d,"seq":%d,"key":%q,"pad":"`, c, seq, key)
	const tail = `"}`
	n := max(size-len(head)-len(tail), 0)
	pad := make([]byte, n)
	const hex = "0123456789abcdef"
	for i := range pad {
		pad[i] = hex[rand.N(16)]
	}
	return head + string(pad) + tail
}

// send submits r until it gets a 202, retrying connection errors and 5xx
// with the same key and body until the give-up time.
func (l *load) send(ctx context.Context, r *request) {
	backoff := 10 * time.Millisecond
	for {
		if r.Tries > 0 && (time.Now().After(l.giveUp) || ctx.Err() != nil) {
			r.Retried = ctx.Err() == nil
			return
		}
		r.Tries++
		l.tries.Add(1)
		status, hdr, body, err := l.post(ctx, r)
		switch {
		case err != nil:
			l.connErrs.Add(1)
		case status >= 500:
			l.serverErrs.Add(1)
		case status == http.StatusAccepted:
			var op struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &op); err != nil || op.ID == "" {
				r.Rejected = fmt.Sprintf("202 with a body that is not an operation: %.200q", body)
				r.Retried = true
				return
			}
			if loc := hdr.Get("Operation-Location"); !strings.HasSuffix(loc, "/v1/operations/"+op.ID+"?redirect=false") {
				r.Rejected = fmt.Sprintf("202 for %s with Operation-Location %q", op.ID, loc)
				r.Retried = true
				return
			}
			r.Acked, r.ID, r.Retried = true, op.ID, true
			r.Replayed = hdr.Get("Idempotent-Replayed") == "true"
			l.acked.Add(1)
			if r.Replayed {
				l.replayed.Add(1)
			}
			return
		default:
			r.Rejected = fmt.Sprintf("%d %.300s", status, body)
			r.Retried = true
			return
		}
		d := backoff/2 + rand.N(backoff)
		backoff = min(backoff*2, 250*time.Millisecond)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

func (l *load) post(ctx context.Context, r *request) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.bases[l.rr.Add(1)%uint64(len(l.bases))]+"/v1/echo", strings.NewReader(r.Body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", r.Key)
	res, err := l.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, res.Header, b, nil
}

func writeClientLog(path string, reqs []*request) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range reqs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---- reading what the server has ----

// observed is what the server says about one operation.
type observed struct {
	ID       string
	Known    bool // listed, or its status monitor answered (not 404)
	Listed   bool // in GET /v1/operations
	Status   string
	Attempts int
	// Result: the bytes of GET /v1/operations/{id}/result?redirect=false;
	// Signed: the bytes behind the signed result.href.
	Result, Signed       string
	HasResult, HasSigned bool
	Err                  string // why a result could not be read
}

type opJSON struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempts []struct {
		Number int `json:"number"`
	} `json:"attempts"`
	Result *struct {
		Href string `json:"href"`
	} `json:"result"`
}

// attempts is the number of the operation's last attempt: how many times
// a handler started on it.
func (v *opJSON) attempts() int {
	if len(v.Attempts) == 0 {
		return 0
	}
	return v.Attempts[len(v.Attempts)-1].Number
}

type auditClient struct {
	bases []string // the apis, taken in turn
	rr    atomic.Uint64
	hc    *http.Client
}

// base is the next api to ask.
func (a *auditClient) base() string { return a.bases[a.rr.Add(1)%uint64(len(a.bases))] }

// get GETs url, retrying connection errors and 5xx a few times (the server
// is not killed any more, but may be busy).
func (a *auditClient) get(ctx context.Context, url string) (int, []byte, error) {
	var lastErr error
	for try := 0; try < 5; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, nil, err
		}
		res, err := a.hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if res.StatusCode >= 500 {
			lastErr = fmt.Errorf("GET %s: %d %.200s", url, res.StatusCode, b)
			continue
		}
		return res.StatusCode, b, nil
	}
	return 0, nil, lastErr
}

// list reads every operation with the given status filter ("" for all),
// following the pages' next links.
func (a *auditClient) list(ctx context.Context, status string) ([]opJSON, error) {
	url := a.base() + "/v1/operations?limit=1000"
	if status != "" {
		url += "&status=" + status
	}
	var all []opJSON
	for pages := 0; url != ""; pages++ {
		if pages > 1_000_000 {
			return nil, errors.New("listing does not end")
		}
		code, b, err := a.get(ctx, url)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %.300s", url, code, b)
		}
		var page struct {
			Items []opJSON `json:"items"`
			Next  string   `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("GET %s: %v", url, err)
		}
		all = append(all, page.Items...)
		if len(page.Items) == 0 {
			break
		}
		url = page.Next
	}
	return all, nil
}

// settle waits until no accepted operation is pending or running, or until
// the settle time passes (those left are lost); with whileDraining, the
// settle time counts from the last time the number of open accepted
// operations fell (the workers of a scale-out run may end the load with a
// backlog of minutes). It polls cheaply (is any operation open at all?) and
// lists the open ones only now and then.
func (a *auditClient) settle(ctx context.Context, acked map[string]bool, d time.Duration, whileDraining bool, logf func(string, ...any)) error {
	start := time.Now()
	deadline := start.Add(d)
	lastFull := start
	lastOpen := -1
	for {
		code, b, err := a.get(ctx, a.base()+"/v1/operations?status=pending,running&limit=1")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("list open operations: %d %.300s", code, b)
		}
		var page struct {
			Items []opJSON `json:"items"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("list open operations: %v", err)
		}
		if len(page.Items) == 0 {
			logf("settled after %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		// Something is open: is it accepted? (Unacknowledged operations
		// of requests the clients gave up on need not finish.)
		if full := time.Now().After(deadline); full || time.Since(lastFull) >= 5*time.Second {
			lastFull = time.Now()
			open, err := a.list(ctx, "pending,running")
			if err != nil {
				return err
			}
			n := 0
			for _, o := range open {
				if acked[o.ID] {
					n++
				}
			}
			if whileDraining && lastOpen >= 0 && n < lastOpen {
				deadline = time.Now().Add(d)
				full = false
			}
			lastOpen = n
			switch {
			case n == 0:
				logf("settled after %s (%d unacknowledged operations still open)", time.Since(start).Round(time.Millisecond), len(open))
				return nil
			case full:
				logf("after %s, %d accepted operations are still pending or running", time.Since(start).Round(time.Second), n)
				return nil
			}
			logf("settling: %d accepted operations pending or running after %s", n, time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// observe reads every operation the server lists, and every accepted one
// it does not list, with the results of the succeeded ones by both the
// result route and the signed URL.
func (a *auditClient) observe(ctx context.Context, acked map[string]bool) (ops map[string]*observed, listedTwice int, err error) {
	listed, err := a.list(ctx, "")
	if err != nil {
		return nil, 0, err
	}
	ops = map[string]*observed{}
	hrefs := map[string]string{}
	for _, o := range listed {
		if ops[o.ID] != nil {
			listedTwice++
			continue
		}
		ops[o.ID] = &observed{ID: o.ID, Known: true, Listed: true, Status: o.Status, Attempts: o.attempts()}
		if o.Result != nil {
			hrefs[o.ID] = o.Result.Href
		}
	}
	for id := range acked {
		if ops[id] == nil {
			ops[id] = &observed{ID: id}
		}
	}
	ids := make([]string, 0, len(ops))
	for id := range ops {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || firstErr.Load() != nil {
					return
				}
				o := ops[ids[i]]
				if err := a.observeOne(ctx, o, hrefs[o.ID]); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return nil, 0, *p
	}
	return ops, listedTwice, nil
}

func (a *auditClient) observeOne(ctx context.Context, o *observed, href string) error {
	if !o.Listed {
		code, b, err := a.get(ctx, a.base()+"/v1/operations/"+o.ID+"?redirect=false")
		if err != nil {
			return err
		}
		switch code {
		case http.StatusNotFound, http.StatusGone:
			o.Err = fmt.Sprintf("status monitor: %d", code)
			return nil
		case http.StatusOK:
		default:
			return fmt.Errorf("status monitor of %s: %d %.300s", o.ID, code, b)
		}
		var v opJSON
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("status monitor of %s: %v", o.ID, err)
		}
		o.Known, o.Status, o.Attempts = true, v.Status, v.attempts()
		if v.Result != nil {
			href = v.Result.Href
		}
	}
	if o.Status != "succeeded" {
		return nil
	}
	code, b, err := a.get(ctx, a.base()+"/v1/operations/"+o.ID+"/result?redirect=false")
	if err != nil {
		return err
	}
	if code == http.StatusOK {
		o.Result, o.HasResult = string(b), true
	} else {
		o.Err = fmt.Sprintf("result: %d %.200s", code, b)
	}
	if href == "" {
		if o.Err == "" {
			o.Err = "succeeded without a result href"
		}
		return nil
	}
	code, b, err = a.get(ctx, href)
	if err != nil {
		return err
	}
	if code == http.StatusOK {
		o.Signed, o.HasSigned = string(b), true
	} else if o.Err == "" {
		o.Err = fmt.Sprintf("signed result URL: %d %.200s", code, b)
	}
	return nil
}

// ---- the audit ----

type auditReport struct {
	Accepted           int // requests acknowledged with a 202
	Completed          int // of those, succeeded with the body sent as result
	Lost               int // acknowledged, and unknown, unfinished, failed or with another result
	Phantom            int // operations no client sent (or sent once and dropped)
	DuplicateOps       int // operations beyond the first for one request (one key)
	DuplicatesExecuted int // operations run more than once (attempts > 1)
	DifferingResults   int // requests whose results are not all the same bytes (or not the body sent)

	Stored      int // operations the server knows
	Orphans     int // stored operations of requests the client gave up on (never acknowledged)
	Unlisted    int // acknowledged operations known to the status monitor but absent from the listing
	ListedTwice int // listing entries repeating an id

	Problems     []string // the first problems found
	problemCount int
}

const maxProblems = 30

func (r *auditReport) problem(format string, args ...any) {
	r.problemCount++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// audit checks what the clients sent against what the server has.
func audit(reqs []*request, ops map[string]*observed) auditReport {
	var rep auditReport
	byKey := map[string]*request{}
	byBody := map[string]*request{}
	byID := map[string][]*request{}
	for _, r := range reqs {
		byKey[r.Key] = r
		byBody[r.Body] = r
		if r.Acked {
			rep.Accepted++
			byID[r.ID] = append(byID[r.ID], r)
		}
	}

	// Nothing acknowledged is lost.
	lost := map[string]bool{}
	for _, r := range reqs {
		if !r.Acked {
			continue
		}
		o := ops[r.ID]
		why := ""
		switch {
		case o == nil || !o.Known:
			why = "unknown to the server"
			if o != nil && o.Err != "" {
				why += " (" + o.Err + ")"
			}
		case o.Status != "succeeded":
			why = fmt.Sprintf("%s after the settle time (attempts %d)", o.Status, o.Attempts)
		case !o.HasResult:
			why = "succeeded, but its result cannot be read: " + o.Err
		case o.Result != r.Body:
			why = fmt.Sprintf("its result differs from the body sent: got %.80q, sent %.80q", o.Result, r.Body)
		}
		if why != "" {
			rep.Lost++
			lost[r.Key] = true
			rep.problem("lost: %s (key %s, acked %s): %s", r.ID, r.Key, replayNote(r), why)
			continue
		}
		rep.Completed++
		if !o.Listed {
			rep.Unlisted++
			rep.problem("unlisted: %s (key %s) is known but not in GET /v1/operations", r.ID, r.Key)
		}
	}

	// Every operation stored belongs to one request a client sent.
	ids := make([]string, 0, len(ops))
	for id, o := range ops {
		if o.Known {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	linked := map[string][]*observed{}
	for _, id := range ids {
		o := ops[id]
		rep.Stored++
		if o.Attempts > 1 {
			rep.DuplicatesExecuted++
		}
		var r *request
		if rs := byID[id]; len(rs) > 0 {
			r = rs[0]
			if len(rs) > 1 {
				rep.problem("operation %s was acknowledged to %d different keys (%s, %s, …)", id, len(rs), rs[0].Key, rs[1].Key)
			}
		} else if o.HasResult && byBody[o.Result] != nil {
			r = byBody[o.Result]
		} else if o.HasSigned && byBody[o.Signed] != nil {
			r = byBody[o.Signed]
		} else if k := keyOf(o.Result); o.HasResult && byKey[k] != nil {
			r = byKey[k]
		} else if k := keyOf(o.Signed); o.HasSigned && byKey[k] != nil {
			r = byKey[k]
		}
		if r == nil {
			rep.Phantom++
			what := fmt.Sprintf("result %.80q", o.Result)
			if !o.HasResult {
				what = "no readable result"
				if o.Err != "" {
					what += " (" + o.Err + ")"
				}
			}
			rep.problem("phantom: %s (%s, attempts %d) matches no request sent: %s", id, o.Status, o.Attempts, what)
			continue
		}
		if !r.Acked {
			if !r.Retried {
				rep.Phantom++
				rep.problem("phantom: %s is the request %s, sent %d times, never acknowledged nor retried", id, r.Key, r.Tries)
				continue
			}
			rep.Orphans++
		}
		linked[r.Key] = append(linked[r.Key], o)
	}

	// One operation per key, and one result per request.
	for _, r := range reqs {
		os := linked[r.Key]
		if len(os) > 1 {
			rep.DuplicateOps += len(os) - 1
			var l []string
			for _, o := range os {
				l = append(l, fmt.Sprintf("%s (%s)", o.ID, o.Status))
			}
			rep.problem("duplicate operations for key %s (acked %s): %s", r.Key, replayNote(r), strings.Join(l, ", "))
		}
		results := map[string]bool{}
		for _, o := range os {
			if o.HasResult {
				results[o.Result] = true
			}
			if o.HasSigned {
				results[o.Signed] = true
			}
		}
		differs := len(results) > 1
		if len(results) == 1 && !results[r.Body] && !lost[r.Key] {
			differs = true
		}
		if differs {
			rep.DifferingResults++
			var l []string
			for _, o := range os {
				l = append(l, fmt.Sprintf("%s: result %s; signed URL %s", o.ID, diff(o.Result, o.HasResult, r.Body), diff(o.Signed, o.HasSigned, r.Body)))
			}
			rep.problem("differing results for key %s: %s", r.Key, strings.Join(l, "; "))
		}
	}
	return rep
}

// diff says how got differs from the body sent.
func diff(got string, ok bool, sent string) string {
	if !ok {
		return "unreadable"
	}
	if got == sent {
		return "= the body sent"
	}
	i := 0
	for i < len(got) && i < len(sent) && got[i] == sent[i] {
		i++
	}
	from := max(i-10, 0)
	return fmt.Sprintf("%d bytes (sent %d), first difference at byte %d: got %.30q, sent %.30q", len(got), len(sent), i, got[from:], sent[from:])
}

func replayNote(r *request) string {
	switch {
	case !r.Acked:
		return "never"
	case r.Replayed:
		return fmt.Sprintf("on try %d, replayed", r.Tries)
	default:
		return fmt.Sprintf("on try %d", r.Tries)
	}
}

// keyOf is the "key" of a JSON body as sent by the clients, "" if none.
func keyOf(body string) string {
	var v struct {
		Key string `json:"key"`
	}
	if json.Unmarshal([]byte(body), &v) != nil {
		return ""
	}
	return v.Key
}
