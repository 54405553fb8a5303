package api

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
)

// However many clients come, a limit keeps at most MaxKeys buckets: an
// attacker rotating addresses costs a bounded amount of memory.
func TestLimiterBucketsBounded(t *testing.T) {
	l := newLimiter("submit", RateLimit{Rate: 1, Burst: 5}, 100)
	now := time.Now()
	for i := range 10000 {
		if ok, _, _, _ := l.take(fmt.Sprintf("ip:2001:db8:%x::/64", i), now); !ok {
			t.Fatalf("a new client's first request was refused")
		}
	}
	if n := l.size(); n != 100 {
		t.Fatalf("%d buckets, want 100", n)
	}
	// A bucket idle until full again is dropped when another is made.
	l = newLimiter("submit", RateLimit{Rate: 10, Burst: 5}, 100)
	l.take("a", now)
	l.take("b", now.Add(time.Second)) // a refilled 5 tokens in 0.5 s: dropped
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets, want 1: the idle, full one is dropped", n)
	}
}

// The bucket's arithmetic: burst at once, then the rate; the wait and the
// time to full say when.
func TestLimiterTake(t *testing.T) {
	l := newLimiter("submit", RateLimit{Rate: 2, Burst: 3}, 0)
	if l.policy != `"submit";q=3;w=2` {
		t.Fatalf("policy %s", l.policy)
	}
	now := time.Now()
	for i := range 3 {
		ok, left, _, _ := l.take("k", now)
		if !ok || left != 2-i {
			t.Fatalf("take %d: ok %v, left %d", i, ok, left)
		}
	}
	ok, left, full, wait := l.take("k", now)
	if ok || left != 0 || wait != 500*time.Millisecond || full != 1500*time.Millisecond {
		t.Fatalf("over: ok %v left %d full %v wait %v", ok, left, full, wait)
	}
	if ok, _, _, _ := l.take("k", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("no token after the wait")
	}
}

// Whose bucket: an authenticated principal's own; an anonymous caller's
// address (an IPv6 one by its /64; behind a trusted proxy, the forwarded
// one); none for an admin.
func TestBucketKey(t *testing.T) {
	s := &Server{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, c := range []struct {
		caller arr.Caller
		remote string
		xff    string
		want   string
	}{
		{arr.Caller{Principal: "bob"}, "192.0.2.1:1", "", "p:bob"},
		{arr.Caller{Principal: arr.Anonymous}, "192.0.2.1:1", "", "ip:192.0.2.1"},
		{arr.Caller{Principal: arr.Anonymous}, "[2001:db8:a:b:1:2:3:4]:1", "", "ip:2001:db8:a:b::/64"},
		{arr.Caller{Principal: arr.Anonymous}, "[::ffff:192.0.2.9]:1", "", "ip:192.0.2.9"},
		{arr.Caller{Principal: arr.Anonymous}, "192.0.2.1:1", "198.51.100.1", "ip:192.0.2.1"},   // untrusted peer
		{arr.Caller{Principal: arr.Anonymous}, "10.1.1.1:1", "198.51.100.1", "ip:198.51.100.1"}, // trusted proxy
		{arr.Caller{Principal: arr.Anonymous}, "10.1.1.1:1", "1.2.3.4, 198.51.100.1, 10.2.2.2", "ip:198.51.100.1"},
		{arr.Caller{Principal: arr.Anonymous}, "10.1.1.1:1", "garbage", "ip:10.1.1.1"},
		{arr.Caller{Principal: "root", Admin: true}, "192.0.2.1:1", "", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		r = r.WithContext(arr.WithCaller(r.Context(), c.caller))
		if got, _ := s.bucketKey(r); got != c.want {
			t.Errorf("%+v from %s (XFF %q): key %q, want %q", c.caller, c.remote, c.xff, got, c.want)
		}
	}
}
