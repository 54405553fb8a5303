package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/handler/forward"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/worker"
)

// upstream records the headers of the requests it gets, answers 400
// until ok is set, then 200 with a Set-Cookie.
type upstream struct {
	*httptest.Server
	ok   atomic.Bool
	mu   sync.Mutex
	seen map[string][]http.Header // by path
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{seen: map[string][]http.Header{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.URL.Path] = append(u.seen[r.URL.Path], r.Header.Clone())
		u.mu.Unlock()
		if !u.ok.Load() {
			http.Error(w, "not yet", http.StatusBadRequest)
			return
		}
		w.Header().Set("Set-Cookie", "session=upstream-session-secret")
		w.Header().Set("X-Upstream", "visible")
		w.Write([]byte("done"))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests(path string) []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen[path]...)
}

// secretsServer serves two forward routes to u: /v1/plain keeps no
// credentials, /v1/authed keeps Authorization (sealed).
func secretsServer(t *testing.T, u *upstream, cfg server.Config) *testServer {
	creds := arr.NewCredentials(urlsign.NewMemKeys())
	fwd := func(c forward.Config) worker.Handler {
		h, err := forward.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "POST /v1/plain", Handler: fwd(forward.Config{URL: u.URL}), MaxAttempts: 1})
	mux.HandleRoute(server.Route{Pattern: "POST /v1/authed", Handler: fwd(forward.Config{URL: u.URL, Credentials: creds}),
		MaxAttempts: 1, ForwardCredentials: []string{"Authorization"}})
	cfg.Mux = mux
	cfg.API.Credentials = creds
	return start(t, cfg)
}

var callerHeaders = []string{
	"Content-Type", "text/plain",
	"Authorization", "Bearer alice-token",
	"Cookie", "session=alice-cookie",
	"X-Api-Key", "alice-api-key",
	"X-Visible", "ordinary-header-value",
	"X_Remote_User", "mallory",
}

// Neither a failed forward operation's retry nor its first attempt sends
// a credential the route did not opt into; an opted-in one is sent on
// every attempt, from its sealed copy. The stored request holds no
// credential in clear, and the result has no upstream Set-Cookie.
func TestRetrySendsNoUnkeptCredentials(t *testing.T) {
	u := newUpstream(t)
	name := "secrets-" + strings.ReplaceAll(t.Name(), "/", "-")
	s := secretsServer(t, u, server.Config{StoreURL: "mem:" + name, QueueURL: "mem:" + name, ResultsURL: "mem:" + name})
	ids := map[string]string{}
	for _, path := range []string{"/v1/plain", "/v1/authed"} {
		r := s.do("POST", path, "body", callerHeaders...)
		wantStatus(t, r, 202)
		ids[path] = r.JSON(t)["id"].(string)
		s.waitStatus(ids[path], "failed")
	}
	u.ok.Store(true)
	for _, path := range []string{"/v1/plain", "/v1/authed"} {
		wantStatus(t, s.do("POST", "/v1/operations/"+ids[path]+"/retry", ""), 202)
		m := s.waitStatus(ids[path], "succeeded")
		res, _ := json.Marshal(m["result"])
		if bytes.Contains(res, []byte("upstream-session-secret")) || !bytes.Contains(res, []byte("X-Upstream")) {
			t.Errorf("%s: result %s: want X-Upstream and no Set-Cookie", path, res)
		}
	}
	for path, wantAuth := range map[string]string{"/v1/plain": "", "/v1/authed": "Bearer alice-token"} {
		got := u.requests(path)
		if len(got) != 2 {
			t.Fatalf("%s: upstream got %d requests, want 2 (the attempt and the retry's)", path, len(got))
		}
		for i, h := range got {
			if h.Get("Authorization") != wantAuth || h.Get("Cookie") != "" || h.Get("X-Api-Key") != "" ||
				h.Get("X-Visible") != "ordinary-header-value" || h.Get("X_Remote_User") != "" {
				t.Errorf("%s: request %d upstream had headers %v", path, i+1, h)
			}
		}
	}

	// The stored requests, read from the store.
	e, err := engine.Open(context.Background(), "mem:"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := e.Store(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for path, id := range ids {
		req, err := st.GetRequest(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(req)
		for _, secret := range []string{"alice-token", "alice-cookie", "alice-api-key", "mallory"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s: the stored request holds %q: %s", path, secret, b)
			}
		}
		if req.Header.Get("X-Visible") == "" || (path == "/v1/authed") != (req.Header.Get(arr.SealedHeader) != "") {
			t.Errorf("%s: stored header %v", path, req.Header)
		}
	}
}

// On the embedded engine, no file of the data directory holds a
// credential in clear; the ordinary header is found there, so the scan
// does see stored requests.
func TestCredentialsEncryptedAtRest(t *testing.T) {
	u := newUpstream(t)
	u.ok.Store(true)
	dir := t.TempDir()
	db := "embedded:" + filepath.Join(dir, "db")
	s := secretsServer(t, u, server.Config{DataDir: dir, StoreURL: db, QueueURL: db, ResultsURL: db})
	r := s.do("POST", "/v1/authed", "body", callerHeaders...)
	wantStatus(t, r, 202)
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")
	if got := u.requests("/v1/authed"); len(got) != 1 || got[0].Get("Authorization") != "Bearer alice-token" {
		t.Fatalf("upstream got %v", got)
	}
	var all []byte
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			all = append(all, b...)
		}
		return nil
	})
	if !bytes.Contains(all, []byte("ordinary-header-value")) {
		t.Fatal("the scan of the data directory does not find the stored request")
	}
	for _, secret := range []string{"alice-token", "alice-cookie", "alice-api-key", "upstream-session-secret"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("the data directory holds %q in clear", secret)
		}
	}
}

// An unreachable upstream's problem, as clients see it, names no address.
func TestUpstreamUnreachableSaysNothingInternal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h, err := forward.New(forward.Config{URL: "http://" + addr + "/internal"})
	if err != nil {
		t.Fatal(err)
	}
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "POST /v1/down", Handler: h, MaxAttempts: 1})
	s := start(t, server.Config{Mux: mux})
	r := s.do("POST", "/v1/down", "x")
	wantStatus(t, r, 202)
	m := s.waitStatus(r.JSON(t)["id"].(string), "failed")
	b, _ := json.Marshal(m)
	_, port, _ := net.SplitHostPort(addr)
	if bytes.Contains(b, []byte(":"+port)) || bytes.Contains(b, []byte("/internal")) || !bytes.Contains(b, []byte(forward.ProblemUpstreamUnreachable)) {
		t.Errorf("failed operation %s: names the upstream, or is not %s", b, forward.ProblemUpstreamUnreachable)
	}
}
