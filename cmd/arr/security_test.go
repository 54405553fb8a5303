package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrhq/arr/internal/pgtest"
)

// The security regression suite: each test reproduces one observation of
// an attack on a real `arr serve` (issue 12) and checks that it no longer
// works. The comment of each says what was observed before.

// upstream is a recording HTTP server behind forward routes.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request // as received (bodies not kept)
	// status answers each request; default 200.
	status func(r *http.Request) int
	// hold, when set, blocks requests to paths ending in /slow until it
	// is closed.
	hold chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{hold: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(r.Context()))
		st := u.status
		u.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/slow") {
			select {
			case <-u.hold:
			case <-r.Context().Done():
				return
			}
		}
		code := 200
		if st != nil {
			code = st(r)
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "upstream-session-secret"})
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		io.WriteString(w, "upstream says hi")
	}))
	t.Cleanup(func() {
		select {
		case <-u.hold:
		default:
			close(u.hold)
		}
		u.Close()
	})
	return u
}

func (u *upstream) received() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// secured is one `arr serve` with API keys, a forward route, an exec
// route and an echo route with a path parameter, and arr's own secrets in
// its environment.
type secured struct {
	base string
	data string // the data directory (its signing keys)
	up   *upstream
	p    *arrProcess
}

func startSecured(t *testing.T) *secured {
	t.Helper()
	up := newUpstream(t)
	cfg := writeConfig(t, `
routes:
  - path: /v1/reports/{kind}
    handler: forward
    forward:
      url: `+up.URL+`/public
      header:
        X-Operator-Key: operator-secret
    maxAttempts: 1
  - path: /v1/unreachable
    handler: forward
    forward:
      url: http://10.255.255.1:1/internal
    maxAttempts: 1
    timeout: 2s
  - path: /v1/env
    handler: exec
    exec:
      command: ["env"]
      contentType: text/plain
  - path: /v1/items/{id}
    handler: echo
`)
	env := []string{"AWS_SECRET_ACCESS_KEY=aws-secret-of-arr", "PGPASSWORD=pg-secret-of-arr"}
	data := t.TempDir()
	p := startProc(t, "serve", freeAddr(t), data, env, "-config", cfg, "-api-keys", writeKeys(t))
	t.Cleanup(func() { p.stop(t) })
	return &secured{base: "http://" + p.addr, data: data, up: up, p: p}
}

// submitAs posts body to path as key's caller and returns the operation's
// id, failing unless the answer is 202.
func (s *secured) submitAs(t *testing.T, key, path, ct, body string, hdr ...string) string {
	t.Helper()
	res, b := as(t, key, "POST", s.base+path, body, append([]string{"Content-Type", ct}, hdr...)...)
	if res.StatusCode != 202 {
		t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
	}
	var op opJSON
	if err := json.Unmarshal(b, &op); err != nil {
		t.Fatal(err)
	}
	return op.ID
}

func (s *secured) wait(t *testing.T, key, id string) opJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, b := as(t, key, "GET", s.base+"/v1/operations/"+id+"?redirect=false", "")
		var op opJSON
		_ = json.Unmarshal(b, &op)
		if res.StatusCode != 200 {
			t.Fatalf("status of %s: %d %s", id, res.StatusCode, b)
		}
		if op.Status == "succeeded" || op.Status == "failed" || op.Status == "canceled" {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s still %s", id, op.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isProblem(res *http.Response, status int) bool {
	return res.StatusCode == status && res.Header.Get("Content-Type") == "application/problem+json"
}

func TestSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	s := startSecured(t)

	// Observed: GET /v1/operations?limit=1000 with no credentials listed
	// every operation with a signed result URL; /metrics and
	// /openapi.json were public.
	t.Run("AnonymousReadsNothing", func(t *testing.T) {
		s.submitAs(t, aliceKey, "/v1/items/1", "text/plain", "alice's")
		for _, path := range []string{"/v1/operations?limit=1000", "/metrics", "/openapi.json"} {
			res, b := as(t, "", "GET", s.base+path, "")
			if res.StatusCode != 401 && res.StatusCode != 404 {
				t.Errorf("anonymous GET %s: %d %.200s", path, res.StatusCode, b)
			}
			if strings.Contains(string(b), "alice") || strings.Contains(string(b), "arr_") {
				t.Errorf("anonymous GET %s leaks: %.300s", path, b)
			}
		}
	})

	// Observed: a forward route's upstream Set-Cookie was shown to every
	// reader in result.headers.
	t.Run("UpstreamSetCookieNotKept", func(t *testing.T) {
		id := s.submitAs(t, aliceKey, "/v1/reports/daily", "application/json", `{}`)
		op := s.wait(t, aliceKey, id)
		if op.Status != "succeeded" {
			t.Fatalf("forward: %+v", op)
		}
		res, b := as(t, aliceKey, "GET", s.base+"/v1/operations/"+id+"?redirect=false", "")
		if res.StatusCode != 200 || strings.Contains(string(b), "upstream-session-secret") || strings.Contains(strings.ToLower(string(b)), "set-cookie") {
			t.Errorf("the operation shows the upstream's cookie: %d %s", res.StatusCode, b)
		}
	})

	// Observed: an anonymous retry of someone else's failed forward
	// operation re-sent that caller's Cookie and Authorization to the
	// upstream, again and again; an anonymous DELETE killed a running job.
	t.Run("RetryAndCancelAreTheOwners", func(t *testing.T) {
		s.up.mu.Lock()
		s.up.status = func(r *http.Request) int {
			if strings.HasSuffix(r.URL.Path, "/fail") {
				return 500
			}
			return 200
		}
		s.up.mu.Unlock()
		before := len(s.up.received())
		id := s.submitAs(t, aliceKey, "/v1/reports/fail", "application/json", `{}`, "Cookie", "session=alice-cookie")
		if op := s.wait(t, aliceKey, id); op.Status != "failed" {
			t.Fatalf("want failed: %+v", op)
		}
		for _, key := range []string{bobKey, ""} {
			res, _ := as(t, key, "POST", s.base+"/v1/operations/"+id+"/retry", "")
			if res.StatusCode != 404 && res.StatusCode != 401 {
				t.Errorf("retry by %q: %d", key, res.StatusCode)
			}
		}
		// Alice's own retry runs it again, still without her credentials.
		if res, b := as(t, aliceKey, "POST", s.base+"/v1/operations/"+id+"/retry", ""); res.StatusCode >= 300 {
			t.Fatalf("alice's retry: %d %s", res.StatusCode, b)
		}
		s.wait(t, aliceKey, id)
		got := s.up.received()[before:]
		if len(got) != 2 {
			t.Fatalf("the upstream got %d requests, want 2 (the attempt and alice's retry)", len(got))
		}
		for _, r := range got {
			if r.Header.Get("Cookie") != "" || strings.Contains(r.Header.Get("Authorization"), aliceKey) {
				t.Errorf("the upstream got the caller's credentials: Cookie %q Authorization %q", r.Header.Get("Cookie"), r.Header.Get("Authorization"))
			}
		}

		slow := s.submitAs(t, aliceKey, "/v1/reports/slow", "application/json", `{}`)
		deadline := time.Now().Add(10 * time.Second)
		for len(s.up.received()) < before+3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if res, _ := as(t, bobKey, "DELETE", s.base+"/v1/operations/"+slow, ""); res.StatusCode != 404 {
			t.Errorf("bob cancels alice's running operation: %d", res.StatusCode)
		}
		close(s.up.hold)
		if op := s.wait(t, aliceKey, slow); op.Status != "succeeded" {
			t.Errorf("alice's operation after bob's cancel: %s", op.Status)
		}
	})

	// Observed: POST /v1/reports/%2e%2e%2f%2e%2e%2f%2e%2e%2fadmin%2fdrop
	// reached the upstream as /public/v1/reports/../../../admin/drop with
	// the operator's X-Operator-Key.
	t.Run("ForwardPathTraversal", func(t *testing.T) {
		before := len(s.up.received())
		for _, path := range []string{"/v1/reports/%2e%2e%2f%2e%2e%2f%2e%2e%2fadmin%2fdrop", "/v1/reports/..%2f..%2fadmin", "/v1/reports/%2e%2e", "/v1/reports/a%5c..%5cadmin"} {
			res, b := as(t, aliceKey, "POST", s.base+path, `{}`, "Content-Type", "application/json")
			if !isProblem(res, 400) {
				t.Errorf("POST %s: %d %s", path, res.StatusCode, b)
			}
		}
		time.Sleep(100 * time.Millisecond)
		for _, r := range s.up.received()[before:] {
			t.Errorf("the upstream got %s", r.URL.EscapedPath())
		}
	})

	// Observed: a text/html or SVG echo result was served inline on arr's
	// origin by /result?redirect=false and the seed's OnComplete=Stream.
	t.Run("ResultBytesAreSandboxed", func(t *testing.T) {
		for _, ct := range []string{"text/html", "image/svg+xml"} {
			id := s.submitAs(t, aliceKey, "/v1/items/x", ct, `<script>alert(document.cookie)</script>`)
			s.wait(t, aliceKey, id)
			for _, path := range []string{"/v1/operations/" + id + "/result?redirect=false", "/api/RequestStatus/" + id + "?OnComplete=Stream"} {
				res, _ := as(t, aliceKey, "GET", s.base+path, "")
				h := res.Header
				if res.StatusCode != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") ||
					!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
					h.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
					t.Errorf("GET %s (%s): %d %v", path, ct, res.StatusCode, h)
				}
			}
		}
	})

	// Observed: Idempotency-Key k-123 on /v1/items/1, then on /v1/items/2,
	// then with another caller's credentials: all three replayed the first.
	t.Run("IdempotencyKeyIsTheCallersAndTheRequests", func(t *testing.T) {
		first := s.submitAs(t, aliceKey, "/v1/items/1", "text/plain", "same", "Idempotency-Key", `"k-123"`)
		res, b := as(t, aliceKey, "POST", s.base+"/v1/items/2", "same", "Content-Type", "text/plain", "Idempotency-Key", `"k-123"`)
		if !isProblem(res, 422) {
			t.Errorf("same key, another path: %d %s", res.StatusCode, b)
		}
		// The bare token is the same key as the string.
		res, b = as(t, aliceKey, "POST", s.base+"/v1/items/1", "same", "Content-Type", "text/plain", "Idempotency-Key", `k-123`)
		if res.StatusCode != 202 || res.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(b), first) {
			t.Errorf("the bare token: %d %v %s", res.StatusCode, res.Header, b)
		}
		bob := s.submitAs(t, bobKey, "/v1/items/1", "text/plain", "same", "Idempotency-Key", `"k-123"`)
		if bob == first {
			t.Error("bob's request with alice's key replayed alice's operation")
		}
	})

	// Observed: a cross-site POST (text/plain) and a body-less retry were
	// accepted; Host: evil.example went into Location and every link.
	t.Run("CrossSiteAndHost", func(t *testing.T) {
		for _, path := range []string{"/v1/items/1", "/v1/operations/" + s.submitAs(t, aliceKey, "/v1/items/1", "text/plain", "x") + "/retry"} {
			res, b := as(t, aliceKey, "POST", s.base+path, "x", "Content-Type", "text/plain",
				"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
			if !isProblem(res, 403) {
				t.Errorf("cross-site POST %s: %d %s", path, res.StatusCode, b)
			}
		}
		req, _ := http.NewRequest("POST", s.base+"/v1/items/1", strings.NewReader("x"))
		req.Host = "evil.example"
		req.Header.Set("Authorization", "Bearer "+aliceKey)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode < 400 || res.StatusCode >= 500 || strings.Contains(string(b)+res.Header.Get("Location"), "//evil.example") {
			t.Errorf("Host: evil.example: %d Location %q %s", res.StatusCode, res.Header.Get("Location"), b)
		}
	})

	// Observed: an exec command's environment held arr's own secrets and
	// the caller's Authorization; X-Remote-User and X_Remote_User both
	// became ARR_HEADER_X_REMOTE_USER, joined in random order.
	t.Run("ExecEnvironment", func(t *testing.T) {
		id := s.submitAs(t, aliceKey, "/v1/env", "text/plain", "", "X-Remote-User", "alice", "X_Remote_User", "admin")
		if op := s.wait(t, aliceKey, id); op.Status != "succeeded" {
			t.Fatalf("exec env: %+v", op)
		}
		_, env := as(t, aliceKey, "GET", s.base+"/v1/operations/"+id+"/result?redirect=false", "")
		for _, leak := range []string{"aws-secret-of-arr", "pg-secret-of-arr", aliceKey, "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"} {
			if strings.Contains(string(env), leak) {
				t.Errorf("the command's environment holds %q:\n%s", leak, env)
			}
		}
		var remote []string
		for _, line := range strings.Split(string(env), "\n") {
			if strings.HasPrefix(line, "ARR_HEADER_X_REMOTE_USER=") {
				remote = append(remote, line)
			}
		}
		if len(remote) != 1 || remote[0] != "ARR_HEADER_X_REMOTE_USER=alice" {
			t.Errorf("ARR_HEADER_X_REMOTE_USER: %q", remote)
		}
	})

	// Observed: /api/RequestStatus/..%2f..%2fetc%2fpasswd answered the
	// mux's 307 to /etc/passwd; a Kelvin sign folded into the seed's
	// acceptor path; Prefer: wait=9300000000 overflowed.
	t.Run("Paths", func(t *testing.T) {
		for _, path := range []string{"/api/RequestStatus/..%2f..%2fetc%2fpasswd", "/api/RequestStatus/%2e%2e/x", "/v1/operations/..%2f..", "/v1/items/a%00b", "/v1/items/%ff"} {
			res, b := as(t, aliceKey, "GET", s.base+path, "")
			if !isProblem(res, 400) || res.Header.Get("Location") != "" {
				t.Errorf("GET %s: %d Location %q %s", path, res.StatusCode, res.Header.Get("Location"), b)
			}
		}
		res, b := as(t, aliceKey, "POST", s.base+"/api/AsyncProcessingWor\u212aAcceptor", `{"id":"1","customername":"c"}`, "Content-Type", "application/json")
		if res.StatusCode != 404 {
			t.Errorf("the Kelvin sign path: %d %s", res.StatusCode, b)
		}
		res, b = as(t, aliceKey, "POST", s.base+"/v1/items/1", "x", "Content-Type", "text/plain", "Prefer", "wait=9300000000")
		applied := res.Header.Get("Preference-Applied")
		if n, err := strconv.Atoi(strings.TrimPrefix(applied, "wait=")); res.StatusCode >= 400 || err != nil || n < 0 || n > 60 {
			t.Errorf("Prefer: wait=9300000000: %d Preference-Applied %q %s", res.StatusCode, applied, b)
		}
	})

	// Observed: upstream dial errors put internal hosts and IPs in the
	// problem's detail.
	// Observed: a leaked signing key minted 7-day result URLs.
	t.Run("LeakedKeyMintsNoLongURL", func(t *testing.T) {
		id := s.submitAs(t, aliceKey, "/v1/items/7", "text/plain", "alice's result")
		op := s.wait(t, aliceKey, id)
		if op.Result == nil {
			t.Fatalf("no result: %+v", op)
		}
		loc, err := url.Parse(op.Result.Href)
		if err != nil {
			t.Fatalf("no result URL: %+v", op)
		}
		key := strings.TrimPrefix(loc.Path, "/blobs/")
		for ttl, want := range map[time.Duration]int{7 * 24 * time.Hour: 403, 5 * time.Minute: 200} {
			if res, b := as(t, "", "GET", s.base+mintURL(t, s.data, key, ttl), ""); res.StatusCode != want {
				t.Errorf("URL minted with the keyring for %v: %d %.200s, want %d", ttl, res.StatusCode, b, want)
			}
		}
	})

	t.Run("UpstreamErrorsSayNothingInternal", func(t *testing.T) {
		id := s.submitAs(t, aliceKey, "/v1/unreachable", "application/json", `{}`)
		op := s.wait(t, aliceKey, id)
		_, b := as(t, aliceKey, "GET", s.base+"/v1/operations/"+id, "")
		if op.Status != "failed" || strings.Contains(string(b), "10.255.255.1") {
			t.Errorf("failed forward: %s %s", op.Status, b)
		}
	})
}

// Observed: in gateway mode (-forward), /public/../internal/secret
// reached the upstream.
func TestSecurityGatewayTraversal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	up := newUpstream(t)
	p := startArr(t, freeAddr(t), t.TempDir(), "-forward", up.URL+"/public")
	defer p.stop(t)
	for _, path := range []string{"/%2e%2e/internal/secret", "/a/%2e%2e%2f%2e%2e%2finternal", "/..%5cinternal"} {
		res, b := as(t, "", "POST", "http://"+p.addr+path, "x", "Content-Type", "text/plain")
		if !isProblem(res, 400) {
			t.Errorf("POST %s: %d %s", path, res.StatusCode, b)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, r := range up.received() {
		t.Errorf("the upstream got %s", r.URL.EscapedPath())
	}
}

// Observed: POST /v1/items/%00 on PostgreSQL answered 500.
func TestSecurityNULOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	url := pgtest.URL(t)
	cfg := writeConfig(t, "routes:\n  - path: /v1/items/{id}\n    handler: echo\n")
	p := startArr(t, freeAddr(t), t.TempDir(), "-store", url, "-results", "file:"+t.TempDir(), "-config", cfg)
	defer p.stop(t)
	for _, r := range []struct{ path, hdr, val string }{
		{"/v1/items/%00", "", ""},
		{"/v1/items/1?q=%00", "", ""},
		{"/v1/items/1", "Idempotency-Key", "\"a\\u0000\""},
	} {
		hdr := []string{"Content-Type", "text/plain"}
		if r.hdr != "" {
			hdr = append(hdr, r.hdr, r.val)
		}
		res, b := as(t, "", "POST", "http://"+p.addr+r.path, "x", hdr...)
		if res.StatusCode >= 500 {
			t.Errorf("POST %s: %d %s", r.path, res.StatusCode, b)
		}
	}
	// A body with NUL bytes is data, stored and returned as sent.
	sp := &secured{base: "http://" + p.addr}
	id := sp.submitAs(t, "", "/v1/items/1", "application/octet-stream", "a\x00b")
	sp.wait(t, "", id)
	res, b := as(t, "", "GET", sp.base+"/v1/operations/"+id+"/result?redirect=false", "")
	if res.StatusCode != 200 || string(b) != "a\x00b" {
		t.Errorf("a body with NUL: %d %q", res.StatusCode, b)
	}
}

// runBin runs the arr binary with args until it exits, for at most d,
// and returns its output.
func runBin(bin string, d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// Observed: arr listened on every address with no authentication.
func TestRefusesAnonymousBeyondLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin, err := buildArr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	out, err := runBin(bin, 10*time.Second, "serve", "-addr", ":"+port, "-data", t.TempDir())
	if err == nil || !strings.Contains(out, "-api-keys") || !strings.Contains(out, "-insecure-no-auth") {
		t.Errorf("arr serve -addr :%s without authentication: %v\n%s", port, err, out)
	}
}
