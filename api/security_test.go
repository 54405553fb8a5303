package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/handler/forward"
	"github.com/arrhq/arr/internal/pgtest"
	_ "github.com/arrhq/arr/postgres" // the engine of TestNULOnPostgres
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

// The regression tests of issue 12's findings for the api: each reproduces
// one observation made against a real arr serve.

// pathUpstream is an httptest server that records the requests a forward
// route sends it.
type pathUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newPathUpstream(t *testing.T) *pathUpstream {
	u := &pathUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "upstream saw "+r.URL.EscapedPath())
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *pathUpstream) received() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

func forwardTo(t *testing.T, url string) worker.Handler {
	h, err := forward.New(forward.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// send sends req (its URL relative to the server) and reads the answer.
func (s *testServer) send(req *http.Request) *response {
	s.t.Helper()
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

func (s *testServer) newRequest(method, path, body string, hdr ...string) *http.Request {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

// Finding: POST /v1/reports/%2e%2e%2f%2e%2e%2f%2e%2e%2fadmin%2fdrop on a
// forward route reached the upstream as /public/v1/reports/../../../admin/drop,
// gateway mode passed /public/../internal/secret, and
// /api/RequestStatus/..%2f..%2fetc%2fpasswd answered the mux's 307. Every
// such path is now a 400 problem; nothing is stored or forwarded.
func TestPathGuard(t *testing.T) {
	up := newPathUpstream(t)
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/reports/{kind}", Handler: forwardTo(t, up.URL+"/public")})
	mux.HandleRoute(server.Route{Pattern: "/v1/items/{id}", Handler: worker.Echo})
	mux.HandleRoute(server.Route{Pattern: "* /", Name: "gateway", Handler: forwardTo(t, up.URL+"/public")})
	s := start(t, server.Config{Mux: mux})
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/reports/%2e%2e%2f%2e%2e%2f%2e%2e%2fadmin%2fdrop"},
		{"POST", "/v1/reports/%2E%2E"},
		{"POST", "/v1/reports/.."},
		{"POST", "/../internal/secret"},
		{"POST", "/%2e%2e/internal/secret"},
		{"POST", "/a/./b"},
		{"GET", "/api/RequestStatus/..%2f..%2fetc%2fpasswd"},
		{"GET", "/api/RequestStatus/../../etc/passwd"},
		{"GET", "/v1/operations/../healthz"},
		{"POST", "/v1/items/%00"},
		{"POST", "/v1/items/a%01b"},
		{"POST", "/v1/items/%7f"},
		{"POST", "/v1/items/a%2Fb"},
		{"POST", "/v1/items/a%5cb"},
		{"POST", `/v1/items/a\b`},
		{"POST", "/v1/items/%ff%fe"},
		{"POST", "/v1/items/%c0%af"},
		{"POST", "//v1/echo"},
		{"POST", "/v1//echo"},
	} {
		r := s.do(c.method, c.path, "x", "Content-Type", "text/plain")
		wantProblem(t, r, 400, api.ProblemInvalidPath)
	}
	if n := s.count(); n != 0 {
		t.Fatalf("%d operations stored for refused paths", n)
	}
	if got := up.received(); len(got) != 0 {
		t.Fatalf("the upstream got %d requests, the first for %q", len(got), got[0].URL.EscapedPath())
	}
	// A clean path still works, escaped on the way up.
	id := s.submit("ok")
	s.waitStatus(id, "succeeded")
	r := s.do("POST", "/v1/reports/a%20b%3Fc", "x")
	wantStatus(t, r, 202)
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")
	if got := up.received(); len(got) != 1 || got[0].URL.EscapedPath() != "/public/v1/reports/a%20b%3Fc" {
		t.Fatalf("the upstream got %v", got)
	}
}

// Finding: a text/html (or SVG) result was served inline on arr's origin
// by /result?redirect=false and the seed's OnComplete=Stream. Every
// response with result bytes now carries the /blobs/ header set; a route
// with InlineResults is inline, still sandboxed.
func TestResultBytesAreSandboxed(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/page", Handler: worker.Echo, InlineResults: true})
	s := start(t, server.Config{Mux: mux})
	const page = `<script>alert(document.cookie)</script>`
	check := func(r *response, disposition string) {
		t.Helper()
		wantStatus(t, r, 200)
		if string(r.Body) != page {
			t.Fatalf("%s: body %q", r.Request.URL, r.Body)
		}
		h := r.Header
		if h.Get("Content-Security-Policy") != "default-src 'none'; sandbox" || h.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.HasPrefix(h.Get("Content-Disposition"), disposition) {
			t.Fatalf("%s: headers %v", r.Request.URL, h)
		}
	}
	for _, ct := range []string{"text/html", "image/svg+xml"} {
		r := s.do("POST", "/v1/echo", page, "Content-Type", ct)
		wantStatus(t, r, 202)
		id := r.JSON(t)["id"].(string)
		s.waitStatus(id, "succeeded")
		check(s.get("/v1/operations/"+id+"/result?redirect=false"), "attachment")
		check(s.get("/api/RequestStatus/"+id+"?OnComplete=Stream"), "attachment")
		// The signed URL, for comparison: the same set.
		check(s.get(s.get("/v1/operations/"+id+"/result").Header.Get("Location")), "attachment")
	}
	r := s.do("POST", "/v1/page", page, "Content-Type", "text/html")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "succeeded")
	check(s.get("/v1/operations/"+id+"/result?redirect=false"), "inline")
}

// Finding: Idempotency-Key k-123 on POST /v1/items/1 and then on
// /v1/items/2 replayed the first operation. The fingerprint now covers
// method, escaped path, query and body (422 for a different request), and
// the key is a structured-field string, "k-123" being k-123.
func TestIdempotencyFingerprintAndSyntax(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "* /v1/items/{id}", Handler: worker.Echo})
	s := start(t, server.Config{Mux: mux, Workers: -1})
	first := s.do("POST", "/v1/items/1", "b", "Idempotency-Key", "k-123")
	wantStatus(t, first, 202)
	wantProblem(t, s.do("POST", "/v1/items/2", "b", "Idempotency-Key", "k-123"), 422, api.ProblemIdempotencyReuse)
	wantProblem(t, s.do("PUT", "/v1/items/1", "b", "Idempotency-Key", "k-123"), 422, api.ProblemIdempotencyReuse)
	wantProblem(t, s.do("POST", "/v1/items/1?x=1", "b", "Idempotency-Key", "k-123"), 422, api.ProblemIdempotencyReuse)
	wantProblem(t, s.do("POST", "/v1/items/1", "c", "Idempotency-Key", "k-123"), 422, api.ProblemIdempotencyReuse)
	again := s.do("POST", "/v1/items/1", "b", "Idempotency-Key", `"k-123"`)
	wantStatus(t, again, 202)
	if again.Header.Get("Idempotent-Replayed") != "true" || again.JSON(t)["id"] != first.JSON(t)["id"] {
		t.Fatalf(`"k-123" did not replay k-123: %v %s`, again.Header, again.Body)
	}
	// A quoted key may hold what a token cannot.
	q := s.do("POST", "/v1/items/1", "b", "Idempotency-Key", `"a b \"c\" \\"`)
	wantStatus(t, q, 202)
	if q.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a new key replayed")
	}
	for _, bad := range []string{`"k-123`, `"a\x"`, `"ok";p=1`, `a b`, `a,b`, `""`, "\"\u00e9\"", `"` + strings.Repeat("k", 256) + `"`} {
		wantProblem(t, s.do("POST", "/v1/items/1", "b", "Idempotency-Key", bad), 400, api.ProblemInvalidParameter)
	}
	wantProblem(t, s.do("POST", "/v1/items/1", "b", "Idempotency-Key", "a", "Idempotency-Key", "b"), 400, api.ProblemInvalidParameter)
	if n := s.count(); n != 2 {
		t.Fatalf("%d operations stored, want 2", n)
	}
}

// Finding: a cross-site POST (Origin: https://evil.example, Sec-Fetch-Site:
// cross-site, text/plain) and a body-less retry were accepted.
func TestCrossOriginProtection(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleFunc("POST /v1/fails", func(context.Context, *worker.Task, worker.Progress) (*worker.Result, error) {
		return nil, worker.Permanent(errors.New("no"))
	})
	s := start(t, server.Config{Mux: mux, API: api.Config{AllowedOrigins: []string{"https://app.example"}}})
	evil := []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"}
	wantProblem(t, s.do("POST", "/v1/echo", "x", evil...), 403, api.ProblemCrossOrigin)
	wantProblem(t, s.do("POST", "/v1/echo", "x", "Origin", "https://evil.example", "Content-Type", "text/plain"), 403, api.ProblemCrossOrigin)
	if n := s.count(); n != 0 {
		t.Fatalf("%d operations stored", n)
	}
	r := s.do("POST", "/v1/fails", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "failed")
	wantProblem(t, s.do("POST", "/v1/operations/"+id+"/retry", "", evil...), 403, api.ProblemCrossOrigin)
	wantProblem(t, s.do("DELETE", "/v1/operations/"+id, "", evil...), 403, api.ProblemCrossOrigin)
	if m := s.get("/v1/operations/" + id).JSON(t); m["status"] != "failed" {
		t.Fatalf("a refused retry changed the operation: %v", m)
	}
	// Reading cross-site is not refused; same-origin, trusted-origin and
	// non-browser writes are not either.
	wantStatus(t, s.do("GET", "/v1/operations/"+id, "", evil...), 200)
	wantStatus(t, s.do("POST", "/v1/echo", "x", "Sec-Fetch-Site", "same-origin"), 202)
	wantStatus(t, s.do("POST", "/v1/echo", "x", "Origin", "https://app.example", "Sec-Fetch-Site", "cross-site"), 202)
	wantStatus(t, s.do("POST", "/v1/echo", "x"), 202)
}

// Finding: Host: evil.example put evil.example into Location and every
// link.
func TestHostAllowList(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	post := func(host string) *response {
		req := s.newRequest("POST", "/api/AsyncProcessingWorkAcceptor", seedBody, "Content-Type", "application/json")
		req.Host = host
		return s.send(req)
	}
	r := post("evil.example")
	wantProblem(t, r, 421, api.ProblemMisdirected)
	if strings.Contains(string(r.Body), "evil.example/") {
		t.Fatalf("a link to the Host: %s", r.Body)
	}
	wantProblem(t, post("evil.example:99999"), 400, api.ProblemInvalidHost)
	wantProblem(t, post("[::1"), 400, api.ProblemInvalidHost)
	if n := s.count(); n != 0 {
		t.Fatalf("%d operations stored for refused Hosts", n)
	}
	for _, h := range []string{"localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST"} {
		r := post(h)
		wantStatus(t, r, 202)
		if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "http://"+strings.ToLower(h)+"/api/RequestStatus/") {
			t.Fatalf("Host %s: Location %q", h, loc)
		}
	}
	// The probes answer whatever the Host (an orchestrator's is the pod's address).
	req := s.newRequest("GET", "/healthz", "")
	req.Host = "10.1.2.3:8080"
	wantStatus(t, s.send(req), 200)

	allowed := start(t, server.Config{Workers: -1, API: api.Config{AllowedHosts: []string{"api.example", "other.example:8443"}}})
	for host, want := range map[string]int{"api.example": 202, "API.example:9000": 202, "other.example:8443": 202,
		"other.example": 421, "evil.example": 421} {
		req := allowed.newRequest("POST", "/v1/echo", "x")
		req.Host = host
		r := allowed.send(req)
		if r.StatusCode != want {
			t.Fatalf("Host %s: %d, want %d: %s", host, r.StatusCode, want, r.Body)
		}
		if want == 202 && !strings.HasPrefix(r.Header.Get("Location"), "http://"+strings.ToLower(host)+"/v1/operations/") {
			t.Fatalf("Host %s: Location %q", host, r.Header.Get("Location"))
		}
	}

	// With a public URL, links come from it whatever the Host.
	pub := start(t, server.Config{Workers: -1, API: api.Config{PublicURL: "https://arr.example.com"}})
	req = pub.newRequest("POST", "/v1/echo", "x")
	req.Host = "evil.example"
	r = pub.send(req)
	wantStatus(t, r, 202)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://arr.example.com/v1/operations/") || strings.Contains(string(r.Body), "evil") {
		t.Fatalf("Location %q, body %s", loc, r.Body)
	}
}

// X-Forwarded-* and Forwarded are believed only from a trusted proxy,
// and dropped before forwarding otherwise.
func TestForwardingHeadersOnlyFromTrustedProxies(t *testing.T) {
	up := newPathUpstream(t)
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/fwd", Handler: forwardTo(t, up.URL)})
	spoof := []string{"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "X-Forwarded-For", "6.6.6.6",
		"Forwarded", "for=6.6.6.6;host=evil.example;proto=https"}

	s := start(t, server.Config{Mux: mux})
	r := s.do("POST", "/v1/fwd", "x", spoof...)
	wantStatus(t, r, 202)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, s.URL+"/") {
		t.Fatalf("an untrusted peer's X-Forwarded-Host made the Location %q", loc)
	}
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")
	got := up.received()
	if len(got) != 1 {
		t.Fatalf("the upstream got %d requests", len(got))
	}
	h := got[0].Header
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" ||
		h.Get("X-Forwarded-Host") != strings.TrimPrefix(s.URL, "http://") || h.Get("Forwarded") != "" {
		t.Fatalf("the upstream got forwarding headers %v", h)
	}

	trusted := start(t, server.Config{Mux: mux, API: api.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		AllowedHosts: []string{"arr.example.com"}}})
	r = trusted.do("POST", "/v1/echo", "x", "X-Forwarded-Host", "arr.example.com", "X-Forwarded-Proto", "https")
	wantStatus(t, r, 202)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://arr.example.com/v1/operations/") {
		t.Fatalf("a trusted proxy's X-Forwarded-*: Location %q", loc)
	}
	r = trusted.do("POST", "/v1/echo", "x", "Forwarded", `for=1.2.3.4;host="arr.example.com";proto=https`)
	wantStatus(t, r, 202)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://arr.example.com/v1/operations/") {
		t.Fatalf("a trusted proxy's Forwarded: Location %q", loc)
	}
	// A trusted proxy's forwarded Host must still be allowed.
	wantProblem(t, trusted.do("POST", "/v1/echo", "x", "X-Forwarded-Host", "evil.example"), 421, api.ProblemMisdirected)
}

// Finding: a Kelvin sign (U+212A) folded into the seed's acceptor path.
func TestASCIIOnlyCaseFolding(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	// /api/AsyncProcessingWor\u212AAcceptor, the K a Kelvin sign.
	wantProblem(t, s.postJSON("/api/AsyncProcessingWor%E2%84%AAAcceptor", seedBody), 404, api.ProblemNotFound)
	wantStatus(t, s.postJSON("/API/asyncprocessingworkacceptor", seedBody), 202)
	// A subtree's root without its slash is a 404 problem, not the mux's 307.
	for _, p := range []string{"/api/RequestStatus", "/api/requeststatus", "/blobs"} {
		wantProblem(t, s.get(p), 404, api.ProblemNotFound)
	}
	id := s.submit("x")
	// ſ (U+017F) is not s.
	wantProblem(t, s.get("/api/RequestStatus/"+id+"?OnComplete=%C5%BFtream"), 400, api.ProblemInvalidParameter)
	wantStatus(t, s.get("/api/requeststatus/"+id+"?oncomplete=STREAM&OnPending=accepted"), 202)
}

// Finding: Prefer: wait=9300000000 overflowed to Preference-Applied:
// wait=-9146744073. Waits are clamped before they are multiplied.
func TestWaitIsClampedBeforeMultiplying(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{MaxWait: time.Second}})
	for _, v := range []string{"9300000000", "18446744074", "99999999999999999999999999", "2"} {
		r := s.do("POST", "/v1/echo", "x", "Prefer", "wait="+v)
		wantStatus(t, r, 202)
		if got := r.Header.Get("Preference-Applied"); got != "wait=1" {
			t.Fatalf("Prefer: wait=%s: Preference-Applied %q, want wait=1", v, got)
		}
		id := r.JSON(t)["id"].(string)
		for _, q := range []string{"?wait=" + v, "?wait=" + v + "s"} {
			m := s.get("/v1/operations/" + id + q)
			if m.StatusCode == 400 && strings.HasSuffix(q, "s") {
				// A duration time.Duration cannot hold is refused, never wrapped.
				wantProblem(t, m, 400, api.ProblemInvalidParameter)
				continue
			}
			wantStatus(t, m, 200)
			if got := m.Header.Get("Preference-Applied"); got != "wait=1" {
				t.Fatalf("%s: Preference-Applied %q, want wait=1", q, got)
			}
		}
	}
	wantProblem(t, s.do("POST", "/v1/echo", "x", "Prefer", "wait=-1"), 400, api.ProblemInvalidParameter)
	wantProblem(t, s.get("/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a?wait=-5"), 400, api.ProblemInvalidParameter)
}

// Header values and queries with control characters never reach a store:
// net/http refuses them on the wire, and the api refuses them from any
// other caller of its handler.
func TestControlCharactersInHeadersAndQuery(t *testing.T) {
	srv, err := server.New(t.Context(), server.Config{DataDir: t.TempDir(), StoreURL: "mem:ctl", QueueURL: "mem:ctl",
		ResultsURL: "mem:ctl", Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	for _, mk := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("X-A", "a\x00b") },
		func(r *http.Request) { r.Header["X-B"] = []string{"a\nInjected: 1"} },
		func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} },
		func(r *http.Request) { r.URL.RawQuery = "q=\x00" },
	} {
		req := httptest.NewRequest("POST", "/v1/echo", strings.NewReader("x"))
		mk(req)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 400 || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%v %q: %d %s", req.Header, req.URL.RawQuery, w.Code, w.Body)
		}
	}
	ops, _, err := srv.Client().List(t.Context(), listAll)
	if err != nil || len(ops) != 0 {
		t.Fatalf("stored %d operations (%v)", len(ops), err)
	}
}

var listAll = arr.ListOptions{Limit: 1000}

// Finding: POST /v1/items/%00 on PostgreSQL answered 500 (a NUL cannot be
// stored in a text column). It is now a 400 before anything is stored; a
// percent-encoded NUL in the query is stored as it came (escaped) and works.
func TestNULOnPostgres(t *testing.T) {
	pg := pgtest.URL(t)
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/items/{id}", Handler: worker.Echo})
	s := start(t, server.Config{Mux: mux, StoreURL: pg, QueueURL: pg, ResultsURL: "mem:" + t.Name()})
	for _, p := range []string{"/v1/items/%00", "/v1/items/a%00b", "/v1/items/%ff"} {
		wantProblem(t, s.do("POST", p, "x", "Content-Type", "text/plain"), 400, api.ProblemInvalidPath)
	}
	r := s.do("POST", "/v1/items/ok?q=%00", "a\x00b", "Content-Type", "text/plain", "Idempotency-Key", `"k\\0"`)
	wantStatus(t, r, 202)
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")
	if n := s.count(); n != 1 {
		t.Fatalf("%d operations stored, want 1", n)
	}
}
