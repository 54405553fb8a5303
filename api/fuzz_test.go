package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

// The fuzz targets of the api's parsers: each drives the api's handler
// (the mem engine, no workers, no network) with the input and checks both
// the parser's own properties and the HTTP ones: no 5xx, a refused input
// is a 4xx problem and stores nothing. Their seed corpora run in plain go
// test; `make fuzz` fuzzes each for a while.

// fuzzServer is an api over a mem engine of its own, with no workers.
type fuzzServer struct {
	h http.Handler
	c *arr.Client
}

func newFuzzServer(f *testing.F, cfg api.Config) *fuzzServer {
	f.Helper()
	srv, err := server.New(context.Background(), server.Config{DataDir: f.TempDir(), StoreURL: "mem:" + f.Name(),
		QueueURL: "mem:" + f.Name(), ResultsURL: "mem:" + f.Name(), Workers: -1, API: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	return &fuzzServer{h: srv.Handler(), c: srv.Client()}
}

// stored is how many operations the server holds.
func (s *fuzzServer) stored(t *testing.T) int {
	ops, _, err := s.c.List(context.Background(), arr.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(ops)
}

// serve runs req through the handler, as from a loopback client.
func (s *fuzzServer) serve(req *http.Request) *httptest.ResponseRecorder {
	if req.Host == "" {
		req.Host = "127.0.0.1:8080"
	}
	req.RemoteAddr = "127.0.0.1:5555"
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, req)
	return w
}

// checkAnswer fails t for a 5xx, or for a 4xx that is not a problem.
func checkAnswer(t *testing.T, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%s: %d %s", what, w.Code, w.Body)
	}
	if w.Code >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s: %d with Content-Type %q: %s", what, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

func wantRefused(t *testing.T, what string, w *httptest.ResponseRecorder, code int, typ string) {
	t.Helper()
	var p struct{ Type string }
	if w.Code != code || json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Type != typ {
		t.Fatalf("%s: %d %s, want %d %s", what, w.Code, w.Body, code, typ)
	}
}

// newRequest builds a request for a request-target the way net/http's
// server does, or nil when the server would refuse it before arr sees it.
func newRequest(method, target string, body string) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	return &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body))}
}

func FuzzPath(f *testing.F) {
	s := newFuzzServer(f, api.Config{})
	for _, p := range []string{"/v1/echo", "/v1/reports/%2e%2e%2f%2e%2e%2f%2e%2e%2fadmin%2fdrop", "/api/RequestStatus/..%2f..%2fetc%2fpasswd",
		"/v1/items/%00", "/a/./b", "//x", "/%ff", `/a\b`, "/API/AsyncProcessingWorkAcceptor", "/api/AsyncProcessingWor%E2%84%AAAcceptor",
		"/v1/operations/", "/v1/operations/x/result", "/api/requeststatus", "/a%5Cb", "/a%2fb", "/%C0%AE%C0%AE/", "*", "/v1/echo/", "/.%2e/x"} {
		f.Add(p, true)
		f.Add(p, false)
	}
	f.Fuzz(func(t *testing.T, target string, post bool) {
		method := "GET"
		if post {
			method = "POST"
		}
		req := newRequest(method, target, "x")
		if req == nil {
			return
		}
		path, escaped := req.URL.Path, req.URL.EscapedPath()
		msg := api.CheckPath(path, escaped)
		before := s.stored(t)
		w := s.serve(req)
		checkAnswer(t, method+" "+target, w)
		if msg != "" {
			wantRefused(t, method+" "+target, w, 400, api.ProblemInvalidPath)
			if n := s.stored(t); n != before {
				t.Fatalf("%s %s: refused (%s) but stored an operation", method, target, msg)
			}
			return
		}
		// An accepted path: its escaping reads back as the same path, which
		// is accepted again; the mux never redirects it to a cleaned form.
		u, err := url.ParseRequestURI((&url.URL{Path: path}).EscapedPath())
		if err != nil || u.Path != path || api.CheckPath(u.Path, u.EscapedPath()) != "" {
			t.Fatalf("accepted path %q does not round-trip: %v %q", path, err, u)
		}
		if w.Code == http.StatusTemporaryRedirect || w.Code == http.StatusPermanentRedirect || w.Code == http.StatusMovedPermanently {
			t.Fatalf("%s %s: the mux's redirect to %q", method, target, w.Header().Get("Location"))
		}
	})
}

func FuzzHost(f *testing.F) {
	s := newFuzzServer(f, api.Config{AllowedHosts: []string{"api.example", "other.example:8443"}})
	for _, h := range []string{"127.0.0.1:8080", "localhost", "[::1]:80", "evil.example", "API.example:1", "other.example:8443",
		"other.example", "evil.example:99999", "[::1", "[fe80::1%25eth0]:80", "a..b", "xn--bcher-kva.example", "127.0.0.1:", ":80",
		"K.example", "1.2.3.4:0", ""} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		canon, ok, loopback := api.ParseHost(host)
		if ok {
			// The canonical form is valid, stable, and ASCII.
			c2, ok2, lb2 := api.ParseHost(canon)
			if !ok2 || c2 != canon || lb2 != loopback {
				t.Fatalf("Host %q: canonical %q re-parses as %q %v", host, canon, c2, ok2)
			}
			if strings.ContainsFunc(canon, func(r rune) bool { return r > 0x7e || r <= 0x20 || r == '/' || r == '@' }) {
				t.Fatalf("Host %q: canonical %q", host, canon)
			}
		}
		if host == "" {
			return // net/http fills in an empty Host
		}
		req := newRequest("POST", "/v1/echo", "x")
		req.Host = host
		before := s.stored(t)
		w := s.serve(req)
		checkAnswer(t, "Host "+host, w)
		switch {
		case !ok:
			wantRefused(t, "Host "+host, w, 400, api.ProblemInvalidHost)
		case w.Code == 202:
			loc := w.Header().Get("Location")
			if !strings.HasPrefix(loc, "http://"+canon+"/v1/operations/") {
				t.Fatalf("Host %q: Location %q", host, loc)
			}
			if !loopback && !strings.HasPrefix(canon, "api.example") && canon != "other.example:8443" {
				t.Fatalf("Host %q (%s) is not allowed but was served", host, canon)
			}
			return
		default:
			if w.Code != 421 || loopback {
				t.Fatalf("Host %q: %d %s", host, w.Code, w.Body)
			}
		}
		if n := s.stored(t); n != before {
			t.Fatalf("Host %q refused but stored", host)
		}
	})
}

func FuzzPrefer(f *testing.F) {
	s := newFuzzServer(f, api.Config{MaxWait: time.Millisecond})
	w := s.serve(newRequest("POST", "/v1/echo", "x"))
	var op struct{ ID string }
	if w.Code != 202 || json.Unmarshal(w.Body.Bytes(), &op) != nil {
		f.Fatalf("submit: %d %s", w.Code, w.Body)
	}
	for _, v := range []string{"wait=10", "wait=9300000000", `wait="5"`, "respond-async, wait=3", "wait=-1", "wait=1e3", "wait=",
		"WAIT=2", "w\u212Ait=1", "wait=000000000000000000001", "wait=99999999999999999999999999999", "handling=lenient; wait=1"} {
		f.Add(v, "")
		f.Add(v, "30s")
	}
	f.Add("", "9300000000")
	f.Add("", "18446744074")
	f.Fuzz(func(t *testing.T, prefer, waitParam string) {
		wait, _, bad := api.ParsePrefer([]string{prefer})
		if wait < 0 || wait > api.MaxWaitSeconds || bad && wait != 0 && !strings.Contains(prefer, ",") {
			t.Fatalf("Prefer %q: wait %d bad %v", prefer, wait, bad)
		}
		if d := time.Duration(wait) * time.Second; d < 0 {
			t.Fatalf("Prefer %q: wait %d overflows", prefer, wait)
		}
		if strings.ContainsFunc(prefer, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return // not a header value net/http would let through
		}
		target := "/v1/operations/" + op.ID
		if waitParam != "" {
			target += "?wait=" + url.QueryEscape(waitParam)
		}
		req := newRequest("GET", target, "")
		req.Header.Set("Prefer", prefer)
		w := s.serve(req)
		checkAnswer(t, "Prefer "+prefer, w)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("Prefer %q ?wait=%q: %d %s", prefer, waitParam, w.Code, w.Body)
		}
		if pa := w.Header().Get("Preference-Applied"); pa != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(pa, "wait="))
			if err != nil || n < 0 || n > 0 { // MaxWait is 1ms: 0 whole seconds
				t.Fatalf("Prefer %q ?wait=%q: Preference-Applied %q", prefer, waitParam, pa)
			}
		}
	})
}

func FuzzIdempotencyKey(f *testing.F) {
	s := newFuzzServer(f, api.Config{})
	for _, k := range []string{"k-123", `"k-123"`, `"a b \"c\" \\"`, `"abc`, `"a\x"`, `"ok";p=1`, "a b", "a,b", `""`, "",
		"0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a", "a:b/c", strings.Repeat("k", 256), " k ", "\"\u00e9\""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, err := api.IdempotencyKey([]string{v})
		if err == nil && key != "" {
			if len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
				t.Fatalf("Idempotency-Key %q: key %q", v, key)
			}
			// The key, written as a structured-field string, is the same key.
			sf := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
			if k2, err := api.IdempotencyKey([]string{sf}); err != nil || k2 != key {
				t.Fatalf("Idempotency-Key %q: key %q written %s reads %q (%v)", v, key, sf, k2, err)
			}
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return // not a header value net/http would let through
		}
		req := newRequest("POST", "/v1/echo", "fuzz")
		req.Header.Set("Idempotency-Key", v)
		before := s.stored(t)
		w := s.serve(req)
		checkAnswer(t, "Idempotency-Key "+v, w)
		if err != nil {
			wantRefused(t, "Idempotency-Key "+v, w, 400, api.ProblemInvalidParameter)
			if n := s.stored(t); n != before {
				t.Fatalf("Idempotency-Key %q refused but stored", v)
			}
		} else if w.Code != 202 {
			t.Fatalf("Idempotency-Key %q (key %q): %d %s", v, key, w.Code, w.Body)
		}
	})
}

func FuzzListCursor(f *testing.F) {
	s := newFuzzServer(f, api.Config{})
	for range 3 {
		if w := s.serve(newRequest("POST", "/v1/echo", "x")); w.Code != 202 {
			f.Fatalf("submit: %d", w.Code)
		}
	}
	for _, c := range []string{"", "0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a", "00000000-0000-0000-0000-000000000000", "x", "{0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a}",
		"urn:uuid:0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a", "0190C5A4-7E7B-7CC0-8D59-2C8B4C1E9F3A", "\x00"} {
		f.Add(c, "2", "pending")
		f.Add(c, "0", "")
		f.Add(c, "99999999999999999999", "succeeded,bogus")
	}
	f.Fuzz(func(t *testing.T, cursor, limit, status string) {
		q := url.Values{}
		for k, v := range map[string]string{"cursor": cursor, "limit": limit, "status": status} {
			if v != "" {
				q.Set(k, v)
			}
		}
		before := s.stored(t)
		w := s.serve(newRequest("GET", "/v1/operations?"+q.Encode(), ""))
		checkAnswer(t, "list "+q.Encode(), w)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("list %s: %d %s", q.Encode(), w.Code, w.Body)
		}
		if w.Code == 200 {
			var page struct {
				Items []map[string]any
				Next  string
			}
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
				t.Fatalf("list %s: %v", q.Encode(), err)
			}
			if page.Next != "" && !strings.HasPrefix(page.Next, "http://127.0.0.1:8080/v1/operations?") {
				t.Fatalf("list %s: next %q", q.Encode(), page.Next)
			}
		}
		if n := s.stored(t); n != before {
			t.Fatal("a list stored an operation")
		}
	})
}
