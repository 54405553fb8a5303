package s3result

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/s3test"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/urlsign/signtest"
)

// withParams adds query parameters to an s3 URL.
func withParams(t testing.TB, raw string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func open(t testing.TB, raw string) *Store {
	t.Helper()
	s, err := Open(context.Background(), raw)
	if err != nil {
		t.Fatalf("Open(%q): %v", raw, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// signedStore is a store and its signer, opened from one URL.
type signedStore struct {
	*Store
	rs *resultstore.Store
	sg *urlsign.Signer
	h  *urlsign.HMAC
}

// openSigned opens the store raw names and its signer, with opts when
// given, else from raw's parameters (as the s3 engine's Signer does). They
// are a store and signer of their own, as another process opening raw
// would have, not those of this process's engine for raw.
func openSigned(t testing.TB, raw string, opts ...SignerOptions) *signedStore {
	t.Helper()
	s := open(t, raw)
	rs := resultstore.New(s)
	var sg *urlsign.Signer
	var err error
	if len(opts) > 0 {
		sg, err = OpenSigner(context.Background(), rs, opts[0])
	} else {
		sg, err = signerOf(t, raw, rs)
	}
	if err != nil {
		t.Fatalf("opening the signer of %q: %v", raw, err)
	}
	t.Cleanup(func() { _ = sg.Close() })
	return &signedStore{Store: s, rs: rs, sg: sg, h: sg.Driver().(*urlsign.HMAC)}
}

// signerOf opens the signer of rs from raw's parameters, as the s3
// engine's Signer does.
func signerOf(t testing.TB, raw string, rs *resultstore.Store) (*urlsign.Signer, error) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return openSignerURL(context.Background(), u, rs)
}

func (s *signedStore) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	return s.sg.SignedURL(ctx, key, expiry)
}

func (s *signedStore) ActiveKeyID() string { return s.h.ActiveKeyID() }

// TestConformance runs the result store suite.
func TestConformance(t *testing.T) {
	srv := s3test.StartServer(t)
	t.Run("Prefixed", func(t *testing.T) {
		u := withParams(t, srv.URL, "prefix", "conformance/")
		resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
			Open: func(t *testing.T) driver.Store {
				s, err := Open(t.Context(), u)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		})
	})
	t.Run("BucketRoot", func(t *testing.T) {
		resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
			Open: func(t *testing.T) driver.Store {
				s, err := Open(t.Context(), srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		})
	})
}

// TestSignerConformance runs the signer suite on the store and signer
// opened from a URL as the s3 engine opens them (OpenURL, then the signer
// from the URL's parameters), which mounts the signer's handler on a test
// server: arr's own signing is checked, and the bytes come from S3 after
// the redirect. Each subtest has a store and signer of its own, as a
// process opening the URL would, not the ports of this process's engine:
// the suite closes what it is given, and an engine's ports are released
// with the engine.
func TestSignerConformance(t *testing.T) {
	srv := s3test.StartServer(t)
	harness := func(u string) signtest.Harness {
		return signtest.Harness{
			Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
				pu, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				s, err := OpenURL(t.Context(), pu)
				if err != nil {
					t.Fatal(err)
				}
				rs := resultstore.New(s)
				sg, err := openSignerURL(t.Context(), pu, rs)
				if err != nil {
					rs.Close()
					t.Fatal(err)
				}
				return rs, sg
			},
		}
	}
	t.Run("Prefixed", func(t *testing.T) {
		signtest.RunConformanceTests(t, harness(withParams(t, srv.URL, "prefix", "conformance/")))
	})
	t.Run("BucketRoot", func(t *testing.T) {
		signtest.RunConformanceTests(t, harness(srv.URL))
	})
}

func get(t *testing.T, u string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// TestHelperPut is not a test: TestSharedAcrossProcesses runs it in a child
// process, which puts a result with nothing but the URL and the
// environment s3test returned.
func TestHelperPut(t *testing.T) {
	if os.Getenv("ARR_S3RESULT_HELPER") != "1" {
		t.Skip("helper process only")
	}
	e, err := engine.Open(t.Context(), os.Getenv("ARR_S3RESULT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := e.Results(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sg, err := e.Signer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Put(t.Context(), os.Getenv("ARR_S3RESULT_KEY"), strings.NewReader(os.Getenv("ARR_S3RESULT_BODY")), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := sg.SignedURL(t.Context(), os.Getenv("ARR_S3RESULT_KEY"), time.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ETAG=%s\nSIGNED=%s\n", a.ETag, signed)
}

// TestSharedAcrossProcesses: a result put by one arr process (a child
// process, here) is read and served through a signed URL by another one
// that opened the same URL, and a delete by one is seen by the other.
func TestSharedAcrossProcesses(t *testing.T) {
	u, env := s3test.Start(t)
	u = withParams(t, u, "prefix", "shared/")
	key := fmt.Sprintf("data/%d.blobdata", time.Now().UnixNano())
	body := `{"id":"1","customername":"Contoso"}`

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperPut$", "-test.count=1")
	// Only what s3test returned reaches S3: no AWS_* of this process.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, "ARR_S3RESULT_HELPER=1", "ARR_S3RESULT_URL="+u, "ARR_S3RESULT_KEY="+key, "ARR_S3RESULT_BODY="+body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("writer process: %v\n%s", err, out)
	}
	var etag, childSigned string
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ETAG="); ok {
			etag = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "SIGNED="); ok {
			childSigned = v
		}
	}
	if etag == "" || childSigned == "" {
		t.Fatalf("writer process printed no ETag or signed URL:\n%s", out)
	}

	readerEngine, err := engine.Open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer readerEngine.Close()
	reader, err := readerEngine.Results(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := reader.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != body || r.Attributes().ETag != etag {
		t.Errorf("Open in the other process: %q ETag %s; want %q ETag %s", got, r.Attributes().ETag, body, etag)
	}
	readerSigner, err := readerEngine.Signer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, readerSigner)
	signed, err := readerSigner.SignedURL(t.Context(), key, time.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// This process serves its own URL and the one the writer process signed
	// (the keyring is shared through the bucket).
	for _, su := range []string{signed, childSigned} {
		status, hdr, b := get(t, base+su)
		if status != 200 || string(b) != body || hdr.Get("ETag") != etag || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("GET of %s: %d %q ETag %s Content-Type %q", su, status, b, hdr.Get("ETag"), hdr.Get("Content-Type"))
		}
	}

	// A third instance deletes it; the URL then fails.
	third := open(t, u)
	if err := third.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := get(t, base+childSigned); status != http.StatusNotFound {
		t.Errorf("GET after Delete by another instance: %d, want 404", status)
	}
}

// serve mounts the signer's handler on a test server and returns its base
// URL, to which signed URLs are appended.
func serve(t *testing.T, sg *urlsign.Signer) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(sg.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts.URL
}

// redirect requests base+signed with method without following the
// redirect, and returns the response.
func redirect(t *testing.T, method, target string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// presignedEnd returns the end of an S3 presigned URL's validity:
// X-Amz-Date + X-Amz-Expires.
func presignedEnd(t *testing.T, u *url.URL) time.Time {
	t.Helper()
	q := u.Query()
	d, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("presigned URL %s: X-Amz-Date: %v", u, err)
	}
	e, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || e < 1 {
		t.Fatalf("presigned URL %s: X-Amz-Expires %q", u, q.Get("X-Amz-Expires"))
	}
	return d.Add(time.Duration(e) * time.Second)
}

// TestRedirectTarget: Handler answers a valid URL with a 307 to an S3
// presigned URL for the request's method, which ends no later than the arr
// URL (and at most RedirectLifetime after the request), and is not to be
// cached; S3 refuses it for the other method.
func TestRedirectTarget(t *testing.T) {
	srv := s3test.StartServer(t)
	s := openSigned(t, withParams(t, srv.URL, "prefix", "redirect/"))
	base := serve(t, s.sg)
	body := "redirected bytes"
	a, err := s.Put(t.Context(), "dir/r 1", strings.NewReader(body), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	for _, life := range []time.Duration{3 * time.Second, 2 * time.Minute, time.Hour} {
		expiry := time.Now().Add(life)
		signed, err := s.SignedURL(t.Context(), "dir/r 1", expiry)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(signed, "/blobs/dir/r%201?se=") {
			t.Errorf("signed URL %s: want /blobs/dir/r%%201?se=…", signed)
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			res := redirect(t, method, base+signed)
			if res.StatusCode != http.StatusTemporaryRedirect {
				t.Fatalf("%s %s: %d, want 307", method, signed, res.StatusCode)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s: redirect with Cache-Control %q, want no-store", method, cc)
			}
			loc, err := url.Parse(res.Header.Get("Location"))
			if err != nil || !loc.IsAbs() {
				t.Fatalf("%s: Location %q", method, res.Header.Get("Location"))
			}
			if ep, _ := url.Parse(srv.Endpoint); srv.Endpoint != "" && loc.Host != ep.Host {
				t.Errorf("%s: Location %s is not at the S3 endpoint %s", method, loc, srv.Endpoint)
			}
			if !strings.HasSuffix(loc.EscapedPath(), "/redirect/dir/r%201") || loc.Query().Get("X-Amz-Signature") == "" {
				t.Errorf("%s: Location %s is not a presigned URL of the object", method, loc)
			}
			end := presignedEnd(t, loc)
			if end.After(time.Unix(expiry.Unix(), 0)) {
				t.Errorf("%s: presigned URL ends %v, after the arr URL's expiry %v", method, end, expiry)
			}
			if end.After(time.Now().Add(RedirectLifetime + time.Second)) {
				t.Errorf("%s: presigned URL ends %v, more than %v ahead", method, end, RedirectLifetime)
			}
			// S3 serves it for this method only.
			other := http.MethodHead
			if method == http.MethodHead {
				other = http.MethodGet
			}
			for _, m := range []string{method, other} {
				req, _ := http.NewRequestWithContext(t.Context(), m, loc.String(), nil)
				r2, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(r2.Body)
				r2.Body.Close()
				switch {
				case m == method && (r2.StatusCode != 200 || r2.Header.Get("ETag") != a.ETag):
					t.Errorf("%s of the presigned %s URL: %d ETag %s", m, method, r2.StatusCode, r2.Header.Get("ETag"))
				case m == method && m == http.MethodGet && string(b) != body:
					t.Errorf("GET of the presigned URL: %q", b)
				case m != method && r2.StatusCode != http.StatusForbidden:
					t.Errorf("%s of the presigned %s URL: %d, want 403", m, method, r2.StatusCode)
				}
				if m == http.MethodGet && m == method {
					if cd := r2.Header.Get("Content-Disposition"); cd != `attachment; filename="r 1.json"` {
						t.Errorf("GET of the presigned URL: Content-Disposition %q", cd)
					}
				}
			}
		}
	}
	// A URL of a missing result is not redirected.
	signed, err := s.SignedURL(t.Context(), "missing", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res := redirect(t, http.MethodGet, base+signed); res.StatusCode != http.StatusNotFound || res.Header.Get("Location") != "" {
		t.Errorf("GET of a missing result's URL: %d Location %q, want 404", res.StatusCode, res.Header.Get("Location"))
	}
	// Any parameter added to a signed URL gets it refused.
	signed, _ = s.SignedURL(t.Context(), "dir/r 1", time.Now().Add(time.Minute))
	for _, extra := range []string{"&x=1", "&response-content-type=text/html", "&", "&se"} {
		if res := redirect(t, http.MethodGet, base+signed+extra); res.StatusCode != http.StatusForbidden {
			t.Errorf("GET with %q appended: %d, want 403", extra, res.StatusCode)
		}
	}
}

// TestSharedKeyring: a URL signed by one store is verified and redirected
// by another store opened on the same URL, and stores opened at once on a
// bucket without a keyring agree on one.
func TestSharedKeyring(t *testing.T) {
	srv := s3test.StartServer(t)
	u := withParams(t, srv.URL, "prefix", "shared-keys/")
	a, b := openSigned(t, u), openSigned(t, u)
	if a.ActiveKeyID() != b.ActiveKeyID() {
		t.Fatalf("two signers on one URL sign with keys %s and %s", a.ActiveKeyID(), b.ActiveKeyID())
	}
	if _, err := a.Put(t.Context(), "k", strings.NewReader("shared"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	signed, err := a.SignedURL(t.Context(), "k", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := get(t, serve(t, b.sg)+signed); status != 200 || string(body) != "shared" {
		t.Errorf("GET through the other store: %d %q", status, body)
	}
	// A store on another prefix has its own keyring and refuses it.
	other := openSigned(t, withParams(t, srv.URL, "prefix", "other-keys/"))
	if status, _, _ := get(t, serve(t, other.sg)+signed); status != http.StatusForbidden {
		t.Errorf("GET through a store with another keyring: %d, want 403", status)
	}

	// Concurrent first opens on an empty location.
	for round := range 3 {
		cu := withParams(t, srv.URL, "prefix", fmt.Sprintf("race-%d/", round))
		const n = 6
		stores := make([]*signedStore, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			rs := resultstore.New(open(t, cu))
			wg.Go(func() {
				sg, err := signerOf(t, cu, rs)
				if errs[i] = err; err == nil {
					stores[i] = &signedStore{Store: rs.Driver().(*Store), rs: rs, sg: sg, h: sg.Driver().(*urlsign.HMAC)}
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent signer open %d: %v", i, err)
			}
			t.Cleanup(func() { _ = stores[i].sg.Close() })
		}
		if _, err := stores[0].Put(t.Context(), "k", strings.NewReader("race"), "text/plain"); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if stores[i].ActiveKeyID() != stores[0].ActiveKeyID() {
				t.Errorf("round %d: store %d signs with %s, store 0 with %s", round, i, stores[i].ActiveKeyID(), stores[0].ActiveKeyID())
			}
			signed, err := stores[i].SignedURL(t.Context(), "k", time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if status, _, _ := get(t, serve(t, stores[(i+1)%n].sg)+signed); status != 200 {
				t.Errorf("round %d: URL of store %d through store %d: %d", round, i, (i+1)%n, status)
			}
		}
	}
}

// TestRotateKeys: after a rotation the new key signs, URLs of the old key
// keep working everywhere, another store verifies the new key's URLs at
// once and signs with it after its reload, and a rotation after the
// retention period prunes the old key.
func TestRotateKeys(t *testing.T) {
	srv := s3test.StartServer(t)
	u := withParams(t, srv.URL, "prefix", "rotate/")
	var aNow atomic.Pointer[time.Time]
	clock := func() time.Time {
		if t := aNow.Load(); t != nil {
			return *t
		}
		return time.Now()
	}
	a := openSigned(t, u, SignerOptions{MaxURLLifetime: time.Hour, Now: clock})
	b := openSigned(t, withParams(t, u, "max_url_lifetime", "1h"))
	baseA, baseB := serve(t, a.sg), serve(t, b.sg)
	if _, err := a.Put(t.Context(), "k", strings.NewReader("rotated"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	old := a.ActiveKeyID()
	oldURL, _ := a.SignedURL(t.Context(), "k", time.Now().Add(30*time.Minute))
	if err := a.sg.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a.ActiveKeyID() == old {
		t.Fatal("RotateKeys kept the active key")
	}
	newURL, _ := a.SignedURL(t.Context(), "k", time.Now().Add(30*time.Minute))
	if !strings.Contains(newURL, "kid="+a.ActiveKeyID()) {
		t.Errorf("URL after rotation %s is not signed with the new key %s", newURL, a.ActiveKeyID())
	}
	for _, base := range []string{baseA, baseB} {
		for _, su := range []string{oldURL, newURL} {
			if status, _, _ := get(t, base+su); status != 200 {
				t.Errorf("GET %s%s after rotation: %d", base, su, status)
			}
		}
	}
	// b learnt the new keyring when it met the new key id.
	if b.ActiveKeyID() != a.ActiveKeyID() {
		t.Errorf("other store signs with %s after verifying a URL of %s", b.ActiveKeyID(), a.ActiveKeyID())
	}
	// A rotation after MaxURLLifetime + KeyRetentionSlack prunes the old key.
	later := time.Now().Add(time.Hour + urlsign.KeyRetentionSlack + time.Minute)
	aNow.Store(&later)
	if err := a.sg.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	aNow.Store(nil)
	if kr := a.h.Keyring(); kr.Key(old) != nil || len(kr.Keys()) != 2 {
		t.Errorf("after the retention period the keyring holds %d keys, old key kept: %v", len(kr.Keys()), kr.Key(old) != nil)
	}
	if status, _, _ := get(t, baseA+oldURL); status != http.StatusForbidden {
		t.Errorf("URL of a pruned key: %d, want 403", status)
	}
	if status, _, _ := get(t, baseA+newURL); status != 200 {
		t.Errorf("URL of the retired (not pruned) key: %d, want 200", status)
	}
}

// TestPublicEndpoint: the redirects name public_endpoint, which reaches
// the server through a proxy that keeps the Host header, and the presigned
// URLs are refused at the internal address (the signature covers the host).
func TestPublicEndpoint(t *testing.T) {
	srv := s3test.StartServer(t)
	if srv.Endpoint == "" {
		t.Skip("the server's endpoint is not known")
	}
	target, _ := url.Parse(srv.Endpoint)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target)) // keeps the inbound Host
	t.Cleanup(proxy.Close)

	s := openSigned(t, withParams(t, srv.URL, "public_endpoint", proxy.URL, "prefix", "public/"))
	base := serve(t, s.sg)
	a, err := s.Put(t.Context(), "r.json", strings.NewReader(`{"ok":true}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.SignedURL(t.Context(), "r.json", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	res := redirect(t, http.MethodGet, base+signed)
	pu, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusTemporaryRedirect || err != nil {
		t.Fatalf("GET %s: %d Location %q", signed, res.StatusCode, res.Header.Get("Location"))
	}
	if pp, _ := url.Parse(proxy.URL); pu.Host != pp.Host {
		t.Fatalf("redirect %s does not name the public endpoint %s", pu, proxy.URL)
	}
	if !strings.HasSuffix(pu.Path, "/public/r.json") {
		t.Errorf("redirect path %q lacks the prefix", pu.Path)
	}
	status, hdr, b := get(t, base+signed)
	if status != 200 || string(b) != `{"ok":true}` || hdr.Get("ETag") != a.ETag {
		t.Errorf("GET through the public endpoint: %d %q ETag %s", status, b, hdr.Get("ETag"))
	}
	internal := *pu
	internal.Host = target.Host
	if status, _, _ := get(t, internal.String()); status != http.StatusForbidden {
		t.Errorf("GET of the public URL at the internal host: %d, want 403", status)
	}
}

// TestSignedURLConditionalDates: S3 answers conditional requests on dates
// after the redirect (the suite checks If-None-Match).
func TestSignedURLConditionalDates(t *testing.T) {
	srv := s3test.StartServer(t)
	s := openSigned(t, srv.URL)
	a, err := s.Put(t.Context(), "dated", strings.NewReader("dated"), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.SignedURL(t.Context(), "dated", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	signed = serve(t, s.sg) + signed
	// Servers ignore dates in the future (RFC 9110 §13.1.3), and compare
	// with their sub-second modification time: wait until a second after
	// ModTime has passed, and ask with it.
	time.Sleep(time.Until(a.ModTime.Add(1100 * time.Millisecond)))
	if status, _, b := get(t, signed, "If-Modified-Since", a.ModTime.Add(time.Second).UTC().Format(http.TimeFormat)); status != http.StatusNotModified || len(b) != 0 {
		t.Errorf("If-Modified-Since after ModTime: %d %q, want 304", status, b)
	}
	if status, hdr, b := get(t, signed, "If-Modified-Since", a.ModTime.Add(-time.Hour).UTC().Format(http.TimeFormat)); status != 200 || string(b) != "dated" || hdr.Get("Last-Modified") != a.ModTime.UTC().Format(http.TimeFormat) {
		t.Errorf("If-Modified-Since before ModTime: %d %q Last-Modified %q, want 200", status, b, hdr.Get("Last-Modified"))
	}
	if status, _, b := get(t, signed, "Range", "bytes=1-2", "If-Match", a.ETag); status != http.StatusPartialContent || string(b) != "at" {
		t.Errorf("Range with If-Match: %d %q, want 206 \"at\"", status, b)
	}
}

// TestReaderPinsVersion: a Reader that seeks after the result was replaced
// fails with ErrChanged rather than mixing the two values.
func TestReaderPinsVersion(t *testing.T) {
	srv := s3test.StartServer(t)
	s := open(t, srv.URL)
	ctx := t.Context()
	if _, err := s.Put(ctx, "pinned", strings.NewReader("0123456789"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "pinned")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "01" {
		t.Fatalf("first read %q, %v", buf, err)
	}
	// Reading at the end needs no request.
	if n, err := r.Seek(0, io.SeekEnd); err != nil || n != 10 {
		t.Fatalf("Seek(0, End) = %d, %v", n, err)
	}
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
	if n, err := r.Seek(100, io.SeekStart); err != nil || n != 100 {
		t.Fatalf("Seek past the end = %d, %v", n, err)
	}
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read past the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to a negative offset succeeded")
	}

	if _, err := s.Put(ctx, "pinned", strings.NewReader("ABCDEFGHIJ"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if !errors.Is(err, ErrChanged) {
		t.Errorf("read after an overwrite and a Seek: %q, %v; want ErrChanged", b, err)
	}
}

// repeatingReader yields n bytes of a pattern, then fails if fail is set.
type repeatingReader struct {
	n    int
	fail bool
	off  int
}

func (r *repeatingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		if r.fail {
			return 0, errors.New("source broke")
		}
		return 0, io.EOF
	}
	p = p[:min(len(p), r.n)]
	for i := range p {
		p[i] = byte((r.off + i) * 31 >> 3)
	}
	r.off += len(p)
	r.n -= len(p)
	return len(p), nil
}

// TestMultipart: results of 16 MiB and more go up in parts; a failure
// part-way aborts the upload, leaving neither an object nor parts.
func TestMultipart(t *testing.T) {
	srv := s3test.StartServer(t)
	s := open(t, withParams(t, srv.URL, "prefix", "multipart/"))
	ctx := t.Context()
	const size = 17 << 20

	if _, err := s.Put(ctx, "broken", &repeatingReader{n: size, fail: true}, "application/octet-stream"); err == nil {
		t.Fatal("Put from a reader failing after 17 MiB succeeded")
	}
	if _, err := s.Open(ctx, "broken"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Open after a failed multipart Put: %v, want ErrNotFound", err)
	}
	var c *s3.Client
	if !s.bucket.As(&c) {
		t.Fatal("no s3 client")
	}
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket), Prefix: aws.String("multipart/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left behind", len(ups.Uploads))
	}

	a, err := s.Put(ctx, "big", &repeatingReader{n: size}, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != size || a.ETag == "" || a.ModTime.IsZero() {
		t.Errorf("attributes %+v", a)
	}
	r, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	r.Close()
	want := sha256.New()
	_, _ = io.Copy(want, &repeatingReader{n: size})
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want.Sum(nil)) || r.Attributes().ETag != a.ETag {
		t.Errorf("read back %d bytes, err %v, digest match %v, ETag %s vs %s", n, err, bytes.Equal(h.Sum(nil), want.Sum(nil)), r.Attributes().ETag, a.ETag)
	}
}

// --- without a server ----------------------------------------------------

// offlineEnv gives the SDK credentials to sign with; presigning does no I/O.
func offlineEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAOFFLINE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "offline-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	empty := t.TempDir() + "/empty"
	_ = os.WriteFile(empty, nil, 0o600)
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
}

func TestURLParameters(t *testing.T) {
	offlineEnv(t)
	ctx := context.Background()
	// Refused before any I/O.
	refused := []string{
		"s3://",
		"s3:///path",
		"s3:bucket",
		"file://bucket",
		"s3://AKIA:secret@bucket",
		"s3://bucket/some/path",
		"s3://bucket?anonymous=true",
		"s3://bucket?anonymous=false",
		"s3://bucket?unknown=1",
		"s3://bucket?region=a&region=b",
		"s3://bucket?use_path_style=maybe",
		"s3://bucket?disable_https=x",
		"s3://bucket?awssdk=v1",
		"s3://bucket?public_endpoint=ftp://x",
		"s3://bucket?public_endpoint=/relative",
		"s3://bucket?ssetype=rot13",
		"s3://bucket?role=not-an-arn",
		"s3://bucket?prefix=%00",
		"s3://bucket?url_keyring=/abs",
		"s3://bucket?url_keyring=a//b",
		"s3://bucket?url_keyring=a/../b",
		"s3://bucket#frag",
	}
	for _, u := range refused {
		if s, err := Open(ctx, u); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q): error quotes the secret: %v", u, err)
		}
	}
	// The signer's parameters: the engine and its store accept and ignore
	// them, the engine's signer refuses bad ones, before any I/O.
	for _, u := range []string{
		"s3://bucket?max_url_lifetime=8d",
		"s3://bucket?max_url_lifetime=500ms",
		"s3://bucket?max_url_lifetime=-1h",
		"s3://bucket?url_prefix=blobs",
		"s3://bucket?url_prefix=/blobs",
		"s3://bucket?url_prefix=/a//b/",
		"s3://bucket?url_prefix=/a%3Fb/",
	} {
		e, err := engine.Open(ctx, u)
		if err != nil {
			t.Errorf("engine.Open(%q): %v; the signer's parameters are the store's to ignore", u, err)
			continue
		}
		if _, err := e.Results(ctx); err != nil {
			t.Errorf("results of %q: %v; the signer's parameters are the store's to ignore", u, err)
		}
		if _, err := e.Signer(ctx); err == nil {
			t.Errorf("signer of %q opened", u)
		}
		e.Close()
	}
	// An unreachable endpoint fails the opening of the signer (the keyring
	// is read), not of the engine nor of its store.
	const unreachable = "s3://bucket?endpoint=http://127.0.0.1:1&use_path_style=true"
	e, err := engine.Open(ctx, unreachable)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Results(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Signer(ctx); err == nil {
		t.Error("the signer of an unreachable endpoint opened")
	}
}

// TestURLParametersAccepted: every parameter is accepted, and the driver's
// own ones take effect.
func TestURLParametersAccepted(t *testing.T) {
	srv := s3test.StartServer(t)
	ctx := t.Context()
	u := withParams(t, srv.URL, "prefix", "p/", "disable_https", "false", "accelerate", "false",
		"dualstack", "false", "fips", "false", "hostname_immutable", "false", "rate_limiter_capacity", "100",
		"request_checksum_calculation", "when_required", "response_checksum_validation", "when_required",
		"awssdk", "v2", "max_url_lifetime", "1h", "public_endpoint", "https://files.example.com",
		"url_prefix", "/results/signed/", "url_keyring", "keys/arr-url-keys.json")
	s := openSigned(t, u)
	if s.h.Prefix() != "/results/signed/" {
		t.Errorf("Prefix() = %q", s.h.Prefix())
	}
	if _, err := s.Put(ctx, "a b/c.json", strings.NewReader("{}"), "application/json"); err != nil {
		t.Fatal(err)
	}
	signed, err := s.SignedURL(ctx, "a b/c.json", time.Now().Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(signed)
	if err != nil || pu.IsAbs() || pu.EscapedPath() != "/results/signed/a%20b/c.json" {
		t.Fatalf("signed URL %s: want /results/signed/a%%20b/c.json?…", signed)
	}
	if q := pu.Query(); len(q) != 3 || q.Get("se") == "" || q.Get("kid") != s.ActiveKeyID() || len(q.Get("sig")) != urlsign.SigLen {
		t.Errorf("signed URL %s: want se, kid and sig", signed)
	}
	res := redirect(t, http.MethodGet, serve(t, s.sg)+signed)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusTemporaryRedirect || loc == nil || loc.Scheme != "https" || loc.Host != "files.example.com" ||
		loc.EscapedPath() != "/"+srv.Bucket+"/p/a%20b/c.json" || !strings.Contains(loc.Query().Get("X-Amz-Credential"), "/"+s3test.Region+"/s3/") {
		t.Errorf("redirect %d to %s: want a SigV4 URL at https://files.example.com/%s/p/a%%20b/c.json", res.StatusCode, loc, srv.Bucket)
	}
	// The keyring is where url_keyring says, outside the prefix.
	var c *s3.Client
	if !s.bucket.As(&c) {
		t.Fatal("no s3 client")
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("keys/arr-url-keys.json")}); err != nil {
		t.Errorf("keyring object: %v", err)
	}
	for _, d := range []time.Duration{time.Hour + time.Minute, 24 * time.Hour} {
		if _, err := s.SignedURL(ctx, "k", time.Now().Add(d)); err == nil {
			t.Errorf("SignedURL with expiry %v ahead (max_url_lifetime 1h) succeeded", d)
		}
	}
	if _, err := s.SignedURL(ctx, "k", time.Now().Add(-time.Minute)); err != nil {
		t.Errorf("SignedURL with an expiry in the past: %v", err)
	}

	// The engine opens them, and the signer serves its own URLs.
	e, err := engine.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Results(ctx); err != nil {
		t.Fatal(err)
	}
	sg, err := e.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if prefix, h := sg.Handler(); prefix != urlsign.DefaultPrefix || h == nil {
		t.Errorf("Handler() = %q, %v; want the signer's handler at %s", prefix, h, urlsign.DefaultPrefix)
	}
	if _, err := sg.SignedURL(ctx, "k", time.Now().Add(8*24*time.Hour)); err == nil {
		t.Error("SignedURL 8 days ahead succeeded (default max_url_lifetime 7 days)")
	}
}

func TestValidateKey(t *testing.T) {
	srv := s3test.StartServer(t)
	s := openSigned(t, withParams(t, srv.URL, "prefix", strings.Repeat("p", 24), "url_keyring", strings.Repeat("p", 24)+"ring/keys.json"))
	good := []string{"a", "a/b/c.json", "data/0192e0d2.blobdata", "ü/日本語", "a b", ".hidden/.dot", "..x/x..", "a\\b", "a/.arr", ".arrx/y", "ring/keys.json.x", "ringx", strings.Repeat("k", 1000)}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../x", "a\x00b", "new\nline", "del\x7f", "c1\u0085", "\xff", strings.Repeat("k", 1001),
		".arr", ".arr/url-keys.json", ".arr/x", "ring", "ring/keys.json", "ring/keys.json/x"}
	for _, k := range good {
		if err := s.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q): %v", k, err)
		}
	}
	ctx := t.Context()
	for _, k := range bad {
		if err := s.ValidateKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Put(ctx, k, strings.NewReader("x"), "text/plain"); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Open(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Open(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.SignedURL(ctx, k, time.Now().Add(time.Minute)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SignedURL(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	// The keyring cannot be fetched through a URL signed for a valid key
	// moved onto its path.
	signed, _ := s.SignedURL(ctx, "ringx", time.Now().Add(time.Minute))
	_, q, _ := strings.Cut(signed, "?")
	if status, _, _ := get(t, serve(t, s.sg)+"/blobs/ring/keys.json?"+q); status != http.StatusForbidden {
		t.Errorf("GET of the keyring's path: %d, want 403", status)
	}
	for _, ct := range []string{"text/plain\r\nX-Injected: 1", "not a type", strings.Repeat("a", 2000)} {
		if _, err := s.Put(ctx, "k", strings.NewReader("x"), ct); err == nil {
			t.Errorf("Put with content type %q succeeded", ct)
		}
	}
}
