package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers from its table and counts the lookups.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	err   error
	calls map[string]int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	host = strings.ToLower(strings.TrimSuffix(host, ".")) // as DNS does
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[host]++
	if r.err != nil {
		return nil, r.err
	}
	var out []netip.Addr
	for _, s := range r.addrs[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true, Server: "10.9.9.9:53"}
	}
	return out, nil
}

func (r *fakeResolver) lookups(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// target is a test server on 127.0.0.1 that counts its requests.
type target struct {
	*httptest.Server
	port string
	hits atomic.Int32
}

func newTarget(t *testing.T, h http.HandlerFunc) *target {
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(tg.Close)
	_, tg.port, _ = net.SplitHostPort(tg.Listener.Addr().String())
	return tg
}

func mustAllow(t *testing.T, entries ...string) AllowList {
	l, err := ParseAllowList(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newSender(t *testing.T, cfg Config) *Sender {
	s := NewSender(cfg)
	t.Cleanup(s.Close)
	return s
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func TestSendDelivers(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"cb_1","source":"/x","type":"t"}`)
	key := DeriveSecret([]byte("m"), "route:a")
	var got struct {
		sync.Mutex
		h    http.Header
		body []byte
		meth string
	}
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Lock()
		got.h, got.body, got.meth = r.Header.Clone(), b, r.Method
		got.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1:"+tg.port)})
	h := http.Header{}
	SetHeaders(h, "cb_1", time.Now(), body, key)
	r := s.Send(t.Context(), tg.URL+"/hook?x=1", h, body)
	if !r.Delivered || r.Status != 204 || r.Err != nil || r.Gone || r.Refused {
		t.Fatalf("Send = %+v, want delivered 204", r)
	}
	got.Lock()
	defer got.Unlock()
	if got.meth != http.MethodPost || string(got.body) != string(body) {
		t.Fatalf("the target got %s %q", got.meth, got.body)
	}
	if got.h.Get("Content-Type") != ContentType || got.h.Get("User-Agent") != DefaultUserAgent {
		t.Fatalf("Content-Type %q, User-Agent %q", got.h.Get("Content-Type"), got.h.Get("User-Agent"))
	}
	if err := Verify(key, got.h, got.body, time.Now(), 0); err != nil {
		t.Fatalf("the target cannot verify what it got: %v", err)
	}
}

func TestSendHTTPS(t *testing.T) {
	tg := httptest.NewUnstartedServer(status(200))
	tg.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the second sender fails
	tg.StartTLS()
	defer tg.Close()
	_, port, _ := net.SplitHostPort(tg.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(tg.Certificate())
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1:"+port), TLS: &tls.Config{RootCAs: roots}})
	if r := s.Send(t.Context(), tg.URL, nil, []byte("{}")); !r.Delivered {
		t.Fatalf("https with the right roots: %+v", r)
	}
	untrusting := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1:"+port)})
	r := untrusting.Send(t.Context(), tg.URL, nil, []byte("{}"))
	if r.Delivered || r.Refused || r.Err == nil || !strings.HasPrefix(r.Err.Error(), "TLS: ") {
		t.Fatalf("https with the system roots: %+v, want a TLS error", r)
	}
}

func TestSendRefusesNonPublicTargets(t *testing.T) {
	tg := newTarget(t, status(204))
	res := &fakeResolver{addrs: map[string][]string{
		"internal.test": {"10.0.0.1"},
		"mixed.test":    {"93.184.216.34", "10.0.0.1"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"loop.test":     {"127.0.0.1"},
	}}
	for _, c := range []struct {
		name, url string
		allow     []string
	}{
		{"loopback, no list", tg.URL, nil},
		{"loopback, wildcard", tg.URL, []string{"*"}},
		{"loopback, wildcard on its port", tg.URL, []string{"*:" + tg.port}},
		{"loopback, another port", tg.URL, []string{"127.0.0.1:1"}},
		{"IPv6 loopback", "http://[::1]:" + tg.port + "/", nil},
		{"IPv4-mapped loopback", "http://[::ffff:127.0.0.1]:" + tg.port + "/", nil},
		{"metadata", "http://169.254.169.254/latest/meta-data/", nil},
		{"IPv6 metadata", "http://[fd00:ec2::254]/", nil},
		{"unspecified", "http://0.0.0.0:" + tg.port + "/", nil},
		{"name to private", "http://internal.test/", []string{"*.test"}},
		{"name to public and private", "http://mixed.test/", nil},
		{"name to mapped loopback", "http://mapped.test:" + tg.port + "/", nil},
		{"name to loopback, IP allowed on another port", "http://loop.test:" + tg.port + "/", []string{"127.0.0.1:1"}},
	} {
		s := newSender(t, Config{Allow: mustAllow(t, c.allow...), Resolver: res, Timeout: 5 * time.Second})
		start := time.Now()
		r := s.Send(t.Context(), c.url, nil, []byte("{}"))
		if !r.Refused || !errors.Is(r.Err, ErrRefused) || r.Delivered || r.Status != 0 {
			t.Errorf("%s: Send = %+v, want refused", c.name, r)
			continue
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s: the refusal took %v", c.name, time.Since(start))
		}
		if strings.Contains(r.Err.Error(), "10.0.0.1") || strings.Contains(r.Err.Error(), "dial") {
			t.Errorf("%s: the error %q shows what the name resolves to or the dialer's wording", c.name, r.Err)
		}
	}
	if n := tg.hits.Load(); n != 0 {
		t.Fatalf("the loopback target was reached %d times", n)
	}
}

func TestSendExemptions(t *testing.T) {
	tg := newTarget(t, status(200))
	res := &fakeResolver{addrs: map[string][]string{
		"exempt.test": {"127.0.0.1"},
		"byip.test":   {"127.0.0.1"},
	}}
	for _, c := range []struct {
		name, url string
		allow     string
	}{
		{"IP literal and port", tg.URL, "127.0.0.1:" + tg.port},
		{"IP literal, any port", tg.URL, "127.0.0.1"},
		{"name", "http://exempt.test:" + tg.port + "/", "exempt.test"},
		{"name and port", "http://EXEMPT.test.:" + tg.port + "/", "exempt.test:" + tg.port},
		{"resolved address", "http://byip.test:" + tg.port + "/", "127.0.0.1:" + tg.port},
	} {
		before := tg.hits.Load()
		s := newSender(t, Config{Allow: mustAllow(t, c.allow), Resolver: res})
		if r := s.Send(t.Context(), c.url, nil, nil); !r.Delivered {
			t.Errorf("%s: Send = %+v, want delivered", c.name, r)
		} else if tg.hits.Load() != before+1 {
			t.Errorf("%s: the target was not reached", c.name)
		}
	}
	// The name is resolved once per connection, by the sender itself, and
	// the connection goes to that answer.
	if n := res.lookups("exempt.test"); n != 2 {
		t.Errorf("exempt.test was looked up %d times, want 2 (once per connection)", n)
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	var tg *target
	tg = newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, tg.URL+"/final", http.StatusTemporaryRedirect)
	})
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1")})
	r := s.Send(t.Context(), tg.URL+"/start", nil, []byte("{}"))
	if r.Delivered || r.Status != http.StatusTemporaryRedirect || r.Err == nil || !strings.Contains(r.Err.Error(), "redirects are not followed") {
		t.Fatalf("Send = %+v, want a failed 307", r)
	}
	if followed.Load() {
		t.Fatal("the redirect was followed")
	}
}

func TestSendStatuses(t *testing.T) {
	date := time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat)
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gone":
			w.WriteHeader(http.StatusGone)
		case "/busy":
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow-down":
			w.Header().Set("Retry-After", date)
			w.WriteHeader(http.StatusTooManyRequests)
		case "/error":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusInternalServerError)
		case "/ok":
			w.Header().Set("Retry-After", "7")
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		}
	})
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1"), MaxResponseBytes: 1024})
	send := func(path string) Result { return s.Send(t.Context(), tg.URL+path, nil, nil) }

	if r := send("/gone"); !r.Gone || r.Delivered || r.Refused || r.Status != 410 || r.Err == nil {
		t.Errorf("410: %+v", r)
	}
	if r := send("/busy"); r.Gone || r.Delivered || r.Status != 503 || r.RetryAfter != 2*time.Minute {
		t.Errorf("503 Retry-After 120: %+v", r)
	}
	if r := send("/slow-down"); r.Status != 429 || r.RetryAfter < 9*time.Minute || r.RetryAfter > 10*time.Minute {
		t.Errorf("429 Retry-After %s: %+v", date, r)
	}
	if r := send("/error"); r.Status != 500 || r.RetryAfter != 7*time.Second || r.Err == nil || r.Refused || r.Gone {
		t.Errorf("500: %+v", r)
	} else if r.Err.Error() != "the target answered 500 Internal Server Error" {
		t.Errorf("500: Err = %q", r.Err)
	}
	if r := send("/ok"); !r.Delivered || r.Err != nil || r.RetryAfter != 0 {
		t.Errorf("200 with a big body: %+v", r)
	}
}

func TestSendBoundsConcurrencyPerDestination(t *testing.T) {
	const limit = 2
	var inFlight, most atomic.Int32
	slow := func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		inFlight.Add(-1)
	}
	a, b := newTarget(t, slow), newTarget(t, status(204))
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1"), MaxPerDestination: limit})
	var wg sync.WaitGroup
	var delivered atomic.Int32
	for range 10 {
		wg.Go(func() {
			if s.Send(t.Context(), a.URL, nil, nil).Delivered {
				delivered.Add(1)
			}
		})
	}
	// Another destination is not held up by the first one's queue.
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if r := s.Send(t.Context(), b.URL, nil, nil); !r.Delivered || time.Since(start) > 200*time.Millisecond {
		// Queued behind the first, it would wait some 400 ms.
		t.Errorf("another destination waited %v: %+v", time.Since(start), r)
	}
	wg.Wait()
	if delivered.Load() != 10 {
		t.Fatalf("%d of 10 delivered", delivered.Load())
	}
	if m := most.Load(); m != limit {
		t.Fatalf("at most %d requests were in flight, want exactly %d", m, limit)
	}
	s.mu.Lock()
	left := len(s.dests)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d destinations still held after all sends", left)
	}
}

func TestSendWaitForSlotHonoursContext(t *testing.T) {
	release := make(chan struct{})
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1"), MaxPerDestination: 1})
	first := make(chan Result, 1)
	go func() { first <- s.Send(t.Context(), tg.URL, nil, nil) }()
	for tg.hits.Load() == 0 {
		select {
		case r := <-first:
			t.Fatalf("the first Send ended: %+v", r)
		case <-time.After(time.Millisecond):
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := s.Send(ctx, tg.URL, nil, nil)
	if r.Delivered || r.Status != 0 || r.Err == nil || r.Refused || time.Since(start) > time.Second {
		t.Fatalf("Send waiting for a slot past its context = %+v after %v", r, time.Since(start))
	}
	if n := tg.hits.Load(); n != 1 {
		t.Fatalf("the target got %d requests, want 1", n)
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1"), Timeout: 200 * time.Millisecond})
	start := time.Now()
	r := s.Send(t.Context(), tg.URL, nil, nil)
	if r.Delivered || r.Err == nil || r.Err.Error() != "no answer within 200ms" {
		t.Fatalf("Send to a silent target = %+v", r)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("the attempt took %v", d)
	}
}

func TestSendErrorsAreSafeToShow(t *testing.T) {
	// A connection reset: the error must not show arr's side of it.
	var clientAddr atomic.Value
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		clientAddr.Store(r.RemoteAddr)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	})
	s := newSender(t, Config{Allow: mustAllow(t, "127.0.0.1")})
	r := s.Send(t.Context(), tg.URL, nil, nil)
	_, localPort, _ := net.SplitHostPort(clientAddr.Load().(string))
	if r.Delivered || r.Err == nil || strings.Contains(r.Err.Error(), ":"+localPort) {
		t.Fatalf("reset: %+v (arr's side was port %s)", r, localPort)
	}

	// A refused connection.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String() + "/"
	l.Close()
	if r := s.Send(t.Context(), closed, nil, nil); r.Err == nil || r.Err.Error() != "connection refused" || r.Refused {
		t.Fatalf("closed port: %+v", r)
	}

	// DNS failures: without the DNS server's address.
	res := &fakeResolver{err: &net.DNSError{Err: "server misbehaving", Name: "x.test", Server: "10.9.9.9:53", IsTemporary: true}}
	s = newSender(t, Config{Resolver: res})
	if r := s.Send(t.Context(), "https://x.test/", nil, nil); r.Err == nil || r.Err.Error() != "cannot resolve x.test: DNS lookup failed" || r.Refused {
		t.Fatalf("DNS failure: %+v", r)
	}
	res = &fakeResolver{}
	s = newSender(t, Config{Resolver: res})
	if r := s.Send(t.Context(), "https://nowhere.test/", nil, nil); r.Err == nil || r.Err.Error() != "cannot resolve nowhere.test: no such host" {
		t.Fatalf("unknown host: %+v", r)
	}

	// An invalid URL is refused before anything else.
	if r := s.Send(t.Context(), "https://u:p@x.test/", nil, nil); !r.Refused || !errors.Is(r.Err, ErrInvalidURL) {
		t.Fatalf("invalid URL: %+v", r)
	}
}

func TestDestKey(t *testing.T) {
	for raw, want := range map[string]string{
		"https://Hooks.Example.com./x":    "hooks.example.com:443",
		"http://hooks.example.com/":       "hooks.example.com:80",
		"http://hooks.example.com:08080/": "hooks.example.com:8080",
		"http://[2001:DB8::1]/":           "[2001:db8::1]:80",
	} {
		u, _ := url.Parse(raw)
		if got := Destination(u); got != want {
			t.Errorf("Destination(%q) = %q, want %q", raw, got, want)
		}
	}
}
