package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/arrhq/arr/embedded" // the engine of server.New's default URLs
	_ "github.com/arrhq/arr/mem"      // the engine of the tests' servers
	"github.com/arrhq/arr/server"
)

// testServer is a real arr (the in-memory engine for operations, queue
// and results, a worker pool) serving on a loopback port.
type testServer struct {
	URL string
	t   *testing.T
}

// client never follows redirects, so that tests see the 303s.
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

func start(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.StoreURL == "" {
		// A mem engine of the test's own: everything in memory, gone
		// when the server closes.
		cfg.StoreURL = "mem:" + filepath.Base(cfg.DataDir)
		cfg.QueueURL, cfg.ResultsURL = cfg.StoreURL, cfg.StoreURL
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{URL: "http://" + srv.Addr(), t: t}
}

type response struct {
	*http.Response
	Body []byte
}

// JSON decodes the body into a map.
func (r *response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.Body)
	}
	return m
}

func (s *testServer) do(method, path string, body string, hdr ...string) *response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	url := path
	if strings.HasPrefix(path, "/") {
		url = s.URL + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return &response{Response: res, Body: b}
}

func (s *testServer) get(path string, hdr ...string) *response { return s.do("GET", path, "", hdr...) }

func (s *testServer) postJSON(path, body string, hdr ...string) *response {
	return s.do("POST", path, body, append([]string{"Content-Type", "application/json"}, hdr...)...)
}

// submit posts to /v1/echo and returns the operation id, failing unless 202.
func (s *testServer) submit(body string, hdr ...string) string {
	s.t.Helper()
	r := s.do("POST", "/v1/echo", body, append([]string{"Content-Type", "text/plain"}, hdr...)...)
	wantStatus(s.t, r, 202)
	return r.JSON(s.t)["id"].(string)
}

// waitStatus long-polls until the operation has status want.
func (s *testServer) waitStatus(id, want string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r := s.get("/v1/operations/" + id + "?wait=5s&redirect=false")
		wantStatus(s.t, r, 200)
		if m := r.JSON(s.t); m["status"] == want {
			return m
		}
	}
	s.t.Fatalf("operation %s never became %s", id, want)
	return nil
}

func wantStatus(t *testing.T, r *response, code int) {
	t.Helper()
	if r.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body: %s", r.Request.Method, r.Request.URL, r.StatusCode, code, r.Body)
	}
}

// wantProblem checks an RFC 9457 answer with the status and type.
func wantProblem(t *testing.T, r *response, code int, typ string) {
	t.Helper()
	wantStatus(t, r, code)
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.Body)
	}
	m := r.JSON(t)
	if m["type"] != typ || m["title"] == "" || m["status"] != float64(code) {
		t.Fatalf("problem %v, want type %s status %d", m, typ, code)
	}
}

func (s *testServer) count() int {
	s.t.Helper()
	r := s.get("/v1/operations?limit=1000")
	wantStatus(s.t, r, 200)
	return len(r.JSON(s.t)["items"].([]any))
}

func bigBody(n int) string { return string(bytes.Repeat([]byte("x"), n)) }
