package azblobresult

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/urlsign/signtest"
)

// keyFetches is a pipeline policy counting Get User Delegation Key
// requests.
type keyFetches struct{ n atomic.Int64 }

func (k *keyFetches) Do(req *policy.Request) (*http.Response, error) {
	if req.Raw().URL.Query().Get("comp") == "userdelegationkey" {
		k.n.Add(1)
	}
	return req.Next()
}

// withKeyCounter makes the store's clients count key fetches in k.
func withKeyCounter(k *keyFetches) func(*Options) {
	return func(o *Options) {
		co := *o.ClientOptions
		co.PerCallPolicies = append(append([]policy.Policy(nil), co.PerCallPolicies...), k)
		o.ClientOptions = &co
	}
}

// signed opens a store on tb and its signer.
func (tb *testbed) signed(t *testing.T, opts ...func(*Options)) (*Store, *urlsign.Signer) {
	t.Helper()
	s := tb.open(t, opts...)
	sg, err := OpenSigner(t.Context(), resultstore.New(s))
	if err != nil {
		t.Fatalf("OpenSigner: %v", err)
	}
	t.Cleanup(func() { _ = sg.Close() })
	return s, sg
}

// TestSignerConformance runs the signer suite: the URLs are Azurite's,
// fetched with a client that trusts it.
func TestSignerConformance(t *testing.T) {
	for _, prefix := range []string{"", "conformance/"} {
		name := "ContainerRoot"
		if prefix != "" {
			name = "Prefixed"
		}
		t.Run(name, func(t *testing.T) {
			tb := newTestbed(t, "prefix", prefix)
			signtest.RunConformanceTests(t, signtest.Harness{
				Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
					s, err := Open(t.Context(), tb.url, tb.opts)
					if err != nil {
						t.Fatal(err)
					}
					rs := resultstore.New(s)
					sg, err := OpenSigner(t.Context(), rs)
					if err != nil {
						rs.Close()
						t.Fatal(err)
					}
					return rs, sg
				},
				HTTPClient: tb.srv.HTTPClient(),
			})
		})
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

func fetch(t *testing.T, c *http.Client, method, u string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

// setParam returns u with the query parameter name set to v (its other
// parameters in their order).
func setParam(t *testing.T, u, name, v string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(pu.RawQuery, "&")
	for i, p := range parts {
		if n, _, _ := strings.Cut(p, "="); n == name {
			parts[i] = name + "=" + url.QueryEscape(v)
		}
	}
	pu.RawQuery = strings.Join(parts, "&")
	return pu.String()
}

// TestSAS: the URL is a user delegation SAS for reading one blob, which
// Azurite serves as a download and refuses when tampered with, widened,
// moved to another blob or expired.
func TestSAS(t *testing.T) {
	tb := newTestbed(t, "prefix", "sas/")
	s, sg := tb.signed(t)
	c := tb.srv.HTTPClient()
	ctx := t.Context()
	body := `{"id":"42"}`
	a, err := s.Put(ctx, "dir/r 1", strings.NewReader(body), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "dir/other", strings.NewReader("other"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(10 * time.Minute)
	u, err := sg.SignedURL(ctx, "dir/r 1", expiry)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if want := tb.srv.BlobURL() + "/" + tb.container + "/sas/dir/r%201"; pu.Scheme+"://"+pu.Host+pu.EscapedPath() != want {
		t.Errorf("SAS URL %s is not of the blob %s", u, want)
	}
	q := pu.Query()
	for name, want := range map[string]string{
		"sp": "r", "sr": "b", "spr": "https", "skoid": azuritetest.Object, "sktid": azuritetest.Tenant,
		"se": expiry.UTC().Format("2006-01-02T15:04:05Z"), "rscd": `attachment; filename="r 1.json"`,
	} {
		if got := q.Get(name); got != want {
			t.Errorf("SAS parameter %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"sig", "sv", "skt", "ske", "sks", "skv"} {
		if q.Get(name) == "" {
			t.Errorf("SAS URL %s has no %s", u, name)
		}
	}
	for _, name := range []string{"rsct", "st", "sip", "ss", "srt"} {
		if q.Has(name) {
			t.Errorf("SAS URL %s has %s", u, name)
		}
	}
	ske, err := time.Parse(time.RFC3339, q.Get("ske"))
	if err != nil || ske.Before(expiry.Truncate(time.Second)) {
		t.Errorf("key expiry ske=%q is before the URL's expiry %v", q.Get("ske"), expiry)
	}

	r := fetch(t, c, http.MethodGet, u)
	if r.status != 200 || r.body != body || r.header.Get("ETag") != a.ETag || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("Content-Disposition") != `attachment; filename="r 1.json"` {
		t.Errorf("GET of the SAS URL: %d %q ETag %s Content-Type %q Content-Disposition %q", r.status, r.body, r.header.Get("ETag"), r.header.Get("Content-Type"), r.header.Get("Content-Disposition"))
	}
	if r := fetch(t, c, http.MethodHead, u); r.status != 200 || r.body != "" || r.header.Get("Content-Length") != "11" {
		t.Errorf("HEAD of the SAS URL: %d %q Content-Length %q", r.status, r.body, r.header.Get("Content-Length"))
	}

	refused := func(why, u string, method ...string) {
		t.Helper()
		m := http.MethodGet
		if len(method) > 0 {
			m = method[0]
		}
		var hdr []string
		if m == http.MethodPut { // a Put Blob request, but for its authorization
			hdr = []string{"x-ms-blob-type", "BlockBlob"}
		}
		if r := fetch(t, c, m, u, hdr...); r.status != http.StatusForbidden {
			t.Errorf("%s: %s: %d %q, want 403", why, m, r.status, r.body)
		}
	}
	sig := q.Get("sig")
	refused("tampered signature", setParam(t, u, "sig", strings.ToUpper(sig[:1])+strings.ToLower(sig[:1])+sig[2:]))
	refused("widened to sp=rw", setParam(t, u, "sp", "rw"))
	refused("widened to sp=rw, PUT", setParam(t, u, "sp", "rw"), http.MethodPut)
	refused("PUT with the read SAS", u, http.MethodPut)
	refused("DELETE with the read SAS", u, http.MethodDelete)
	refused("widened to the container", setParam(t, u, "sr", "c"))
	refused("expiry moved", setParam(t, u, "se", expiry.Add(time.Hour).UTC().Format("2006-01-02T15:04:05Z")))
	refused("file name changed", setParam(t, u, "rscd", "inline"))
	other := *pu
	other.Path, other.RawPath = strings.TrimSuffix(pu.Path, "r 1")+"other", ""
	refused("another blob's path with the same signature", other.String())

	// The result is still there and the genuine URL still works.
	if r := fetch(t, c, http.MethodGet, u); r.status != 200 || r.body != body {
		t.Errorf("GET of the genuine URL after the refusals: %d %q", r.status, r.body)
	}
	// PUT did not write.
	rd, err := s.Open(ctx, "dir/r 1")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if string(got) != body {
		t.Errorf("after a refused PUT the result holds %q", got)
	}
}

// TestSASExpires: a URL signed to expire 2 s ahead is served until then
// and refused with 403 after.
func TestSASExpires(t *testing.T) {
	tb := newTestbed(t)
	s, sg := tb.signed(t)
	c := tb.srv.HTTPClient()
	if _, err := s.Put(t.Context(), "k", strings.NewReader("soon gone"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(2 * time.Second)
	u, err := sg.SignedURL(t.Context(), "k", expiry)
	if err != nil {
		t.Fatal(err)
	}
	if r := fetch(t, c, http.MethodGet, u); r.status != 200 && time.Now().Before(expiry.Truncate(time.Second)) {
		t.Errorf("GET before the expiry: %d %q", r.status, r.body)
	}
	time.Sleep(time.Until(expiry) + 1500*time.Millisecond)
	if r := fetch(t, c, http.MethodGet, u); r.status != http.StatusForbidden {
		t.Errorf("GET after the expiry: %d %q, want 403", r.status, r.body)
	}
}

// TestSASBeyondKeyLifetime: expiries are bounded by Azure's 7 days, and a
// URL expiring after the cached key gets a key that outlives it.
func TestSASBeyondKeyLifetime(t *testing.T) {
	tb := newTestbed(t)
	var k keyFetches
	s, sg := tb.signed(t, withKeyCounter(&k))
	ctx := t.Context()
	if _, err := s.Put(ctx, "k", strings.NewReader("far"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.SignedURL(ctx, "k", time.Now().Add(MaxKeyLifetime+time.Minute)); !errors.Is(err, urlsign.ErrTooLong) {
		t.Errorf("SignedURL beyond 7 days: %v, want ErrTooLong", err)
	}
	if n := k.n.Load(); n != 1 {
		t.Errorf("%d key fetches after opening, want 1", n)
	}
	for _, d := range []time.Duration{time.Hour, 3 * 24 * time.Hour, MaxKeyLifetime - time.Minute} {
		expiry := time.Now().Add(d)
		u, err := sg.SignedURL(ctx, "k", expiry)
		if err != nil {
			t.Fatalf("SignedURL %v ahead: %v", d, err)
		}
		pu, _ := url.Parse(u)
		ske, err := time.Parse(time.RFC3339, pu.Query().Get("ske"))
		if err != nil || ske.Before(expiry.Truncate(time.Second)) {
			t.Errorf("URL %v ahead: key expiry ske=%q before the URL's %v", d, pu.Query().Get("ske"), expiry)
		}
		if r := fetch(t, tb.srv.HTTPClient(), http.MethodGet, u); r.status != 200 || r.body != "far" {
			t.Errorf("GET of the URL %v ahead: %d %q", d, r.status, r.body)
		}
	}
	// The 1-hour URL used the first key; the 3-day and the 7-day ones
	// each needed a new one.
	if n := k.n.Load(); n != 3 {
		t.Errorf("%d key fetches, want 3", n)
	}
}

// TestKeyCached: many URLs, signed concurrently, share the key fetched
// when the signer opened; a key near its expiry is renewed once, by
// concurrent callers sharing the fetch.
func TestKeyCached(t *testing.T) {
	tb := newTestbed(t)
	var k keyFetches
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, sg := tb.signed(t, withKeyCounter(&k), func(o *Options) { o.Now = clock })
	ctx := t.Context()
	if _, err := s.Put(ctx, "k", strings.NewReader("cached"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	signMany := func() map[string]bool {
		var wg sync.WaitGroup
		var smu sync.Mutex
		skts := map[string]bool{}
		for range 20 {
			wg.Go(func() {
				for range 5 {
					u, err := sg.SignedURL(ctx, "k", clock().Add(time.Hour))
					if err != nil {
						t.Error(err)
						return
					}
					pu, _ := url.Parse(u)
					smu.Lock()
					skts[pu.Query().Get("skt")+" "+pu.Query().Get("ske")] = true
					smu.Unlock()
				}
			})
		}
		wg.Wait()
		return skts
	}
	if keys := signMany(); len(keys) != 1 || k.n.Load() != 1 {
		t.Errorf("100 URLs: signed with keys %v, %d key fetches; want 1 key, 1 fetch (the signer's opening)", keys, k.n.Load())
	}
	d := sg.Driver().(*Signer)
	first := d.KeyExpiry()
	if want := now.Add(DefaultKeyLifetime).UTC().Truncate(time.Second); !first.Equal(want) {
		t.Errorf("key expiry %v, want %v (2 days)", first, want)
	}
	// Half a day later the key has more than a day left: kept.
	mu.Lock()
	now = now.Add(12 * time.Hour)
	mu.Unlock()
	if signMany(); k.n.Load() != 1 {
		t.Errorf("half a day later: %d key fetches, want 1", k.n.Load())
	}
	// 25 hours after it was fetched less than a day is left: renewed,
	// once.
	mu.Lock()
	now = now.Add(13 * time.Hour)
	mu.Unlock()
	keys := signMany()
	if k.n.Load() != 2 || len(keys) != 1 {
		t.Errorf("25 hours later: %d key fetches, keys %v; want 2 fetches, one key", k.n.Load(), keys)
	}
	if e := d.KeyExpiry(); !e.After(first) {
		t.Errorf("renewed key expires %v, not after the first's %v", e, first)
	}
}

// failKeyFetches is a pipeline policy that fails Get User Delegation Key
// requests while it is on.
type failKeyFetches struct{ on atomic.Bool }

func (f *failKeyFetches) Do(req *policy.Request) (*http.Response, error) {
	if f.on.Load() && req.Raw().URL.Query().Get("comp") == "userdelegationkey" {
		return nil, errors.New("key service unreachable (test)")
	}
	return req.Next()
}

// TestKeyRenewalFails: when the renewal of a key due for it fails, URLs
// the cached key still covers are signed with it and served; a URL it
// does not cover is an error, never a URL outliving its key.
func TestKeyRenewalFails(t *testing.T) {
	tb := newTestbed(t)
	var f failKeyFetches
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, sg := tb.signed(t, func(o *Options) {
		co := *o.ClientOptions
		co.PerCallPolicies = append(append([]policy.Policy(nil), co.PerCallPolicies...), &f)
		co.Retry.MaxRetries = -1 // no retries of the failing fetch
		o.ClientOptions = &co
		o.Now = clock
	})
	ctx := t.Context()
	if _, err := s.Put(ctx, "k", strings.NewReader("kept"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	keyExpiry := sg.Driver().(*Signer).KeyExpiry()
	f.on.Store(true)
	mu.Lock()
	now = now.Add(30 * time.Hour) // 18 hours left: due for renewal
	mu.Unlock()
	u, err := sg.SignedURL(ctx, "k", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("SignedURL with the renewal failing and the key still valid: %v", err)
	}
	if r := fetch(t, tb.srv.HTTPClient(), http.MethodGet, u); r.status != 200 || r.body != "kept" {
		t.Errorf("GET of the URL signed with the cached key: %d %q", r.status, r.body)
	}
	if u, err := sg.SignedURL(ctx, "k", keyExpiry.Add(time.Hour)); err == nil {
		t.Errorf("SignedURL expiring after the cached key, renewal failing: %s, want an error", u)
	}
	f.on.Store(false)
	if _, err := sg.SignedURL(ctx, "k", keyExpiry.Add(time.Hour)); err != nil {
		t.Errorf("SignedURL once key fetches work again: %v", err)
	}
	if e := sg.Driver().(*Signer).KeyExpiry(); !e.After(keyExpiry) {
		t.Errorf("key expiry %v after the renewal, want after %v", e, keyExpiry)
	}
}

// requests is a pipeline policy counting the requests made.
type requests struct{ n atomic.Int64 }

func (r *requests) Do(req *policy.Request) (*http.Response, error) {
	r.n.Add(1)
	return req.Next()
}

// A URL signed with the content type the core's record holds
// (urlsign.Signer.SignedURLTyped) costs no request to Azure while the key
// is cached, names the same download as one that reads the type from the
// blob, and is served by Azurite.
func TestSignedURLTypedMakesNoRequest(t *testing.T) {
	tb := newTestbed(t)
	var reqs requests
	s, sg := tb.signed(t, func(o *Options) {
		co := *o.ClientOptions
		co.PerCallPolicies = append(append([]policy.Policy(nil), co.PerCallPolicies...), &reqs)
		o.ClientOptions = &co
	})
	ctx := t.Context()
	if _, err := s.Put(ctx, "typed", strings.NewReader(`{"a":1}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(10 * time.Minute)
	before := reqs.n.Load()
	typed, err := sg.SignedURLTyped(ctx, "typed", "application/json", exp)
	if err != nil {
		t.Fatal(err)
	}
	if n := reqs.n.Load() - before; n != 0 {
		t.Fatalf("SignedURLTyped made %d requests, want none", n)
	}
	read, err := sg.SignedURL(ctx, "typed", exp)
	if err != nil {
		t.Fatal(err)
	}
	if reqs.n.Load()-before != 1 {
		t.Fatalf("SignedURL made %d requests, want 1 (Get Blob Properties)", reqs.n.Load()-before)
	}
	tu, _ := url.Parse(typed)
	ru, _ := url.Parse(read)
	if tu.Query().Get("rscd") != ru.Query().Get("rscd") || tu.Query().Get("rscd") == "" {
		t.Fatalf("download names differ: typed %q, read %q", tu.Query().Get("rscd"), ru.Query().Get("rscd"))
	}
	resp, err := tb.srv.HTTPClient().Get(typed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != `{"a":1}` {
		t.Fatalf("GET typed URL = %d %q", resp.StatusCode, b)
	}
}
