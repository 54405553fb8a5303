package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/arrhq/arr/api"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveReal runs a server on 127.0.0.1 ports until the test ends.
func serveReal(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With an admin address, /metrics and the admin handlers are served there
// and /metrics is a 404 on the public listener; the probes answer on both.
func TestAdminListener(t *testing.T) {
	pprofish := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "profiles") })
	s := serveReal(t, Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		AdminHandlers: map[string]http.Handler{"/debug/pprof/": pprofish}})
	pub, adm := "http://"+s.Addr(), "http://"+s.AdminAddr()
	if pub == adm {
		t.Fatalf("one address for both listeners: %s", pub)
	}
	if code, body := get(t, pub+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d %.200s", code, body)
	}
	code, body := get(t, adm+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "arr_queue_messages") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("admin /metrics: %d %.300s", code, body)
	}
	if code, body := get(t, adm+"/debug/pprof/"); code != http.StatusOK || body != "profiles" {
		t.Errorf("admin /debug/pprof/: %d %q", code, body)
	}
	if code, _ := get(t, pub+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("public /debug/pprof/: %d", code)
	}
	for _, base := range []string{pub, adm} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, base+p); code != http.StatusOK {
				t.Errorf("%s%s: %d %s", base, p, code, body)
			}
		}
	}
	// The api is not on the admin listener.
	if code, _ := get(t, adm+"/v1/operations"); code != http.StatusNotFound {
		t.Errorf("admin /v1/operations: %d", code)
	}
}

// Without an admin address /metrics stays on the public listener.
func TestNoAdminListenerKeepsMetrics(t *testing.T) {
	s := serveReal(t, Config{Addr: "127.0.0.1:0"})
	if code, body := get(t, "http://"+s.Addr()+"/metrics"); code != http.StatusOK || !strings.Contains(body, "arr_queue_messages") {
		t.Errorf("/metrics: %d %.200s", code, body)
	}
}

// A worker with only an admin address serves the probes and metrics there.
func TestWorkerAdminOnly(t *testing.T) {
	s := serveReal(t, Config{Role: RoleWorker, AdminAddr: "127.0.0.1:0"})
	if s.ln != nil {
		t.Fatalf("a worker without Addr listens on %s", s.ln.Addr())
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := get(t, "http://"+s.AdminAddr()+p); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
}

// A failed readiness says nothing internal to the client: a generic
// detail, and an error id as instance, which the log carries beside the
// real error.
func TestReadyzSaysNothingInternal(t *testing.T) {
	var failing atomic.Bool
	secret := errors.New("dial tcp 10.20.30.40:5432: connect: connection refused (db-primary.internal)")
	logs := &syncBuffer{}
	s := serveReal(t, Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		API: api.Config{Ready: func(context.Context) error {
			if failing.Load() {
				return secret
			}
			return nil
		}}})
	failing.Store(true)
	for _, base := range []string{"http://" + s.Addr(), "http://" + s.AdminAddr()} {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s/readyz: %d %s %s", base, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var p struct{ Detail, Instance string }
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.Detail != api.NotReadyDetail || strings.Contains(string(b), "10.20.30.40") || strings.Contains(string(b), "internal") && !strings.Contains(string(b), "urn:arr:problem:internal") {
			t.Errorf("%s/readyz body: %s", base, b)
		}
		if !strings.HasPrefix(p.Instance, "urn:arr:error:") {
			t.Errorf("instance %q", p.Instance)
		}
		if log := logs.String(); !strings.Contains(log, p.Instance) || !strings.Contains(log, "10.20.30.40") {
			t.Errorf("the log lacks the error with its id %s:\n%s", p.Instance, log)
		}
	}
	failing.Store(false)
	if code, _ := get(t, "http://"+s.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("ready again: %d", code)
	}
}
