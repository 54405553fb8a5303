package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	arr "github.com/arrhq/arr"
	_ "github.com/arrhq/arr/embedded" // the engine of the default URLs
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/server"
)

// arrLib is arr used as a Go library in the harness process, as the peers'
// clients are: arr.Client.Submit stores the operation durably (one
// group-committed Pebble batch) and the worker pool runs in the same
// process. The HTTP api is up too (on a loopback port) but not used.
type arrLib struct {
	dir    string
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
	base   float64 // completions counted before this Start
}

func newArrLib() *arrLib { return &arrLib{} }

func (a *arrLib) Name() string { return "arr (Go library, embedded)" }
func (a *arrLib) Durability() string {
	return "Pebble WAL fdatasync'd (group commit) before Submit returns; results in the same WAL"
}

func (a *arrLib) Start(ctx context.Context, workers int) error {
	var err error
	if a.dir, err = os.MkdirTemp("", "arrbench-lib-"); err != nil {
		return err
	}
	cfg := server.Config{Addr: "127.0.0.1:0", DataDir: a.dir, Workers: workers,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if workers == 0 {
		cfg.Workers = -1
	}
	if a.srv, err = server.New(ctx, cfg); err != nil {
		return err
	}
	if err := a.srv.Listen(); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, 1)
	go func() { a.done <- a.srv.Serve(sctx) }()
	return nil
}

func (a *arrLib) Submit(ctx context.Context, body []byte) (string, error) {
	op, _, err := a.srv.Client().Submit(ctx, arr.Submission{Route: "echo", Request: &operation.Request{
		Header: http.Header{"Content-Type": {"application/json"}}, Body: body}})
	if err != nil {
		return "", err
	}
	return op.ID, nil
}

func (a *arrLib) WaitCompleted(ctx context.Context, n int) error {
	return waitCount(ctx, n, func() (float64, error) { return succeededFromGatherer(a.srv) })
}

// waitCount polls count every 10 ms until it reaches n.
func waitCount(ctx context.Context, n int, count func() (float64, error)) error {
	var done float64
	err := peerPoll(ctx, 10*time.Millisecond, func() (bool, error) {
		var err error
		done, err = count()
		return done >= float64(n), err
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%v after %v of %d", err, done, n)
	}
	return err
}

func succeededFromGatherer(s *server.Server) (float64, error) {
	mfs, err := s.Gatherer().Gather()
	if err != nil {
		return 0, err
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "arr_operations_completed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "succeeded" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n, nil
}

func (a *arrLib) SubmitAndWait(ctx context.Context, body []byte) ([]byte, error) {
	id, err := a.Submit(ctx, body)
	if err != nil {
		return nil, err
	}
	op, err := a.srv.Client().Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := a.srv.Client().OpenResult(ctx, op)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func (a *arrLib) Status(ctx context.Context, id string) error {
	_, err := a.srv.Client().Get(ctx, id)
	return err
}

func (a *arrLib) PIDs() []int   { return nil }
func (a *arrLib) SelfCPU() bool { return true }

func (a *arrLib) Stop() error {
	var err error
	if a.cancel != nil {
		a.cancel()
		err = <-a.done
		a.cancel = nil
	} else if a.srv != nil {
		err = a.srv.Close()
	}
	a.srv = nil
	if a.dir != "" {
		os.RemoveAll(a.dir)
	}
	return err
}

// arrHTTP is a real `arr serve` process driven over HTTP, as the baselines
// are.
type arrHTTP struct {
	extra []string // more arr serve arguments (-arr-args)
	auth  bool     // serve with -api-keys and send a key with every request
	// callbacks: /v1/echo calls a receiver in this process back when each
	// operation finishes, and an operation counts as completed once its
	// callback is delivered too.
	callbacks bool
	recv      *callbackReceiver
	first     atomic.Int64 // UnixNano of the first Submit since Start (callbacks only)
	bin       string
	dir       string
	conns     int
	c         *child
	hc        *http.Client
	fc        *fastClient
}

var buildArr = sync.OnceValues(func() (string, error) {
	src, err := mainModuleDir()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "arrbench-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "arr")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/arr")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build arr: %v\n%s", err, out)
	}
	return bin, nil
})

// mainModuleDir finds arr's main module: the parent of the bench module.
func mainModuleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if !strings.HasSuffix(gomod, filepath.Join("bench", "go.mod")) {
		return "", fmt.Errorf("run arrbench from inside arr's bench module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(filepath.Dir(gomod)), nil
}

func newArrHTTP(conns int) *arrHTTP { return &arrHTTP{conns: conns} }

func (a *arrHTTP) Name() string {
	if a.callbacks {
		return "arr serve (HTTP, embedded, callbacks)"
	}
	if a.auth {
		return "arr serve (HTTP, embedded, API keys)"
	}
	return "arr serve (HTTP, embedded)"
}

// benchKey is the API key of arr-http-auth: 32 random-looking bytes in
// hex, as a generated key would be.
const benchKey = "4f6b1d2c9e8a7b3f5d0c1e2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c"

func (a *arrHTTP) Durability() string {
	return "Pebble WAL fdatasync'd (group commit) before the 202; results in the same WAL"
}

func (a *arrHTTP) Start(ctx context.Context, workers int) error {
	var err error
	if a.bin, err = buildArr(); err != nil {
		return err
	}
	if a.dir, err = os.MkdirTemp("", "arrbench-serve-"); err != nil {
		return err
	}
	w := strconv.Itoa(workers)
	if workers == 0 {
		w = "-1"
	}
	// The benchmark drives thousands of submits and reads a second from
	// one client: arr serve's rate limits (docs/operations.md,
	// "Admission") are lifted, as an operator would for a trusted client.
	args := append([]string{"serve", "-addr", "{addr}", "-data", a.dir, "-workers", w, "-log-level", "warn",
		"-rate-limit-submit", "0", "-rate-limit-read", "0"}, a.extra...)
	if a.auth {
		// Three keys, as a small team would have; the benchmark's is
		// the last one, so a lookup cannot stop at the first line.
		keys := filepath.Join(a.dir, "api-keys")
		if err := os.WriteFile(keys, []byte("ops:"+strings.Repeat("a", 64)+" role=admin\nbatch:"+strings.Repeat("b", 64)+"\nbench:"+benchKey+"\n"), 0o600); err != nil {
			return err
		}
		args = append(args, "-api-keys", keys)
	}
	if a.callbacks {
		if a.recv, err = startCallbackReceiver(); err != nil {
			return err
		}
		conf := filepath.Join(a.dir, "arr.yaml")
		yaml := "server:\n  seedRoutes: false\n  callbacks:\n    allow: [\"" + a.recv.addr + "\"]\n" +
			"routes:\n  - path: /v1/echo\n    handler: echo\n    callbacks:\n      targets:\n        - url: http://" + a.recv.addr + "/cb\n"
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			return err
		}
		args = append(args, "-config", conf)
	}
	a.c, err = startChild(ctx, a.bin, "/readyz", args...)
	if err != nil {
		return err
	}
	a.hc, a.fc = newHTTPClient(a.conns), newFastClient(a.c.addr, a.conns)
	if a.auth {
		a.hc, a.fc.auth = withAuth(a.hc, "Bearer "+benchKey), "Bearer "+benchKey
	}
	return nil
}

func (a *arrHTTP) Submit(ctx context.Context, body []byte) (string, error) {
	if a.callbacks && a.first.Load() == 0 {
		a.first.CompareAndSwap(0, time.Now().UnixNano())
	}
	code, loc, b, err := a.fc.post("/v1/echo", body)
	if err == nil && code != http.StatusAccepted {
		err = fmt.Errorf("POST /v1/echo: %d %s", code, b)
	}
	return loc, err
}

// WaitCompleted waits until n results are readable, and with callbacks
// until n callbacks are delivered too; then it reports both times on
// stderr (the results' rate with callbacks on is their cost to W2 proper,
// the callbacks' the delivery rate).
func (a *arrHTTP) WaitCompleted(ctx context.Context, n int) error {
	if err := waitCount(ctx, n, func() (float64, error) { return a.succeeded(ctx) }); err != nil || a.recv == nil {
		return err
	}
	results := time.Since(time.Unix(0, a.first.Load()))
	err := waitCount(ctx, n, func() (float64, error) { return float64(a.recv.n.Load()), nil })
	all := time.Since(time.Unix(0, a.first.Load()))
	fmt.Fprintf(os.Stderr, "  callbacks: %d results readable in %.2fs (%.0f/s), %d callbacks delivered in %.2fs (%.0f/s)\n",
		n, results.Seconds(), float64(n)/results.Seconds(), n, all.Seconds(), float64(n)/all.Seconds())
	a.first.Store(0)
	return err
}

// succeeded reads arr_operations_completed_total{outcome="succeeded"} from
// /metrics: the worker counts an operation once its result is stored and
// its state committed, so the count is of readable results.
func (a *arrHTTP) succeeded(ctx context.Context) (float64, error) {
	return succeededOn(ctx, a.hc, a.c.addr)
}

// SubmitAndWait posts with Prefer: wait, so the 202 is replaced by the
// status monitor's 303 once the operation is done; the client follows it
// to the signed result URL and reads the bytes.
func (a *arrHTTP) SubmitAndWait(ctx context.Context, body []byte) ([]byte, error) {
	code, _, b, err := postJSON(ctx, a.hc, "http://"+a.c.addr+"/v1/echo", body, "Prefer", "wait=10")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("POST with Prefer wait: %d %s", code, b)
	}
	return b, nil
}

func (a *arrHTTP) Status(ctx context.Context, id string) error {
	return a.fc.get(id)
}

func (a *arrHTTP) PIDs() []int   { return []int{a.c.pid()} }
func (a *arrHTTP) SelfCPU() bool { return false }

func (a *arrHTTP) Stop() error {
	err := a.c.stop()
	if a.recv != nil {
		a.recv.srv.Close()
		a.recv = nil
	}
	a.c = nil
	if a.hc != nil {
		a.hc.CloseIdleConnections()
	}
	if a.dir != "" {
		os.RemoveAll(a.dir)
	}
	if err != nil {
		return errors.New("arr serve: " + err.Error())
	}
	return nil
}

// callbackReceiver counts the callbacks arr delivers to it (answering 204
// without verifying them: the receiver's own cost is not arr's).
type callbackReceiver struct {
	addr string
	srv  *http.Server
	n    atomic.Int64
}

func startCallbackReceiver() (*callbackReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &callbackReceiver{addr: ln.Addr().String()}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}
