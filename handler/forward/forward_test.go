package forward

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// received is what an upstream saw of one request.
type received struct {
	method, path, rawPath, query, host string
	header                             http.Header
	body                               string
	contentLength                      int64
}

// recorder starts an upstream that records each request on a channel and
// answers with respond.
func recorder(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case ch <- received{method: r.Method, path: r.URL.Path, rawPath: r.URL.RawPath, query: r.URL.RawQuery,
			host: r.Host, header: r.Header.Clone(), body: string(b), contentLength: r.ContentLength}:
		default: // a test that does not look
		}
		if respond != nil {
			respond(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func newHandler(t *testing.T, cfg Config) worker.Handler {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return h
}

func task(req *operation.Request) *worker.Task {
	return &worker.Task{ID: "0190f2a4-0000-7000-8000-000000000001", Route: "fwd", Attempt: 3, Request: req}
}

// process runs h on req and, on success, reads and closes the result.
func process(t *testing.T, ctx context.Context, h worker.Handler, req *operation.Request) (*worker.Result, string, error) {
	t.Helper()
	res, err := h.Process(ctx, task(req), nil)
	if err != nil {
		return res, "", err
	}
	b, rerr := io.ReadAll(res.Reader)
	if c, ok := res.Reader.(io.Closer); ok {
		c.Close()
	}
	if rerr != nil {
		t.Fatalf("reading the result: %v", rerr)
	}
	return res, string(b), nil
}

func TestRequestReachesUpstream(t *testing.T) {
	srv, got := recorder(t, nil)
	h := newHandler(t, Config{URL: srv.URL + "/api/", Header: http.Header{"X-Api-Key": {"secret"}, "Authorization": {"Bearer upstream"}}})
	req := &operation.Request{
		Method: "PUT", Path: "/v1/things/a b", RawQuery: "x=1&y=%2F&x=2",
		Header: http.Header{
			"Content-Type":        {"application/json"},
			"Accept":              {"text/plain", "application/json"},
			"Idempotency-Key":     {"key-1"},
			"Authorization":       {"Bearer client"},
			"Prefer":              {"respond-async, wait=10"},
			"Content-Length":      {"999"},
			"Connection":          {"close, X-Private"},
			"X-Private":           {"hop"},
			"Keep-Alive":          {"timeout=5"},
			"Proxy-Connection":    {"keep-alive"},
			"Proxy-Authenticate":  {"Basic"},
			"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
			"Te":                  {"trailers"},
			"Trailer":             {"X-Sum"},
			"Transfer-Encoding":   {"chunked"},
			"Upgrade":             {"websocket"},
			"X-Forwarded-For":     {"10.0.0.1"},
			"X-Forwarded-Host":    {"spoofed.example"},
			"X-Forwarded-Proto":   {"gopher"},
			"X-Arr-Attempt":       {"99"},
			"X-Api-Key":           {"client-key"},
		},
		Body: []byte(`{"n":1}`), Host: "arr.example:8443", RemoteAddr: "192.0.2.7:51000", TLS: true,
	}
	res, body, err := process(t, t.Context(), h, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || body != "" {
		t.Errorf("result %d %q", res.StatusCode, body)
	}
	r := <-got
	if r.method != "PUT" || r.path != "/api/v1/things/a b" || r.query != "x=1&y=%2F&x=2" || r.body != `{"n":1}` || r.contentLength != 7 {
		t.Errorf("upstream got %s %q ?%q body %q (length %d)", r.method, r.path, r.query, r.body, r.contentLength)
	}
	if r.host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("Host %q, want the upstream's %q", r.host, srv.URL)
	}
	want := map[string]string{
		"Content-Type":       "application/json",
		"Idempotency-Key":    "key-1",
		"Authorization":      "Bearer upstream",
		"X-Api-Key":          "secret",
		"X-Forwarded-For":    "10.0.0.1, 192.0.2.7",
		"X-Forwarded-Host":   "arr.example:8443",
		"X-Forwarded-Proto":  "https",
		"X-Arr-Operation-Id": "0190f2a4-0000-7000-8000-000000000001",
		"X-Arr-Attempt":      "3",
		"Content-Length":     "7", // recomputed, not the stored 999
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if got := r.header.Values("Accept"); len(got) != 2 {
		t.Errorf("Accept %q, want both values", got)
	}
	if got := r.header.Values("X-Forwarded-For"); len(got) != 1 {
		t.Errorf("X-Forwarded-For %q, want one value", got)
	}
	for _, k := range []string{"Prefer", "X-Private", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Upgrade", "User-Agent"} {
		if v, ok := r.header[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
	if v := r.header.Get("Connection"); v != "" {
		t.Errorf("the client's Connection reached the upstream: %q", v)
	}
}

func TestForwardedHeadersWithoutPriorValues(t *testing.T) {
	srv, got := recorder(t, nil)
	h := newHandler(t, Config{URL: srv.URL})
	for _, c := range []struct {
		remote, wantFor, host, wantHost string
		tls                             bool
		wantProto                       string
		prior                           http.Header
	}{
		{remote: "[2001:db8::1]:443", wantFor: "2001:db8::1", host: "a.example", wantHost: "a.example", wantProto: "http"},
		{remote: "198.51.100.2", wantFor: "198.51.100.2", tls: true, wantProto: "https",
			prior: http.Header{"X-Forwarded-Host": {"spoofed"}, "User-Agent": {"curl/8"}}},
		{remote: "", wantFor: "", wantProto: "http"},
	} {
		if _, _, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/", RemoteAddr: c.remote, Host: c.host, TLS: c.tls, Header: c.prior}); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if f, h, p := r.header.Get("X-Forwarded-For"), r.header.Get("X-Forwarded-Host"), r.header.Get("X-Forwarded-Proto"); f != c.wantFor || h != c.wantHost || p != c.wantProto {
			t.Errorf("remote %q host %q tls %v: X-Forwarded-For %q, -Host %q, -Proto %q; want %q, %q, %q",
				c.remote, c.host, c.tls, f, h, p, c.wantFor, c.wantHost, c.wantProto)
		}
		if ua := c.prior.Get("User-Agent"); r.header.Get("User-Agent") != ua {
			t.Errorf("User-Agent %q, want %q", r.header.Get("User-Agent"), ua)
		}
	}
}

func TestPrefixJoin(t *testing.T) {
	srv, got := recorder(t, nil)
	for _, c := range []struct{ prefix, path, want, wantRaw string }{
		{"", "/v1/x", "/v1/x", ""},
		{"/", "/v1/x", "/v1/x", ""},
		{"/api", "/v1/x", "/api/v1/x", ""},
		{"/api/", "/v1/x", "/api/v1/x", ""},
		{"/api", "v1/x", "/api/v1/x", ""},
		{"/api/", "/", "/api/", ""},
		{"/api", "", "/api", ""},
		{"", "", "/", ""},
		{"/a%2Fb", "/c d", "/a/b/c d", "/a%2Fb/c%20d"},
	} {
		h := newHandler(t, Config{URL: srv.URL + c.prefix})
		if _, _, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: c.path}); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.path != c.want || r.rawPath != c.wantRaw {
			t.Errorf("prefix %q + path %q: upstream got %q (raw %q), want %q (raw %q)", c.prefix, c.path, r.path, r.rawPath, c.want, c.wantRaw)
		}
	}
}

func TestSuccess(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(200)
		io.WriteString(w, "hello from upstream")
	})
	h := newHandler(t, Config{URL: srv.URL})
	res, body, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/x", Body: []byte("in")})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || body != "hello from upstream" || res.ContentType != "text/plain; charset=utf-8" || res.Body != nil {
		t.Errorf("result %d %q %q", res.StatusCode, res.ContentType, body)
	}
	if res.Header.Get("ETag") != `"v1"` || len(res.Header.Values("X-Multi")) != 2 || res.Header.Get("Content-Type") != res.ContentType {
		t.Errorf("result header %v", res.Header)
	}
	for _, k := range []string{"Content-Length", "Connection", "X-Hop", "Keep-Alive"} {
		if v, ok := res.Header[k]; ok {
			t.Errorf("result header %s = %q, want none", k, v)
		}
	}
	if _, ok := res.Reader.(io.Closer); !ok {
		t.Error("the result's Reader is not an io.Closer")
	}
}

func TestNoContentTypeIsOctetStream(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // no sniffing
		w.Write([]byte{0, 1, 2})
	})
	h := newHandler(t, Config{URL: srv.URL})
	res, body, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ContentType != "application/octet-stream" || body != "\x00\x01\x02" {
		t.Errorf("result %q %q", res.ContentType, body)
	}
}

func TestCreatedAndRedirectAreSuccesses(t *testing.T) {
	followed := make(chan struct{}, 1)
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/create":
			w.Header().Set("Location", "/things/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "created")
		case "/moved":
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusFound)
			io.WriteString(w, "see elsewhere")
		case "/elsewhere":
			followed <- struct{}{}
		}
	})
	h := newHandler(t, Config{URL: srv.URL})
	res, body, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/create"})
	if err != nil || res.StatusCode != 201 || body != "created" || res.Header.Get("Location") != "/things/1" {
		t.Fatalf("201: %v %+v %q", err, res, body)
	}
	res, body, err = process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/moved"})
	if err != nil || res.StatusCode != 302 || body != "see elsewhere" || res.Header.Get("Location") != "/elsewhere" {
		t.Fatalf("302: %v %+v %q", err, res, body)
	}
	select {
	case <-followed:
		t.Error("the redirect was followed")
	default:
	}
}

func TestSlowUpstream(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "late but fine")
	})
	h := newHandler(t, Config{URL: srv.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, body, err := process(t, ctx, h, &operation.Request{Method: "GET", Path: "/"})
	if err != nil || res.StatusCode != 200 || body != "late but fine" {
		t.Fatalf("%v %+v %q", err, res, body)
	}
}

// problemOf returns the *operation.Problem err is or wraps.
func problemOf(t *testing.T, err error) *operation.Problem {
	t.Helper()
	var p *operation.Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v (%T) is not a problem", err, err)
	}
	return p
}

func TestServerErrorIsRetryable(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("retry-after"); v != "" {
			w.Header().Set("Retry-After", v)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "  down for maintenance\n")
	})
	h := newHandler(t, Config{URL: srv.URL})
	for _, c := range []struct {
		retryAfter    string
		wantDelay     bool
		min, max      time.Duration
		wantRetryable bool
	}{
		{"", false, 0, 0, true},
		{"2", true, 2 * time.Second, 2 * time.Second, true},
		{date, true, 80 * time.Second, 90 * time.Second, true},
		{"soon", false, 0, 0, true},
		{"-3", false, 0, 0, true},
		{"86400", true, time.Hour, time.Hour, true},
	} {
		_, _, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/", RawQuery: "retry-after=" + strings.ReplaceAll(c.retryAfter, " ", "+")})
		if err == nil {
			t.Fatalf("Retry-After %q: no error", c.retryAfter)
		}
		if worker.IsPermanent(err) {
			t.Errorf("Retry-After %q: permanent", c.retryAfter)
		}
		d, ok := worker.RetryDelay(err)
		if ok != c.wantDelay || d < c.min || d > c.max {
			t.Errorf("Retry-After %q: RetryDelay %v, %v; want %v in [%v, %v]", c.retryAfter, d, ok, c.wantDelay, c.min, c.max)
		}
		p := problemOf(t, err)
		if p.Type != ProblemUpstreamError || p.Title != "Upstream error" || p.Status != 502 ||
			p.Detail != "upstream answered 503: down for maintenance" ||
			p.Extensions["upstreamStatus"] != 503 || p.Extensions["upstreamContentType"] != "text/plain" {
			t.Errorf("Retry-After %q: problem %+v", c.retryAfter, p)
		}
		if _, ok := p.Extensions["upstreamBody"]; ok {
			t.Errorf("upstreamBody set for a text body")
		}
	}
}

func TestTooManyRequestsIsRetryable(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"title": "slow down"}`)
	})
	h := newHandler(t, Config{URL: srv.URL})
	_, _, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/"})
	if err == nil || worker.IsPermanent(err) {
		t.Fatalf("error %v, want a retryable one", err)
	}
	if d, ok := worker.RetryDelay(err); !ok || d != 7*time.Second {
		t.Errorf("RetryDelay %v %v", d, ok)
	}
	p := problemOf(t, err)
	if p.Type != ProblemUpstreamError || p.Status != 502 || p.Extensions["upstreamStatus"] != 429 ||
		p.Detail != `upstream answered 429: {"title": "slow down"}` {
		t.Errorf("problem %+v", p)
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"upstreamBody":{"title":"slow down"}`) {
		t.Errorf("problem JSON %s", b)
	}
}

func TestClientErrorIsPermanent(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5") // ignored: permanent anyway
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"error":"name is required","code":17}`)
		case "/empty":
			w.WriteHeader(http.StatusNotFound)
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "field x is missing")
		}
	})
	h := newHandler(t, Config{URL: srv.URL})

	_, _, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/text"})
	if !worker.IsPermanent(err) {
		t.Fatalf("error %v, want a permanent one", err)
	}
	if _, ok := worker.RetryDelay(err); ok {
		t.Error("a permanent error has a retry delay")
	}
	p := problemOf(t, err)
	if p.Type != ProblemUpstreamRejected || p.Title != "Upstream rejected the request" || p.Status != 400 ||
		p.Detail != "field x is missing" || p.Extensions["upstreamStatus"] != 400 || p.Extensions["upstreamContentType"] != "text/plain" {
		t.Errorf("problem %+v", p)
	}
	if _, ok := p.Extensions["upstreamBody"]; ok {
		t.Error("upstreamBody set for a text body")
	}

	_, _, err = process(t, t.Context(), h, &operation.Request{Method: "POST", Path: "/json"})
	p = problemOf(t, err)
	if !worker.IsPermanent(err) || p.Status != 422 || p.Detail != `{"error":"name is required","code":17}` {
		t.Errorf("422: %v %+v", err, p)
	}
	b, _ := json.Marshal(p)
	var back operation.Problem
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if ub, ok := back.Extensions["upstreamBody"].(map[string]any); !ok || ub["error"] != "name is required" || ub["code"] != 17.0 {
		t.Errorf("upstreamBody after a JSON round trip: %#v (problem %s)", back.Extensions["upstreamBody"], b)
	}

	_, _, err = process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/empty"})
	p = problemOf(t, err)
	if !worker.IsPermanent(err) || p.Status != 404 || p.Detail != "upstream answered 404" {
		t.Errorf("404: %v %+v", err, p)
	}
	if _, ok := p.Extensions["upstreamContentType"]; ok {
		t.Errorf("upstreamContentType set without a Content-Type: %+v", p.Extensions)
	}
}

func TestErrorBodyIsTruncated(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `"ééééé"`) // 12 bytes; the limit cuts the third é
	})
	h := newHandler(t, Config{URL: srv.URL, MaxErrorBody: 6})
	_, _, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/"})
	p := problemOf(t, err)
	if p.Detail != `"éé…` {
		t.Errorf("detail %q", p.Detail)
	}
	if _, ok := p.Extensions["upstreamBody"]; ok {
		t.Error("upstreamBody set for a truncated body")
	}
}

// hanging starts an upstream that never answers and reports, on the
// returned channel, that it saw its request's context canceled.
func hanging(t *testing.T) (*httptest.Server, <-chan struct{}, <-chan struct{}) {
	t.Helper()
	started, canceled := make(chan struct{}, 1), make(chan struct{}, 1)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a closed connection only once the body is read.
		io.Copy(io.Discard, r.Body)
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv, started, canceled
}

func TestDeadlineAbortsUpstream(t *testing.T) {
	srv, _, canceled := hanging(t)
	h := newHandler(t, Config{URL: srv.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := process(t, ctx, h, &operation.Request{Method: "POST", Path: "/", Body: []byte("x")})
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("returned %v after the start, the deadline was 200ms", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || worker.IsPermanent(err) {
		t.Errorf("error %v, want DeadlineExceeded", err)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Error("the upstream did not see its request canceled")
	}
}

func TestDeadlineCauseIsNamed(t *testing.T) {
	srv, _, _ := hanging(t)
	h := newHandler(t, Config{URL: srv.URL})
	cause := errors.New("attempt timed out")
	ctx, cancel := context.WithTimeoutCause(t.Context(), 100*time.Millisecond, cause)
	defer cancel()
	_, _, err := process(t, ctx, h, &operation.Request{Method: "GET", Path: "/"})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cause) {
		t.Errorf("error %v, want DeadlineExceeded and its cause", err)
	}
}

func TestCancelAbortsUpstream(t *testing.T) {
	srv, started, canceled := hanging(t)
	h := newHandler(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	start := time.Now()
	_, _, err := process(t, ctx, h, &operation.Request{Method: "GET", Path: "/"})
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("returned %v after the start", elapsed)
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want Canceled", err)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Error("the upstream did not see its request canceled")
	}
}

func TestCancelWhileStreamingTheResult(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	h := newHandler(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(t.Context())
	res, err := h.Process(ctx, task(&operation.Request{Method: "GET", Path: "/"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Reader.(io.Closer).Close()
	buf := make([]byte, len("first part"))
	if _, err := io.ReadFull(res.Reader, buf); err != nil || string(buf) != "first part" {
		t.Fatalf("read %q %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(res.Reader); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want Canceled", err)
	}
}

func TestClosedPortIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := newHandler(t, Config{URL: "http://" + addr + "/api"})
	_, _, err = process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/"})
	if err == nil || worker.IsPermanent(err) {
		t.Fatalf("error %v, want a retryable one", err)
	}
	if !strings.Contains(err.Error(), "the upstream could not be reached") {
		t.Errorf("error %q", err)
	}
	if _, ok := worker.RetryDelay(err); ok {
		t.Error("a connection error has a retry delay")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v looks like a context error", err)
	}
	var p *operation.Problem
	if !errors.As(err, &p) || p.Type != ProblemUpstreamUnreachable || p.Status != http.StatusBadGateway {
		t.Errorf("a connection error's problem: %+v", p)
	}
}

func TestBadStoredRequestIsPermanent(t *testing.T) {
	srv, _ := recorder(t, nil)
	h := newHandler(t, Config{URL: srv.URL})
	for _, tk := range []*worker.Task{
		{ID: "x", Attempt: 1},
		task(&operation.Request{Method: "BAD METHOD", Path: "/"}),
	} {
		if _, err := h.Process(t.Context(), tk, nil); !worker.IsPermanent(err) {
			t.Errorf("task %+v: error %v, want a permanent one", tk, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{URL: "/relative/path"},
		{URL: "example.com/api"},
		{URL: "ftp://example.com/"},
		{URL: "http:opaque"},
		{URL: "http://"},
		{URL: "http:///path"},
		{URL: "https://example.com/api#frag"},
		{URL: "https://example.com/api#"},
		{URL: "https://example.com/api?key=1"},
		{URL: "https://user:pass@example.com/"},
		{URL: "http://example.com/%zz"},
		{URL: "http://exa mple.com/"},
		{URL: "http://example.com", MaxErrorBody: -1},
		{URL: "http://example.com", Header: http.Header{"Bad Name": {"x"}}},
		{URL: "http://example.com", Header: http.Header{"X-Key": {"a\r\nInjected: 1"}}},
		{URL: "http://example.com", Header: http.Header{"Connection": {"close"}}},
		{URL: "http://example.com", Header: http.Header{"Host": {"other.example"}}},
	} {
		if h, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = %v, want an error", cfg, h)
		}
	}
	for _, u := range []string{"http://example.com", "https://example.com:8443/api/", "HTTP://127.0.0.1:1/a%2Fb", "http://[::1]:80"} {
		if _, err := New(Config{URL: u, Header: http.Header{"X-Api-Key": {"k"}}}); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"3600", time.Hour, true},
		{"3601", time.Hour, true},
		{"99999999999999999999999", time.Hour, true},
		{"1.5", 0, false},
		{"+5", 0, false},
		{"-5", 0, false},
		{"Fri, 02 Jan 2026 03:05:05 GMT", time.Minute, true},
		{"Friday, 02-Jan-26 03:05:05 GMT", time.Minute, true},
		{"Fri Jan  2 03:05:05 2026", time.Minute, true},
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0, true},
		{"Sat, 03 Jan 2026 03:04:05 GMT", time.Hour, true},
		{"tomorrow", 0, false},
	} {
		d, ok := retryAfter(c.v, now)
		if d != c.want || ok != c.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", c.v, d, ok, c.want, c.ok)
		}
	}
}

// The client's Accept-Encoding is not forwarded: the transport asks for
// gzip itself and decompresses, so the stored result is the plain bytes
// and carries no Content-Encoding.
func TestCompressedUpstreamStoredPlain(t *testing.T) {
	var sawEncoding string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawEncoding = r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Type", "text/plain")
		if strings.Contains(sawEncoding, "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, "plain words")
			zw.Close()
			return
		}
		io.WriteString(w, "plain words")
	}))
	defer srv.Close()
	h := newHandler(t, Config{URL: srv.URL})
	res, body, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/",
		Header: http.Header{"Accept-Encoding": {"br, gzip"}}})
	if err != nil {
		t.Fatal(err)
	}
	if sawEncoding != "gzip" || body != "plain words" || res.Header.Get("Content-Encoding") != "" {
		t.Fatalf("upstream saw Accept-Encoding %q; result %q with headers %v", sawEncoding, body, res.Header)
	}
}

// The finding: a stored path with dot segments reached the
// upstream as /public/v1/reports/../../../admin/drop. Such a path now
// fails permanently and nothing is sent; other paths arrive escaped, byte
// for byte, under the prefix.
func TestPathStaysUnderPrefix(t *testing.T) {
	srv, got := recorder(t, nil)
	h := newHandler(t, Config{URL: srv.URL + "/public"})
	for _, p := range []string{
		"/v1/reports/../../../admin/drop",
		"/../internal/secret",
		"/v1/./x",
		"/v1/..",
		`/v1\..\admin`,
		"/v1/\x00",
		"..",
	} {
		_, err := h.Process(t.Context(), task(&operation.Request{Method: "POST", Path: p}), nil)
		if !worker.IsPermanent(err) {
			t.Errorf("path %q: error %v, want a permanent one", p, err)
		}
		select {
		case r := <-got:
			t.Errorf("path %q reached the upstream as %q", p, r.path)
		default:
		}
	}
	for _, c := range []struct{ path, wantPath, wantRaw string }{
		{"/v1/reports/a%2Fb", "/public/v1/reports/a%2Fb", "/public/v1/reports/a%252Fb"},
		{"/v1/items/a?b", "/public/v1/items/a?b", "/public/v1/items/a%3Fb"},
		{"/v1/items/a b/..x", "/public/v1/items/a b/..x", "/public/v1/items/a%20b/..x"},
	} {
		if _, _, err := process(t, t.Context(), h, &operation.Request{Method: "POST", Path: c.path}); err != nil {
			t.Fatalf("path %q: %v", c.path, err)
		}
		r := <-got
		esc := r.rawPath
		if esc == "" {
			esc = (&url.URL{Path: r.path}).EscapedPath()
		}
		if r.path != c.wantPath || esc != c.wantRaw {
			t.Errorf("path %q: upstream got %q (escaped %q), want %q (escaped %q)", c.path, r.path, esc, c.wantPath, c.wantRaw)
		}
	}
}

func TestCheckUnderBase(t *testing.T) {
	for _, c := range []struct {
		base, path string
		ok         bool
	}{
		{"/public", "/v1/x", true},
		{"/public", "", true},
		{"", "/v1/x", true},
		{"/public/", "/", true},
		{"/public", "/..", false},
		{"/public", "/a/../../b", false},
		{"", "/../x", false},
		{"/public", "/a/./b", false},
	} {
		err := checkUnderBase(&url.URL{Path: c.base}, c.path)
		if (err == nil) != c.ok {
			t.Errorf("base %q path %q: err %v, want ok=%v", c.base, c.path, err, c.ok)
		}
	}
}
