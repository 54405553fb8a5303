package api

import (
	"container/list"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/trustedproxy"
)

// RateLimit is a token bucket: Rate requests a second on average, Burst at
// once. A Rate <= 0 is no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// RateLimits are the api's request rates per principal (see Config). The
// zero value limits nothing.
type RateLimits struct {
	// Submit limits the requests to submit routes.
	Submit RateLimit
	// Read limits every other request the api serves (status reads and
	// long-polls, events, results by id, list, cancel, retry, the seed's
	// /api routes, openapi.json, and paths that are no route's), except
	// /healthz, /readyz, /metrics and the signed result URLs, which are
	// never limited.
	Read RateLimit
	// MaxKeys bounds the buckets each of the two limits keeps (one per
	// principal, or per client address for anonymous callers); beyond it
	// the least recently used bucket is dropped. Default
	// DefaultRateLimitKeys.
	MaxKeys int
}

// DefaultRateLimitKeys is the default of RateLimits.MaxKeys: a bucket
// takes about 250 bytes, so each limit's buckets stay under ~8 MiB.
const DefaultRateLimitKeys = 32768

// bucketKey is whose bucket a request draws from: an authenticated
// principal's own ("p:" and the principal), or, for an anonymous caller,
// the client's address ("ip:" and the address; an IPv6 address by its
// /64, which is what one host or customer of a provider usually gets, so
// that rotating addresses within it is one bucket). An admin has no
// bucket: admins are not rate limited.
func (s *Server) bucketKey(r *http.Request) (key string, limited bool) {
	c, _ := arr.CallerFrom(r.Context())
	if c.Admin {
		return "", false
	}
	if c.Principal != "" && c.Principal != arr.Anonymous {
		return "p:" + c.Principal, true
	}
	a, ok := s.clientAddr(r)
	if !ok {
		return "ip:" + r.RemoteAddr, true
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String(), true
	}
	return "ip:" + a.String(), true
}

// clientKey is whom r counts against, for the rate limits and the stream
// caps alike: bucketKey's key, "" for an admin.
func (s *Server) clientKey(r *http.Request) string {
	key, _ := s.bucketKey(r)
	return key
}

// clientAddr is the address of the client that sent r: its direct peer,
// or, when the peer is a trusted proxy (Config.TrustedProxies), the last
// address of X-Forwarded-For (or of Forwarded's for=) that is not itself
// a trusted proxy: the one the first trusted proxy saw. Addresses before
// it were written by the client and are not believed.
func (s *Server) clientAddr(r *http.Request) (netip.Addr, bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok || !trustedproxy.Contains(s.trusted, r.RemoteAddr) {
		return peer, ok
	}
	var hops []string
	for _, v := range r.Header.Values("Forwarded") {
		for elem := range strings.SplitSeq(v, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && asciiLower(strings.TrimSpace(k)) == "for" {
					hops = append(hops, strings.Trim(strings.TrimSpace(val), `"`))
				}
			}
		}
	}
	if len(hops) == 0 {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for h := range strings.SplitSeq(v, ",") {
				hops = append(hops, strings.TrimSpace(h))
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseAddr(hops[i])
		if !ok {
			break // unknown or obfuscated: the last trusted hop is the client
		}
		peer = a
		if !trustedproxy.Contains(s.trusted, a.String()) {
			break
		}
	}
	return peer, true
}

// parseAddr reads an address as a RemoteAddr or a forwarding header gives
// it: ip, ip:port, [ipv6] or [ipv6]:port; zones dropped, IPv4-mapped
// addresses unmapped.
func parseAddr(s string) (netip.Addr, bool) {
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// limiter is one rate limit's buckets, at most max of them: a map and a
// least-recently-used list under one lock. A bucket idle long enough to
// be full again is dropped when a new one is made (it is the same as a
// new one), and the least recently used goes when there are max.
type limiter struct {
	name  string // the policy's name in the RateLimit fields
	limit rate.Limit
	burst int
	max   int
	// policy is the RateLimit-Policy field value, the same on every
	// response.
	policy string
	// refill is how long an empty bucket takes to fill.
	refill time.Duration

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front: most recently used
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	used time.Time
}

func newLimiter(name string, l RateLimit, maxKeys int) *limiter {
	if l.Rate <= 0 {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = DefaultRateLimitKeys
	}
	burst := max(l.Burst, 1)
	refill := time.Duration(float64(burst) / l.Rate * float64(time.Second))
	return &limiter{name: name, limit: rate.Limit(l.Rate), burst: burst, max: maxKeys,
		refill: refill, buckets: map[string]*list.Element{},
		// draft-ietf-httpapi-ratelimit-headers-10 §3: the quota q a
		// client has within a window of w seconds; a bucket of burst
		// tokens is full again after burst/rate seconds.
		policy: strconv.Quote(name) + ";q=" + strconv.Itoa(burst) + ";w=" + strconv.FormatInt(ceilSeconds(refill), 10)}
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}

// take draws one token from key's bucket at now. It returns whether the
// request may proceed, the tokens left (whole), how long until the bucket
// is full again, and, when it may not, how long until a token is there.
func (l *limiter) take(key string, now time.Time) (ok bool, left int, full, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e := l.buckets[key]; e != nil {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		if back := l.lru.Back(); back != nil {
			if old := back.Value.(*bucket); len(l.buckets) >= l.max || now.Sub(old.used) >= l.refill {
				l.lru.Remove(back)
				delete(l.buckets, old.key)
			}
		}
		b = &bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = l.lru.PushFront(b)
	}
	b.used = now
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		b.lim.AllowN(now, 1)
		tokens--
		ok = true
	} else {
		wait = time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
	}
	full = time.Duration((float64(l.burst) - tokens) / float64(l.limit) * float64(time.Second))
	return ok, int(math.Floor(max(tokens, 0))), full, wait
}

// size is the number of buckets held.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// admit charges r to l (nil: no limit). It sets the RateLimit-Policy and
// RateLimit fields of draft-ietf-httpapi-ratelimit-headers-10 (RateLimit:
// the whole tokens left, r, and the seconds until the bucket is full
// again, t) and, over the limit, answers 429 with Retry-After (the time
// until the next token) and returns false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, l *limiter) bool {
	if l == nil {
		return true
	}
	key, limited := s.bucketKey(r)
	if !limited {
		return true
	}
	ok, left, full, wait := l.take(key, time.Now())
	h := w.Header()
	h.Set("RateLimit-Policy", l.policy)
	h.Set("RateLimit", strconv.Quote(l.name)+";r="+strconv.Itoa(left)+";t="+strconv.FormatInt(ceilSeconds(full), 10))
	if ok {
		return true
	}
	s.metrics.rateLimited.WithLabelValues(l.name).Inc()
	setRetryAfter(w, wait)
	writeProblem(w, http.StatusTooManyRequests, ProblemRateLimited, "Too many requests",
		"this client is over its "+l.name+" rate of "+strconv.FormatFloat(float64(l.limit), 'f', -1, 64)+
			" requests a second (bursts of "+strconv.Itoa(l.burst)+"); retry after the time Retry-After gives")
	return false
}
