package fileresult

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/urlsign/signtest"
)

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Run("FreshDirectory", func(t *testing.T) {
		resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
			Open: func(t *testing.T) driver.Store {
				s, err := Open(filepath.Join(t.TempDir(), "results"), Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		})
	})
	t.Run("SharedDirectory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "shared", "results")
		resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
			Open: func(t *testing.T) driver.Store {
				s, err := Open(dir, Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		})
	})
}

// openBoth opens, from one URL, a result store and its signer of their own,
// as the file engine opens its ports (the store by the URL's directory, the
// signer by its options) and as another process opening the URL would: not
// the ports of this process's engine for the URL, since the signer suite
// closes the store and signer it is given, and an engine's ports are
// released with the engine.
func openBoth(t *testing.T, u string) (*resultstore.Store, *urlsign.Signer) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := parseURL(pu)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := resultstore.New(s)
	sg, err := signerFor(t.Context(), pu, rs)
	if err != nil {
		rs.Close()
		t.Fatal(err)
	}
	return rs, sg
}

func TestSignerConformance(t *testing.T) {
	t.Run("FreshDirectory", func(t *testing.T) {
		signtest.RunConformanceTests(t, signtest.Harness{
			Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
				return openBoth(t, "file://"+filepath.ToSlash(filepath.Join(t.TempDir(), "results")))
			},
		})
	})
	t.Run("SharedDirectory", func(t *testing.T) {
		// Several stores and signers (as several processes would) on one
		// directory and one keyring, with a custom prefix.
		dir := filepath.Join(t.TempDir(), "shared", "results")
		signtest.RunConformanceTests(t, signtest.Harness{
			Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
				return openBoth(t, "file://"+filepath.ToSlash(dir)+"?prefix=/r/x/")
			},
		})
	})
}

// remote hides the signer's handler and hands out absolute URLs served by
// another server, as an object store's signer does: it runs the suite's
// path for such signers (any 4xx refusal, URLs fetched as they are).
type remote struct {
	d    urlsign.Driver
	base string
}

func (r remote) SignedURL(ctx context.Context, key string, exp time.Time) (string, error) {
	u, err := r.d.SignedURL(ctx, key, exp)
	return r.base + u, err
}
func (r remote) Close() error { return r.d.Close() }

func TestSignerConformanceAbsoluteURLs(t *testing.T) {
	signtest.RunConformanceTests(t, signtest.Harness{
		Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
			rs, sg := openBoth(t, "file://"+filepath.ToSlash(filepath.Join(t.TempDir(), "results")))
			mux := http.NewServeMux()
			mux.Handle(sg.Handler())
			ts := httptest.NewServer(mux)
			t.Cleanup(ts.Close)
			return rs, urlsign.New(remote{d: sg.Driver(), base: ts.URL}, rs)
		},
	})
}

// signer is a file store and its signer, and the engine that holds them
// (nil when they were opened without one).
type signer struct {
	*Store
	e  *engine.Engine
	rs *resultstore.Store
	sg *urlsign.Signer
	h  *urlsign.HMAC
}

// openSigner opens the file engine of the store at dir, with the query
// options q (e.g. "?max_url_lifetime=1h"), and its result store and
// signer, as a server does; the engine is closed at the end of the test.
func openSigner(t testing.TB, dir, q string) *signer {
	t.Helper()
	u := "file://" + filepath.ToSlash(dir) + q
	e, err := engine.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("engine.Open(%q): %v", u, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	rs, err := e.Results(context.Background())
	if err != nil {
		t.Fatalf("results of %q: %v", u, err)
	}
	sg, err := e.Signer(context.Background())
	if err != nil {
		t.Fatalf("signer of %q: %v", u, err)
	}
	return &signer{Store: rs.Driver().(*Store), e: e, rs: rs, sg: sg, h: sg.Driver().(*urlsign.HMAC)}
}

// keyFile returns the path of s's keyring file.
func (s *signer) keyFile() string { return s.h.Keys().(*urlsign.FileKeys).Path() }

// serve runs the signer's handler on a request for target (path and
// query).
func serve(s *signer, method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	_, h := s.sg.Handler()
	h.ServeHTTP(rec, req)
	return rec
}

func put(t testing.TB, s driver.Store, key, body, ct string) driver.Attributes {
	t.Helper()
	a, err := s.Put(context.Background(), key, strings.NewReader(body), ct)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return a
}

func sign(t testing.TB, s *signer, key string, d time.Duration) string {
	t.Helper()
	u, err := s.sg.SignedURL(context.Background(), key, time.Now().Add(d))
	if err != nil {
		t.Fatalf("SignedURL(%q): %v", key, err)
	}
	return u
}

func problemOf(t *testing.T, rec *httptest.ResponseRecorder) operation.Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("refusal Content-Type %q, want application/problem+json", ct)
	}
	var p operation.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body.Bytes(), err)
	}
	if p.Type == "" || p.Title == "" || p.Status != rec.Code || p.Detail == "" {
		t.Errorf("problem %+v lacks type, title, status %d or detail", p, rec.Code)
	}
	return p
}

func TestSignedURLFormat(t *testing.T) {
	s := openSigner(t, filepath.Join(t.TempDir(), "results"), "")
	exp := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	u, err := s.sg.SignedURL(context.Background(), "dir/a b+c/ü?#.json", exp)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if pu.IsAbs() || pu.Host != "" {
		t.Errorf("URL %q is not relative", u)
	}
	if want := "/blobs/dir/a%20b+c/%C3%BC%3F%23.json"; pu.EscapedPath() != want {
		t.Errorf("path %q, want %q", pu.EscapedPath(), want)
	}
	q := strings.Split(pu.RawQuery, "&")
	if len(q) != 3 || !strings.HasPrefix(q[0], "se=") || !strings.HasPrefix(q[1], "kid=") || !strings.HasPrefix(q[2], "sig=") {
		t.Fatalf("query %q, want se=…&kid=…&sig=…", pu.RawQuery)
	}
	if q[0] != fmt.Sprintf("se=%d", exp.Unix()) || q[1] != "kid="+s.h.ActiveKeyID() {
		t.Errorf("query %q: want se=%d and kid=%s", pu.RawQuery, exp.Unix(), s.h.ActiveKeyID())
	}
	if sig, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(q[2], "sig=")); err != nil || len(sig) != 32 {
		t.Errorf("sig is not an unpadded base64url SHA-256 HMAC: %q", q[2])
	}

	if _, err := s.sg.SignedURL(context.Background(), "k", time.Time{}); err == nil {
		t.Error("SignedURL with a zero expiry succeeded")
	}
	if _, err := s.sg.SignedURL(context.Background(), "k", time.Now().Add(urlsign.DefaultMaxURLLifetime+time.Hour)); err == nil {
		t.Error("SignedURL beyond MaxURLLifetime succeeded")
	}
}

func TestServedHeaders(t *testing.T) {
	s := openSigner(t, filepath.Join(t.TempDir(), "results"), "")
	tests := []struct {
		key, ct, disposition string
	}{
		{"data/res.json", "application/json", `attachment; filename=res.json`},
		{"data/0192e0d2", "application/json", `attachment; filename=0192e0d2.json`},
		{"data/problem", "application/problem+json", `attachment; filename=problem.json`},
		{"data/res", "text/plain; charset=utf-8", `attachment; filename=res.txt`},
		{"data/0192e0d2.blobdata", "application/octet-stream", `attachment; filename=0192e0d2.blobdata`},
		{"data/page.html", "text/html", `attachment; filename=page.html`},
		{"data/image.svg", "image/svg+xml", `attachment; filename=image.svg`},
		{"data/naïve file.bin", "application/x-thing", `attachment; filename*=utf-8''na%C3%AFve%20file.bin`},
	}
	for _, tc := range tests {
		a := put(t, s, tc.key, "<b>body of "+tc.key+"</b>", tc.ct)
		u := sign(t, s, tc.key, 10*time.Minute)
		rec := serve(s, http.MethodGet, u)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", u, rec.Code, rec.Body)
		}
		h := rec.Header()
		want := map[string]string{
			"Content-Type":           tc.ct,
			"ETag":                   a.ETag,
			"X-Content-Type-Options": "nosniff",
			"Content-Disposition":    tc.disposition,
			"Accept-Ranges":          "bytes",
			"Content-Length":         fmt.Sprint(a.Size),
			"Last-Modified":          a.ModTime.UTC().Format(http.TimeFormat),
			"Referrer-Policy":        "no-referrer",
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tc.key, k, got, v)
			}
		}
		var maxAge int
		if _, err := fmt.Sscanf(h.Get("Cache-Control"), "private, max-age=%d", &maxAge); err != nil || maxAge < 590 || maxAge > 600 {
			t.Errorf("%s: Cache-Control %q, want private, max-age≈600", tc.key, h.Get("Cache-Control"))
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: Content-Security-Policy %q", tc.key, h.Get("Content-Security-Policy"))
		}
	}

	a := put(t, s, "cond", "conditional", "text/plain")
	u := sign(t, s, "cond", time.Minute)
	if rec := serve(s, http.MethodGet, u, "If-Modified-Since", a.ModTime.Add(time.Second).UTC().Format(http.TimeFormat)); rec.Code != http.StatusNotModified {
		t.Errorf("If-Modified-Since after ModTime: %d, want 304", rec.Code)
	}
	if rec := serve(s, http.MethodGet, u, "If-None-Match", a.ETag); rec.Code != http.StatusNotModified || rec.Header().Get("ETag") != a.ETag {
		t.Errorf("If-None-Match: %d ETag %q, want 304 with the ETag", rec.Code, rec.Header().Get("ETag"))
	}
	if rec := serve(s, http.MethodGet, u, "Range", "bytes=2-5"); rec.Code != http.StatusPartialContent || rec.Body.String() != "ndit" {
		t.Errorf("Range: %d %q", rec.Code, rec.Body)
	}
	if rec := serve(s, http.MethodHead, u); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "11" {
		t.Errorf("HEAD: %d, body %q, Content-Length %q", rec.Code, rec.Body, rec.Header().Get("Content-Length"))
	}
}

func TestRefusals(t *testing.T) {
	s := openSigner(t, filepath.Join(t.TempDir(), "results"), "")
	put(t, s, "k", "secret bytes", "text/plain")
	good := sign(t, s, "k", time.Minute)
	pu, _ := url.Parse(good)
	q := pu.Query()

	check := func(name string, rec *httptest.ResponseRecorder, status int, typ string) {
		t.Helper()
		if rec.Code != status {
			t.Errorf("%s: status %d, want %d (%s)", name, rec.Code, status, rec.Body)
			return
		}
		if strings.Contains(rec.Body.String(), "secret bytes") {
			t.Errorf("%s: refusal leaks the result", name)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: refusal Cache-Control %q", name, rec.Header().Get("Cache-Control"))
		}
		if p := problemOf(t, rec); p.Type != typ {
			t.Errorf("%s: problem type %q, want %q", name, p.Type, typ)
		}
	}

	expired, _ := s.sg.SignedURL(context.Background(), "k", time.Now().Add(-time.Second))
	check("expired", serve(s, http.MethodGet, expired), 403, urlsign.ProblemSignedURLExpired)
	check("no query", serve(s, http.MethodGet, "/blobs/k"), 403, urlsign.ProblemSignedURLInvalid)
	check("other key", serve(s, http.MethodGet, "/blobs/k2?"+pu.RawQuery), 403, urlsign.ProblemSignedURLInvalid)
	for _, param := range []string{"se", "kid", "sig"} {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set(param, flip(q.Get(param)))
		check("changed "+param, serve(s, http.MethodGet, "/blobs/k?"+v.Encode()), 403, urlsign.ProblemSignedURLInvalid)
	}
	// A signature that differs only in the unused low bits of its last
	// character decodes to the same bytes with a lenient decoder: refused.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := q.Get("sig")
	idx := strings.IndexByte(alphabet, sig[len(sig)-1])
	for j := idx &^ 3; j <= idx|3; j++ {
		if j == idx {
			continue
		}
		v := url.Values{"se": {q.Get("se")}, "kid": {q.Get("kid")}, "sig": {sig[:len(sig)-1] + alphabet[j:j+1]}}
		if rec := serve(s, http.MethodGet, "/blobs/k?"+v.Encode()); rec.Code != 403 {
			t.Errorf("signature with padding bits changed: %d, want 403", rec.Code)
		}
	}
	v := url.Values{"se": {"0" + q.Get("se")}, "kid": {q.Get("kid")}, "sig": {sig}}
	check("non-canonical expiry", serve(s, http.MethodGet, "/blobs/k?"+v.Encode()), 403, urlsign.ProblemSignedURLInvalid)
	check("prefix only", serve(s, http.MethodGet, "/blobs/?"+pu.RawQuery), 403, urlsign.ProblemSignedURLInvalid)

	if err := s.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	check("deleted", serve(s, http.MethodGet, good), 404, urlsign.ProblemResultNotFound)

	rec := serve(s, http.MethodPost, good)
	check("POST", rec, 405, urlsign.ProblemMethodNotAllowed)
	if rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("405 Allow %q", rec.Header().Get("Allow"))
	}
	if rec := serve(s, http.MethodHead, expired); rec.Code != 403 || rec.Body.Len() != 0 {
		t.Errorf("HEAD expired: %d with %d body bytes", rec.Code, rec.Body.Len())
	}
}

func flip(s string) string {
	c := s[0]
	if c == 'A' {
		c = 'B'
	} else if c >= '0' && c <= '8' {
		c++
	} else {
		c = 'A'
	}
	return string(c) + s[1:]
}

func TestURLOpener(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()

	// Absolute path, default keyfile in the parent of the results directory.
	dir := filepath.Join(base, "a", "results")
	st := openSigner(t, dir, "")
	if st.Dir() != dir || st.keyFile() != filepath.Join(base, "a", urlsign.DefaultKeyFileName) {
		t.Errorf("dir %q keyfile %q", st.Dir(), st.keyFile())
	}
	if prefix, h := st.sg.Handler(); prefix != urlsign.DefaultPrefix || h == nil {
		t.Errorf("Handler() = %q, %v", prefix, h)
	}

	// Relative opaque path with options; keyfile directory created 0700.
	t.Chdir(base)
	u := "file:./rel/results?keyfile=keys/k.json&prefix=/res/&max_url_lifetime=1h"
	e2, err := engine.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	st2, err := e2.Results(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sg2, err := e2.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fs2, h2 := st2.Driver().(*Store), sg2.Driver().(*urlsign.HMAC)
	if fs2.Dir() != filepath.Join(base, "rel", "results") || h2.Keys().(*urlsign.FileKeys).Path() != filepath.Join(base, "keys", "k.json") || h2.Prefix() != "/res/" || h2.MaxURLLifetime() != time.Hour {
		t.Errorf("dir %q keyfile %q prefix %q lifetime %v", fs2.Dir(), h2.Keys(), h2.Prefix(), h2.MaxURLLifetime())
	}
	if fi, err := os.Stat(filepath.Join(base, "keys")); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700) {
		t.Errorf("keyfile directory: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(fs2.Dir()); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700) {
		t.Errorf("results directory: %v, %v", fi.Mode(), err)
	}

	// Refused when the engine is opened (the file engine checks the URL's
	// options then, before its result store is opened).
	for _, bad := range []string{
		"file:./x?nope=1",
		"file:./x?prefix=/a/&prefix=/b/",
		"file:",
	} {
		if e, err := engine.Open(ctx, bad); err == nil {
			e.Close()
			t.Errorf("engine.Open(%q) succeeded", bad)
		}
	}
	// The signer's options: the engine and its result store accept and
	// ignore them, the signer refuses bad ones.
	for _, bad := range []string{
		"file:./x?prefix=noslash",
		"file:./x?prefix=/a?b/",
		"file:./x?max_url_lifetime=forever",
		"file:./x?max_url_lifetime=-1h",
		"file:./x?keyfile=x/inside.json",
	} {
		e, err := engine.Open(ctx, bad)
		if err != nil {
			t.Errorf("engine.Open(%q): %v; the signer's options are the store's to ignore", bad, err)
			continue
		}
		if _, err := e.Results(ctx); err != nil {
			t.Errorf("results of %q: %v; the signer's options are the store's to ignore", bad, err)
		}
		if _, err := e.Signer(ctx); err == nil {
			t.Errorf("signer of %q opened", bad)
		}
		e.Close()
	}
}

// openSignerErr is openSigner returning the signer's error; it closes the
// engine before it returns.
func openSignerErr(t *testing.T, dir, q string) error {
	t.Helper()
	ctx := context.Background()
	u := "file://" + filepath.ToSlash(dir) + q
	e, err := engine.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Results(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = e.Signer(ctx)
	return err
}

func TestKeyfileCreatedAndReused(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	s1 := openSigner(t, dir, "")
	kf := filepath.Join(base, urlsign.DefaultKeyFileName)
	fi, err := os.Stat(kf)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("keyfile mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(kf)
	if ring, err := urlsign.Parse(data); err != nil || len(ring.Keys()) != 1 || ring.Active().ID != ring.Keys()[0].ID || len(ring.Active().Secret) != 32 {
		t.Fatalf("keyfile %s: %v", data, err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 2 {
		t.Errorf("stray files beside the keyfile: %v", entries)
	}

	put(t, s1, "r", "reused", "text/plain")
	u := sign(t, s1, "r", time.Hour)
	kid := s1.h.ActiveKeyID()
	if err := s1.e.Close(); err != nil { // its store and signer with it; the URL opens a new engine
		t.Fatal(err)
	}

	s2 := openSigner(t, dir, "")
	if s2.h.ActiveKeyID() != kid {
		t.Errorf("reopened signer signs with %s, want %s", s2.h.ActiveKeyID(), kid)
	}
	if rec := serve(s2, http.MethodGet, u); rec.Code != 200 || rec.Body.String() != "reused" {
		t.Errorf("URL signed before reopen: %d %s", rec.Code, rec.Body)
	}
	data2, _ := os.ReadFile(kf)
	if !bytes.Equal(data, data2) {
		t.Error("reopening rewrote the keyfile")
	}
}

func TestKeyfileRefusals(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	if err := openSignerErr(t, dir, ""); err != nil {
		t.Fatal(err)
	}
	kf := filepath.Join(base, urlsign.DefaultKeyFileName)

	if runtime.GOOS != "windows" {
		if err := os.Chmod(kf, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := openSignerErr(t, dir, ""); err == nil {
			t.Error("a world-readable keyfile was accepted")
		}
		_ = os.Chmod(kf, 0o600)
	}
	if err := openSignerErr(t, dir, "?keyfile="+url.QueryEscape(filepath.Join(dir, "sub", "keys.json"))); err == nil {
		t.Error("a keyfile inside the results directory was accepted")
	}
	if err := openSignerErr(t, "/", ""); err == nil {
		t.Error("results directory / with its keyfile inside it was accepted")
	}

	// A damaged keyfile is refused without quoting it.
	data, _ := os.ReadFile(kf)
	ring, err := urlsign.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString(ring.Active().Secret)
	damaged := bytes.Replace(data, []byte(secret), []byte(secret[:10]+"!"+secret[11:]), 1)
	if err := os.WriteFile(kf, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	err = openSignerErr(t, dir, "")
	if err == nil {
		t.Fatal("a damaged keyfile was accepted")
	}
	if strings.Contains(err.Error(), secret[:10]) || strings.Contains(err.Error(), secret[11:]) {
		t.Errorf("error quotes key material: %v", err)
	}
}

func TestOtherKeyfileRefused(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	a := openSigner(t, dir, "?keyfile="+url.QueryEscape(filepath.Join(base, "a.json")))
	b := openSigner(t, dir, "?keyfile="+url.QueryEscape(filepath.Join(base, "b.json")))
	put(t, a, "shared", "one directory, two keyrings", "text/plain")
	u := sign(t, a, "shared", time.Minute)
	if rec := serve(a, http.MethodGet, u); rec.Code != 200 {
		t.Fatalf("own URL: %d", rec.Code)
	}
	if rec := serve(b, http.MethodGet, u); rec.Code != 403 {
		t.Errorf("URL of another keyring: %d, want 403", rec.Code)
	}
}

// fileHMAC is the signer OpenFile opens for the file store s with its
// keyring in keyfile and MaxURLLifetime life, with the clock now.
func fileHMAC(t *testing.T, s *Store, keyfile string, life time.Duration, now func() time.Time) *signer {
	t.Helper()
	keys, err := urlsign.OpenFileKeys(keyfile, s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := urlsign.NewHMAC(t.Context(), keys, urlsign.HMACOptions{Domain: urlsign.FileDomain, MaxURLLifetime: life, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	rs := resultstore.New(s)
	return &signer{Store: s, rs: rs, sg: urlsign.New(h, rs), h: h}
}

// forge returns the query of a URL for key expiring at se, signed with k
// as the file store's signer signs.
func forge(k *urlsign.Key, key string, se int64) string {
	return urlsign.Scheme{Domain: urlsign.FileDomain}.Sign(k, key, se)
}

func TestRotation(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	kf := filepath.Join(base, urlsign.DefaultKeyFileName)
	st := openStore(t, dir, Options{})
	var sNow, otherNow atomic.Pointer[time.Time]
	clock := func(p *atomic.Pointer[time.Time]) func() time.Time {
		return func() time.Time {
			if t := p.Load(); t != nil {
				return *t
			}
			return time.Now()
		}
	}
	s := fileHMAC(t, st, kf, time.Hour, clock(&sNow))
	put(t, s, "r", "rotating", "text/plain")
	kid1 := s.h.ActiveKeyID()
	u1 := sign(t, s, "r", 30*time.Minute)

	if err := s.sg.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	kid2 := s.h.ActiveKeyID()
	if kid2 == kid1 {
		t.Fatal("rotation kept the active key")
	}
	u2 := sign(t, s, "r", 30*time.Minute)
	if !strings.Contains(u2, "kid="+kid2+"&") {
		t.Errorf("URL after rotation %q does not use kid %s", u2, kid2)
	}
	for _, u := range []string{u1, u2} {
		if rec := serve(s, http.MethodGet, u); rec.Code != 200 {
			t.Errorf("GET %s after rotation: %d", u, rec.Code)
		}
	}
	if fi, _ := os.Stat(kf); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("keyfile mode after rotation %v", fi.Mode().Perm())
	}

	// Another signer (another process) on the same keyring verifies URLs
	// of the new key, and rotation by the package function reaches a
	// running signer.
	other := fileHMAC(t, st, kf, time.Hour, clock(&otherNow))
	if rec := serve(other, http.MethodGet, u2); rec.Code != 200 {
		t.Errorf("other signer, new key: %d", rec.Code)
	}
	keys, err := urlsign.OpenFileKeys(kf, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := urlsign.RotateKeys(t.Context(), keys, time.Now(), urlsign.DefaultMaxURLLifetime); err != nil {
		t.Fatal(err)
	}
	third := fileHMAC(t, st, kf, time.Hour, time.Now)
	kid3 := third.h.ActiveKeyID()
	if kid3 == kid2 || kid3 == kid1 {
		t.Fatal("package RotateKeys did not add an active key")
	}
	u3 := sign(t, third, "r", 30*time.Minute)
	if rec := serve(other, http.MethodGet, u3); rec.Code != 200 {
		t.Errorf("running signer, key rotated by another process: %d", rec.Code)
	}
	if rec := serve(other, http.MethodGet, u1); rec.Code != 200 {
		t.Errorf("running signer, oldest key: %d", rec.Code)
	}

	// A retired key cannot sign URLs that outlive it: forge one with kid1
	// whose expiry is later than its retirement + MaxURLLifetime.
	k1 := other.h.Keyring().Key(kid1)
	forged := "/blobs/r?" + forge(k1, "r", k1.Retired.Add(2*time.Hour).Unix())
	at := k1.Retired.Add(90 * time.Minute)
	otherNow.Store(&at)
	if rec := serve(other, http.MethodGet, forged); rec.Code != 403 {
		t.Errorf("URL of a retired key outliving it: %d, want 403", rec.Code)
	}

	// Rotation prunes keys retired more than MaxURLLifetime + slack ago.
	later := time.Now().Add(3 * time.Hour)
	sNow.Store(&later)
	if err := s.sg.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	ring := s.h.Keyring()
	if ring.Key(kid1) != nil {
		t.Error("key retired 3h ago (lifetime 1h + 1h slack) was not pruned")
	}
	if ring.Key(kid2) != nil {
		t.Error("key retired 3h ago was not pruned")
	}
	if ring.Key(kid3) == nil {
		t.Error("the key retired just now was pruned")
	}
	if len(ring.Keys()) != 2 {
		t.Errorf("keyring holds %d keys, want 2", len(ring.Keys()))
	}
	sNow.Store(nil)
	if rec := serve(s, http.MethodGet, u1); rec.Code != 403 {
		t.Errorf("URL of a pruned key: %d, want 403", rec.Code)
	}
	if rec := serve(s, http.MethodGet, u3); rec.Code != 200 {
		t.Errorf("URL of a retained key: %d, want 200", rec.Code)
	}
}

func TestLongLivedURLRefused(t *testing.T) {
	s := openSigner(t, filepath.Join(t.TempDir(), "results"), "?max_url_lifetime=1h")
	put(t, s, "r", "x", "text/plain")
	k := s.h.Keyring().Active()
	forged := "/blobs/r?" + forge(k, "r", time.Now().Add(3*time.Hour).Unix())
	if rec := serve(s, http.MethodGet, forged); rec.Code != 403 {
		t.Errorf("URL living longer than MaxURLLifetime: %d, want 403", rec.Code)
	}
}

var traversalKeys = []string{
	"", "..", ".", "../x", "../../etc/passwd", "a/../../x", "a/..", "./a", "a/./b",
	"/abs", "/etc/passwd", "a//b", "a/", "a\\..\\b", `..\x`, "nul\x00byte", "new\nline",
	"x.attrs", "dir/y.attrs", "a.18f3a9c0d1e2.tmp", strings.Repeat("s", 201), strings.Repeat("a/", 600) + "a",
	"\xff\xfe",
}

func TestTraversalKeysRejected(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	s := openSigner(t, dir, "")
	ctx := context.Background()
	for _, k := range traversalKeys {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), "text/plain"); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if r, err := s.Open(ctx, k); !errors.Is(err, ErrInvalidKey) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.sg.SignedURL(ctx, k, time.Now().Add(time.Minute)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SignedURL(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	// Nothing was written anywhere but the keyfile.
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if p != base && p != dir && p != s.keyFile() {
			t.Errorf("unexpected file %s", p)
		}
		return nil
	})

	// Served URLs: even a correct MAC over a traversal key is refused, and
	// so are encoded slashes and dot segments.
	if err := os.WriteFile(filepath.Join(base, "outside.txt"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	put(t, s, "a/b", "inside", "text/plain")
	k := s.h.Keyring().Active()
	se := time.Now().Add(time.Minute).Unix()
	for _, target := range []string{
		"/blobs/../outside.txt?" + forge(k, "../outside.txt", se),
		"/blobs/%2E%2E/outside.txt?" + forge(k, "../outside.txt", se),
		"/blobs/..%2Foutside.txt?" + forge(k, "../outside.txt", se),
		"/blobs/..%2Foutside.txt?" + forge(k, "..%2Foutside.txt", se),
		"/blobs/../signing-keys.json?" + forge(k, "../signing-keys.json", se),
		"/blobs/a%2Fb?" + forge(k, "a/b", se),
		"/blobs/a%2fb?" + forge(k, "a/b", se),
		"/blobs/a/./b?" + forge(k, "a/./b", se),
		"/blobs//etc/passwd?" + forge(k, "/etc/passwd", se),
		"/blobs/a%5Cb?" + forge(k, `a\b`, se),
		"/blobs/a%00?" + forge(k, "a\x00", se),
		"/other/a/b?" + forge(k, "a/b", se),
	} {
		rec := serve(s, http.MethodGet, target)
		if rec.Code != 403 || strings.Contains(rec.Body.String(), "outside") || strings.Contains(rec.Body.String(), "inside") {
			t.Errorf("GET %s: %d %s, want 403", target, rec.Code, rec.Body)
		}
	}
	if rec := serve(s, http.MethodGet, "/blobs/a/b?"+forge(k, "a/b", se)); rec.Code != 200 || rec.Body.String() != "inside" {
		t.Errorf("control: %d %s", rec.Code, rec.Body)
	}
}

func TestLayoutAndDurabilityArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	s := openSigner(t, dir, "")
	ctx := context.Background()
	put(t, s, "ops/one/result.json", `{"ok":true}`, "application/json")
	put(t, s, "ops/one/result.json", `{"ok":false}`, "application/json")
	if _, err := s.Put(ctx, "ops/two", &brokenReader{}, "text/plain"); err == nil {
		t.Fatal("Put from a broken reader succeeded")
	}
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		if d.IsDir() {
			if runtime.GOOS != "windows" && info.Mode().Perm() != 0o700 {
				t.Errorf("directory %s has mode %v", rel, info.Mode().Perm())
			}
			return nil
		}
		files = append(files, rel)
		if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
			t.Errorf("result %s has mode %v", rel, info.Mode().Perm())
		}
		return nil
	})
	if want := filepath.Join("ops", "one", "result.json"); len(files) != 1 || files[0] != want {
		t.Errorf("files %v, want only %s (no sidecars, no temporary files)", files, want)
	}

	// The file holds the bytes, then the trailer.
	raw, _ := os.ReadFile(filepath.Join(dir, "ops", "one", "result.json"))
	if !bytes.HasPrefix(raw, []byte(`{"ok":false}`)) || !bytes.HasSuffix(raw, []byte(trailerMagic)) {
		t.Errorf("file layout %q", raw)
	}

	// A damaged file is an error, not a missing result and not bad bytes.
	p := filepath.Join(dir, "ops", "one", "result.json")
	if err := os.WriteFile(p, raw[:len(raw)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Open(ctx, "ops/one/result.json"); err == nil || errors.Is(err, driver.ErrNotFound) {
		if r != nil {
			r.Close()
		}
		t.Errorf("Open of a truncated file: %v", err)
	}
	if rec := serve(s, http.MethodGet, sign(t, s, "ops/one/result.json", time.Minute)); rec.Code != 500 || strings.Contains(rec.Body.String(), "ok") {
		t.Errorf("GET of a truncated file: %d %s", rec.Code, rec.Body)
	}

	// A key that is a directory of other results is not a result.
	if r, err := s.Open(ctx, "ops/one"); !errors.Is(err, driver.ErrNotFound) {
		if r != nil {
			r.Close()
		}
		t.Errorf("Open of a directory: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "ops"); err != nil {
		t.Errorf("Delete of a directory: %v, want nil", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("Delete of a directory removed something: %v", err)
	}
}

type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n > 3 {
		return 0, errors.New("broken")
	}
	b.n++
	return copy(p, "partial "), nil
}

func TestDefaultContentType(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "results"), Options{})
	if a := put(t, s, "untyped", "x", ""); a.ContentType != DefaultContentType {
		t.Errorf("ContentType %q", a.ContentType)
	}
	if _, err := s.Put(context.Background(), "bad", strings.NewReader("x"), "text/plain\r\nX-Injected: 1"); err == nil {
		t.Error("a content type with CRLF was accepted")
	}
}

func BenchmarkPut(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "results"), Options{})
	body := bytes.Repeat([]byte("x"), 1024)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(ctx, fmt.Sprintf("bench/%d", i%1000), bytes.NewReader(body), "application/octet-stream"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "results"), Options{})
	put(b, s, "bench", strings.Repeat("x", 1024), "text/plain")
	ctx := context.Background()
	for b.Loop() {
		r, err := s.Open(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r)
		r.Close()
	}
}

func BenchmarkSignVerify(b *testing.B) {
	s := openSigner(b, filepath.Join(b.TempDir(), "results"), "")
	ctx := context.Background()
	exp := time.Now().Add(10 * time.Minute)
	for b.Loop() {
		u, err := s.sg.SignedURL(ctx, "data/0192e0d2-7c1a-7cc3-8a45-0f6e3b4a2c1d.blobdata", exp)
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, u, nil)
		if _, _, err := s.h.Verify(req, s.rs.ValidateKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServe(b *testing.B) {
	s := openSigner(b, filepath.Join(b.TempDir(), "results"), "")
	put(b, s, "bench", strings.Repeat("x", 1024), "application/json")
	u := sign(b, s, "bench", time.Hour)
	for b.Loop() {
		if rec := serve(s, http.MethodGet, u); rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
