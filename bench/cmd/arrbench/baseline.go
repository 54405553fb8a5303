package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
)

// The baselines are what any HTTP service on this machine can do at most:
// "bare" answers 202 + Location and stores nothing (the HTTP ceiling);
// "durable" also appends each body to a file and answers only after an
// fdatasync that covers it, grouping concurrent requests into one sync (the
// durable ceiling). Both answer GET with a fixed JSON document the size of
// an arr status, for W4.

// serveBaseline runs a baseline server in this process: `arrbench baseline
// -mode bare|durable -addr A -dir D`.
func serveBaseline(args []string) {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	mode := fs.String("mode", "bare", "bare or durable")
	addr := fs.String("addr", "127.0.0.1:9202", "listen address")
	dir := fs.String("dir", os.TempDir(), "directory of the durable log")
	_ = fs.Parse(args)
	var gc *groupCommit
	if *mode == "durable" {
		f, err := os.OpenFile(filepath.Join(*dir, "baseline.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		gc = &groupCommit{f: f}
		gc.cond = sync.NewCond(&gc.mu)
	}
	status := []byte(`{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"pending","createdAt":"2026-11-21T10:00:00.000000000Z","updatedAt":"2026-11-21T10:00:00.000000000Z","percentComplete":0,"attempts":0,"links":{"self":"http://127.0.0.1/v1/operations/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","events":"http://127.0.0.1/v1/operations/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/events"}}`)
	var n atomic.Int64
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			_, _ = w.Write(status)
		default:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if gc != nil {
				if err := gc.append(body); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			w.Header().Set("Location", "http://"+r.Host+"/v1/operations/"+strconv.FormatInt(n.Add(1), 10))
			w.WriteHeader(http.StatusAccepted)
		}
	})))
}

// groupCommit appends records to a file; append returns once an fdatasync
// covering the record is done. Whoever finds no sync running writes every
// record pending so far and syncs them together.
type groupCommit struct {
	f       *os.File
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	spare   []byte
	written uint64 // records appended
	synced  uint64 // records durable
	syncing bool
	err     error
}

func (g *groupCommit) append(p []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.buf = append(g.buf, p...)
	g.buf = append(g.buf, '\n')
	g.written++
	mine := g.written
	for g.synced < mine && g.err == nil {
		if g.syncing {
			g.cond.Wait()
			continue
		}
		g.syncing = true
		b, upto := g.buf, g.written
		g.buf = g.spare[:0]
		g.mu.Unlock()
		_, err := g.f.Write(b)
		if err == nil {
			err = fdatasync(g.f)
		}
		g.mu.Lock()
		g.spare, g.synced, g.syncing = b, upto, false
		if err != nil {
			g.err = err
		}
		g.cond.Broadcast()
	}
	return g.err
}

// baselineSystem drives a baseline server child over HTTP.
type baselineSystem struct {
	mode  string
	dir   string
	c     *child
	hc    *http.Client
	fc    *fastClient
	conns int
}

func newBaseline(mode string, conns int) *baselineSystem {
	return &baselineSystem{mode: mode, conns: conns}
}

func (b *baselineSystem) Name() string {
	if b.mode == "durable" {
		return "baseline: durable 202 (HTTP)"
	}
	return "baseline: bare 202 (HTTP)"
}

func (b *baselineSystem) Durability() string {
	if b.mode == "durable" {
		return "body appended to a file, group-committed fdatasync before the 202"
	}
	return "none: nothing stored"
}

func (b *baselineSystem) Start(ctx context.Context, workers int) error {
	var err error // workers: a baseline has none; W3 measures its round trip
	if b.dir, err = os.MkdirTemp("", "arrbench-baseline-"); err != nil {
		return err
	}
	b.c, err = startChild(ctx, selfExe(), "/", "baseline", "-mode", b.mode, "-addr", "{addr}", "-dir", b.dir)
	if err != nil {
		return err
	}
	b.hc, b.fc = newHTTPClient(b.conns), newFastClient(b.c.addr, b.conns)
	return nil
}

func (b *baselineSystem) Submit(ctx context.Context, body []byte) (string, error) {
	code, loc, _, err := b.fc.post("/v1/echo", body)
	if err == nil && code != http.StatusAccepted {
		err = fmt.Errorf("POST: %d", code)
	}
	return loc, err
}

func (b *baselineSystem) WaitCompleted(context.Context, int) error { return errNotApplicable }

// SubmitAndWait is one round trip: the floor of any system's latency.
func (b *baselineSystem) SubmitAndWait(ctx context.Context, body []byte) ([]byte, error) {
	if _, err := b.Submit(ctx, body); err != nil {
		return nil, err
	}
	return body, nil
}

func (b *baselineSystem) Status(ctx context.Context, id string) error {
	return b.fc.get(id)
}

func (b *baselineSystem) PIDs() []int   { return []int{b.c.pid()} }
func (b *baselineSystem) SelfCPU() bool { return false }

func (b *baselineSystem) Stop() error {
	_ = b.c.stop() // a baseline exits by the SIGTERM itself
	b.c = nil
	if b.hc != nil {
		b.hc.CloseIdleConnections()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	return nil
}

var errNotApplicable = errors.New("not applicable")
