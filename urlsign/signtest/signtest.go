// Package signtest is the conformance suite every URL signer driver must
// pass, through the portable *urlsign.Signer over a result store, in the
// shape of gocloud.dev's drivertest packages:
//
//	func TestSignerConformance(t *testing.T) {
//		signtest.RunConformanceTests(t, signtest.Harness{
//			Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) { ... },
//		})
//	}
//
// Signed URLs are fetched over HTTP. When the signer has a handler
// (Signer.Handler), the suite mounts it at its prefix on an
// httptest.Server (mux.Handle(prefix, h), request paths unchanged) and
// resolves the URLs against it; otherwise the URLs must be absolute and
// are fetched as they are.
//
// Self-served signers must answer exactly as Signer.Handler says: 403 for
// a URL that is not validly signed or has expired, 404 for a validly
// signed URL of a missing result, 405 for methods other than GET and HEAD,
// all as application/problem+json. Others may refuse with any 4xx (object
// stores answer 400, 403 or 404 depending on what is wrong).
//
// Requirements on signed URLs the suite checks that are not obvious: every
// query parameter must be covered by the signature (or be it), so changing
// or dropping any one of them gets the URL refused; SignedURL must accept
// an expiry in the past (self-served signers), or may refuse it (others).
package signtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
	"github.com/arrhq/arr/urlsign"
)

// Harness says how to open the signer under test.
type Harness struct {
	// Open returns an open result store and an open signer of URLs to its
	// results (as the engine of the store's URL hands out). It is called
	// once per subtest, and the suite closes the signer, then the store,
	// when the subtest ends. Stores from different calls may share one
	// backend (directory, bucket, container) and one keyring: every subtest
	// uses its own random keys. Required.
	Open func(t *testing.T) (*resultstore.Store, *urlsign.Signer)

	// HTTPClient fetches signed URLs of drivers that do not serve their own.
	// Default: a client with a 60-second timeout.
	HTTPClient *http.Client
}

// RunConformanceTests runs the suite against the driver h opens. Subtests
// run in parallel; RunConformanceTests returns when all have finished.
func RunConformanceTests(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("signtest: Harness.Open is nil")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"OverwrittenResultServed", testOverwrite},
		{"BinaryBody", testBinary},
		{"EmptyBody", testEmpty},
		{"LargeBody", testLarge},
		{"KeyNames", testKeyNames},
		{"InvalidKey", testInvalidKey},
		{"SignedURLGet", testSignedGet},
		{"SignedURLHead", testSignedHead},
		{"SignedURLRange", testSignedRange},
		{"SignedURLConditional", testSignedConditional},
		{"SignedURLExpired", testSignedExpired},
		{"SignedURLTampered", testSignedTampered},
		{"SignedURLMovedToOtherKey", testSignedMoved},
		{"SignedURLExtendedExpiry", testSignedExtended},
		{"SignedURLBeyondMaxTTL", testSignedBeyondMaxTTL},
		{"SignedURLDeletedResult", testSignedDeleted},
		{"SignedURLMethods", testSignedMethods},
		{"Concurrent", testConcurrent},
	}
	t.Run("Conformance", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, newEnv(t, h))
			})
		}
	})
}

// env is one subtest's store, signer and the way to fetch its URLs.
type env struct {
	*resultstoretest.Store
	s      *resultstore.Store
	sg     *urlsign.Signer
	self   bool   // the driver serves its own URLs
	prefix string // its Prefix, when self
	base   *url.URL
	client *http.Client
}

func newEnv(t *testing.T, h Harness) *env {
	s, sg := h.Open(t)
	if s == nil || sg == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close of the store: %v", err)
		}
	})
	t.Cleanup(func() { // runs before the store's Close
		if err := sg.Close(); err != nil {
			t.Errorf("Close of the signer: %v", err)
		}
	})
	e := &env{Store: resultstoretest.NewStore(s), s: s, sg: sg, client: h.HTTPClient}
	if e.client == nil {
		e.client = &http.Client{Timeout: 60 * time.Second}
	}
	if prefix, hd := sg.Handler(); hd != nil {
		e.self = true
		e.prefix = prefix
		if !strings.HasPrefix(e.prefix, "/") || !strings.HasSuffix(e.prefix, "/") {
			t.Fatalf("Handler() prefix = %q; want a path beginning and ending with /", e.prefix)
		}
		mux := http.NewServeMux()
		mux.Handle(e.prefix, hd)
		ts := httptest.NewServer(mux)
		t.Cleanup(ts.Close) // runs before the signer's Close
		e.base, _ = url.Parse(ts.URL)
		if h.HTTPClient == nil {
			e.client = ts.Client()
		}
	}
	return e
}

func ctx(t *testing.T) context.Context { return t.Context() }

func (e *env) sign(t *testing.T, key string, d time.Duration) string {
	t.Helper()
	u, err := e.sg.SignedURL(ctx(t), key, time.Now().Add(d))
	if err != nil {
		t.Fatalf("SignedURL(%q, %v): %v", key, d, err)
	}
	return u
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// target turns a signed URL into the URL to request.
func (e *env) target(t *testing.T, signed string) string {
	t.Helper()
	u, err := e.targetErr(signed)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) targetErr(signed string) (string, error) {
	u, err := url.Parse(signed)
	if err != nil {
		return "", fmt.Errorf("signed URL %q does not parse: %v", signed, err)
	}
	if !e.self {
		if !u.IsAbs() {
			return "", fmt.Errorf("signed URL %q is relative, but the signer has no handler", signed)
		}
		return signed, nil
	}
	if !strings.HasPrefix(u.EscapedPath(), e.prefix) {
		return "", fmt.Errorf("signed URL %q is not under the handler's prefix %q", signed, e.prefix)
	}
	v := *e.base
	v.Path, v.RawPath, v.RawQuery = u.Path, u.RawPath, u.RawQuery
	return v.String(), nil
}

func (e *env) fetch(t *testing.T, method, signed string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, e.target(t, signed), nil)
	if err != nil {
		t.Fatalf("request for %q: %v", signed, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, signed, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, signed, err)
	}
	return response{res.StatusCode, res.Header, b}
}

// expectServed fetches signed and checks a 200 with want and the
// attributes.
func (e *env) expectServed(t *testing.T, signed string, want []byte, a driver.Attributes) {
	t.Helper()
	r := e.fetch(t, http.MethodGet, signed)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200; body %s", signed, r.status, resultstoretest.Show(r.body))
	}
	if !bytes.Equal(r.body, want) {
		t.Errorf("GET %s: body %s, want %s", signed, resultstoretest.Show(r.body), resultstoretest.Show(want))
	}
	if got := r.header.Get("Content-Type"); got != a.ContentType {
		t.Errorf("GET %s: Content-Type %q, want %q", signed, got, a.ContentType)
	}
	if got := r.header.Get("ETag"); got != a.ETag {
		t.Errorf("GET %s: ETag %s, want %s", signed, got, a.ETag)
	}
}

// expectRefused fetches signed (GET) and checks that it is refused: with
// selfStatus by a self-served signer, with a 4xx by others.
func (e *env) expectRefused(t *testing.T, signed string, selfStatus int, why string) {
	t.Helper()
	r := e.fetch(t, http.MethodGet, signed)
	if e.self {
		if r.status != selfStatus {
			t.Errorf("%s: GET %s: status %d, want %d; body %s", why, signed, r.status, selfStatus, resultstoretest.Show(r.body))
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/problem+json" {
			t.Errorf("%s: GET %s: refused with Content-Type %q, want application/problem+json", why, signed, r.header.Get("Content-Type"))
		}
		return
	}
	if r.status < 400 || r.status > 499 {
		t.Errorf("%s: GET %s: status %d, want a 4xx refusal; body %s", why, signed, r.status, resultstoretest.Show(r.body))
	}
}

// --- the tests -----------------------------------------------------------

// testOverwrite: a URL names the key, not a version: one signed before an
// overwrite serves the new value.
func testOverwrite(t *testing.T, e *env) {
	k := e.Key("overwrite")
	e.MustPut(t, k, []byte("a rather long first value that is longer than the second"), "text/plain")
	u := e.sign(t, k, 10*time.Minute) // signed before the overwrite: a URL names the key, not a version
	a := e.MustPut(t, k, []byte(`{"short":2}`), "application/json")
	e.ExpectContent(t, k, []byte(`{"short":2}`), a)
	e.expectServed(t, u, []byte(`{"short":2}`), a)
}

func testBinary(t *testing.T, e *env) {
	k := e.Key("binary")
	body := make([]byte, 0, 3*256)
	for i := range 3 * 256 {
		body = append(body, byte(i*7+i/256))
	}
	body = append(body, 0, 0, '\r', '\n', 0xff, 0xfe)
	a := e.MustPut(t, k, body, "application/octet-stream")
	e.ExpectContent(t, k, body, a)
	e.expectServed(t, e.sign(t, k, time.Minute), body, a)
}

func testEmpty(t *testing.T, e *env) {
	k := e.Key("empty")
	a := e.MustPut(t, k, nil, "text/plain")
	e.ExpectContent(t, k, []byte{}, a)
	u := e.sign(t, k, time.Minute)
	e.expectServed(t, u, []byte{}, a)
	r := e.fetch(t, http.MethodHead, u)
	if r.status != http.StatusOK {
		t.Errorf("HEAD of an empty result: status %d", r.status)
	}
}

func testLarge(t *testing.T, e *env) {
	const size = resultstoretest.LargeSize
	k, want := e.PutLarge(t)

	u := e.sign(t, k, 10*time.Minute)
	res := e.fetch(t, http.MethodGet, u)
	if res.status != http.StatusOK || !bytes.Equal(res.body, want) {
		t.Fatalf("GET of 5 MiB: status %d, %d bytes, equal %v", res.status, len(res.body), bytes.Equal(res.body, want))
	}
	res = e.fetch(t, http.MethodGet, u, "Range", fmt.Sprintf("bytes=%d-", size-10))
	if res.status != http.StatusPartialContent || !bytes.Equal(res.body, want[size-10:]) {
		t.Fatalf("GET last 10 bytes: status %d, body %s", res.status, resultstoretest.Show(res.body))
	}
}

func testKeyNames(t *testing.T, e *env) {
	for i, name := range resultstoretest.KeyNames {
		k := e.Key(name)
		body := []byte(fmt.Sprintf("body %d of %q", i, name))
		a := e.MustPut(t, k, body, "text/plain")
		e.ExpectContent(t, k, body, a)
		e.expectServed(t, e.sign(t, k, 5*time.Minute), body, a)
	}
	// All are distinct: read them again after all were written.
	for i, name := range resultstoretest.KeyNames {
		got, _ := e.Read(t, e.Key(name))
		if want := fmt.Sprintf("body %d of %q", i, name); string(got) != want {
			t.Errorf("key %q holds %q, want %q", name, got, want)
		}
	}
}

func testInvalidKey(t *testing.T, e *env) {
	if _, err := e.sg.SignedURL(ctx(t), "", time.Now().Add(time.Minute)); err == nil {
		t.Error("SignedURL with an empty key succeeded")
	}
}

func testSignedGet(t *testing.T, e *env) {
	k := e.Key("get/result.blobdata")
	body := []byte(`{"id":"42","customername":"Contoso"}`)
	a := e.MustPut(t, k, body, "application/json")
	u := e.sign(t, k, 10*time.Minute)
	e.expectServed(t, u, body, a)
	// The URL can be used more than once until it expires.
	e.expectServed(t, u, body, a)
}

func testSignedHead(t *testing.T, e *env) {
	k := e.Key("head")
	body := []byte("head of the result")
	a := e.MustPut(t, k, body, "text/plain")
	r := e.fetch(t, http.MethodHead, e.sign(t, k, time.Minute))
	if r.status != http.StatusOK {
		t.Fatalf("HEAD: status %d", r.status)
	}
	if len(r.body) != 0 {
		t.Errorf("HEAD: got a body %s", resultstoretest.Show(r.body))
	}
	if got := r.header.Get("Content-Length"); got != fmt.Sprint(len(body)) {
		t.Errorf("HEAD: Content-Length %q, want %d", got, len(body))
	}
	if got := r.header.Get("ETag"); got != a.ETag {
		t.Errorf("HEAD: ETag %s, want %s", got, a.ETag)
	}
	if got := r.header.Get("Content-Type"); got != a.ContentType {
		t.Errorf("HEAD: Content-Type %q, want %q", got, a.ContentType)
	}
}

func testSignedRange(t *testing.T, e *env) {
	k := e.Key("range")
	body := []byte("0123456789")
	e.MustPut(t, k, body, "text/plain")
	r := e.fetch(t, http.MethodGet, e.sign(t, k, time.Minute), "Range", "bytes=2-5")
	if r.status != http.StatusPartialContent {
		t.Fatalf("Range bytes=2-5: status %d, want 206", r.status)
	}
	if string(r.body) != "2345" {
		t.Errorf("Range bytes=2-5: body %q, want 2345", r.body)
	}
	if got := r.header.Get("Content-Range"); got != "bytes 2-5/10" {
		t.Errorf("Content-Range %q, want bytes 2-5/10", got)
	}
}

func testSignedConditional(t *testing.T, e *env) {
	k := e.Key("conditional")
	a := e.MustPut(t, k, []byte("cache me"), "text/plain")
	u := e.sign(t, k, time.Minute)
	r := e.fetch(t, http.MethodGet, u, "If-None-Match", a.ETag)
	if r.status != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: status %d, want 304", r.status)
	}
	if len(r.body) != 0 {
		t.Errorf("304 with a body %s", resultstoretest.Show(r.body))
	}
	r = e.fetch(t, http.MethodGet, u, "If-None-Match", `"not-the-etag"`)
	if r.status != http.StatusOK || string(r.body) != "cache me" {
		t.Errorf("If-None-Match with another ETag: status %d body %s, want 200", r.status, resultstoretest.Show(r.body))
	}
}

func testSignedExpired(t *testing.T, e *env) {
	k := e.Key("expired")
	e.MustPut(t, k, []byte("too late"), "text/plain")
	u, err := e.sg.SignedURL(ctx(t), k, time.Now().Add(-time.Minute))
	if err != nil {
		if e.self {
			t.Fatalf("SignedURL with an expiry in the past: %v; self-served signers must sign it (and refuse it when used)", err)
		}
		return // refusing to sign is a refusal too
	}
	e.expectRefused(t, u, http.StatusForbidden, "expired URL")
}

// splitQuery splits a raw query into its name=value parts, in order.
func splitQuery(raw string) []string {
	if raw == "" {
		return nil
	}
	return strings.Split(raw, "&")
}

func withQuery(t *testing.T, signed string, parts []string) string {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery = strings.Join(parts, "&")
	return u.String()
}

// flipFirst changes the first character of s to another of its class.
func flipFirst(s string) string {
	if s == "" {
		return "x"
	}
	c := s[0]
	switch {
	case '0' <= c && c <= '9':
		c = '0' + (c-'0'+1)%10
	case 'a' <= c && c <= 'z':
		c = 'a' + (c-'a'+1)%26
	case 'A' <= c && c <= 'Z':
		c = 'A' + (c-'A'+1)%26
	default:
		c = 'A'
	}
	return string(c) + s[1:]
}

func testSignedTampered(t *testing.T, e *env) {
	k := e.Key("tamper")
	a := e.MustPut(t, k, []byte("guarded"), "text/plain")
	u := e.sign(t, k, 10*time.Minute)
	e.expectServed(t, u, []byte("guarded"), a)
	pu, _ := url.Parse(u)
	parts := splitQuery(pu.RawQuery)
	if len(parts) == 0 {
		t.Fatalf("signed URL %q has no query", u)
	}
	for i, p := range parts {
		name, val, _ := strings.Cut(p, "=")
		uv, err := url.QueryUnescape(val)
		if err != nil {
			uv = val
		}
		changed := append([]string(nil), parts...)
		changed[i] = name + "=" + url.QueryEscape(flipFirst(uv))
		e.expectRefused(t, withQuery(t, u, changed), http.StatusForbidden, "parameter "+name+" changed")
		dropped := append(append([]string(nil), parts[:i]...), parts[i+1:]...)
		e.expectRefused(t, withQuery(t, u, dropped), http.StatusForbidden, "parameter "+name+" dropped")
		doubled := append(append([]string(nil), parts...), name+"="+url.QueryEscape(flipFirst(uv)))
		e.expectRefused(t, withQuery(t, u, doubled), http.StatusForbidden, "parameter "+name+" given twice")
	}
	e.expectRefused(t, withQuery(t, u, nil), http.StatusForbidden, "query removed")
	// The result is still there and the genuine URL still works.
	e.expectServed(t, u, []byte("guarded"), a)
}

func testSignedMoved(t *testing.T, e *env) {
	ka, kb := e.Key("moved/a"), e.Key("moved/b")
	aa := e.MustPut(t, ka, []byte("result a"), "text/plain")
	e.MustPut(t, kb, []byte("result b"), "text/plain")
	ua, ub := e.sign(t, ka, 10*time.Minute), e.sign(t, kb, 10*time.Minute)
	pa, _ := url.Parse(ua)
	pb, _ := url.Parse(ub)
	moved := *pb
	moved.RawQuery = pa.RawQuery // a's signature on b's path
	e.expectRefused(t, moved.String(), http.StatusForbidden, "signature of another key")
	longer := *pa
	longer.Path, longer.RawPath = pa.Path+"x", ""
	e.expectRefused(t, longer.String(), http.StatusForbidden, "path extended")
	parent := *pa
	parent.Path, parent.RawPath = pa.Path[:strings.LastIndex(pa.Path, "/")+1]+"b", ""
	e.expectRefused(t, parent.String(), http.StatusForbidden, "last segment replaced")
	e.expectServed(t, ua, []byte("result a"), aa)
}

func testSignedExtended(t *testing.T, e *env) {
	k := e.Key("extend")
	a := e.MustPut(t, k, []byte("short-lived"), "text/plain")
	short, long := e.sign(t, k, 2*time.Minute), e.sign(t, k, 50*time.Minute)
	ps, _ := url.Parse(short)
	pl, _ := url.Parse(long)
	sp, lp := splitQuery(ps.RawQuery), splitQuery(pl.RawQuery)
	lv := map[string]string{}
	for _, p := range lp {
		n, v, _ := strings.Cut(p, "=")
		lv[n] = v
	}
	differ := 0
	for i, p := range sp {
		n, v, _ := strings.Cut(p, "=")
		if w, ok := lv[n]; ok && w != v {
			differ++
			hybrid := append([]string(nil), sp...)
			hybrid[i] = n + "=" + w // one parameter of the longer URL in the shorter one
			e.expectRefused(t, withQuery(t, short, hybrid), http.StatusForbidden, "parameter "+n+" taken from a longer-lived URL")
		}
	}
	if differ == 0 {
		t.Errorf("URLs with expiries 2 and 50 minutes away have the same query %q", ps.RawQuery)
	}
	if e.self {
		// The expiry moved by an hour, with the original signature.
		q := ps.Query()
		if se := q.Get("se"); se != "" {
			hybrid := append([]string(nil), sp...)
			for i, p := range hybrid {
				if strings.HasPrefix(p, "se=") {
					hybrid[i] = "se=" + fmt.Sprint(mustAtoi(t, se)+3600)
				}
			}
			e.expectRefused(t, withQuery(t, short, hybrid), http.StatusForbidden, "expiry extended by an hour")
		}
	}
	e.expectServed(t, short, []byte("short-lived"), a)
}

// testSignedBeyondMaxTTL: once the signer's MaxTTL is set, it signs no
// URL expiring later, and a self-served signer refuses a validly signed
// URL that expires later (one signed before, as with a leaked key),
// while shorter-lived URLs keep working.
func testSignedBeyondMaxTTL(t *testing.T, e *env) {
	k := e.Key("maxttl")
	a := e.MustPut(t, k, []byte("bounded"), "text/plain")
	long, short := e.sign(t, k, 50*time.Minute), e.sign(t, k, 5*time.Minute)
	e.sg.SetMaxTTL(10 * time.Minute)
	if got := e.sg.MaxTTL(); got != 10*time.Minute {
		t.Errorf("MaxTTL() = %v after SetMaxTTL(10m)", got)
	}
	if u, err := e.sg.SignedURL(ctx(t), k, time.Now().Add(20*time.Minute)); !errors.Is(err, urlsign.ErrTooLong) {
		t.Errorf("SignedURL 20 minutes ahead under a 10-minute MaxTTL = %q, %v; want ErrTooLong", u, err)
	}
	if e.self {
		e.expectRefused(t, long, http.StatusForbidden, "validly signed URL expiring 50 minutes ahead, MaxTTL 10 minutes")
	}
	e.expectServed(t, short, []byte("bounded"), a)
	e.expectServed(t, e.sign(t, k, 10*time.Minute-time.Second), []byte("bounded"), a)
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("se=%q is not a number", s)
	}
	return n
}

func testSignedDeleted(t *testing.T, e *env) {
	k := e.Key("deleted")
	e.MustPut(t, k, []byte("gone soon"), "text/plain")
	u := e.sign(t, k, 10*time.Minute)
	if err := e.s.Delete(ctx(t), k); err != nil {
		t.Fatal(err)
	}
	e.expectRefused(t, u, http.StatusNotFound, "deleted result")
	e.expectRefused(t, e.sign(t, e.Key("never-written"), time.Minute), http.StatusNotFound, "result never written")
}

func testSignedMethods(t *testing.T, e *env) {
	k := e.Key("methods")
	a := e.MustPut(t, k, []byte("read only"), "text/plain")
	u := e.sign(t, k, time.Minute)
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch} {
		r := e.fetch(t, m, u)
		switch {
		case e.self && r.status != http.StatusMethodNotAllowed:
			t.Errorf("%s of a signed URL: status %d, want 405", m, r.status)
		case !e.self && (r.status < 400 || r.status > 499):
			t.Errorf("%s of a signed URL: status %d, want a 4xx", m, r.status)
		}
	}
	e.ExpectContent(t, k, []byte("read only"), a)
}

func testConcurrent(t *testing.T, e *env) {
	e.PutReadConcurrently(t, func(k string, i int, body []byte) {
		if i%2 != 0 {
			return
		}
		u, err := e.sg.SignedURL(ctx(t), k, time.Now().Add(time.Minute))
		if err != nil {
			t.Errorf("SignedURL(%q): %v", k, err)
			return
		}
		target, err := e.targetErr(u)
		if err != nil {
			t.Error(err)
			return
		}
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, target, nil)
		res, err := e.client.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			return
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			t.Errorf("GET %s: status %d, %d bytes, err %v", u, res.StatusCode, len(got), err)
		}
	})
}
