package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sender defaults (Config).
const (
	DefaultTimeout           = 10 * time.Second
	DefaultMaxPerDestination = 4
	DefaultMaxResponseBytes  = 64 << 10
	DefaultUserAgent         = "arr-callback/1"
)

// ErrRefused is what the errors of targets that the address rule refuses
// wrap (Result.Refused).
var ErrRefused = errors.New("callback target refused")

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Sender. The zero value of each field means its
// default.
type Config struct {
	// Allow exempts targets from the address rule: a host[:port] that an
	// exact entry names (AllowList.Exempt) may resolve to any address, as
	// may a target whose resolved address an exact entry names.
	Allow AllowList
	// Timeout bounds an attempt, from resolving and connecting to the end
	// of the answer; the wait for a slot (MaxPerDestination) before it is
	// bounded by Send's context only. Default: DefaultTimeout (10 s).
	Timeout time.Duration
	// MaxPerDestination bounds the attempts in flight to one host:port
	// (the URL's host, as named, and port). Default:
	// DefaultMaxPerDestination (4).
	MaxPerDestination int
	// Resolver resolves target names. Default: net.DefaultResolver.
	Resolver Resolver
	// UserAgent is sent when the header given to Send has none. Default:
	// DefaultUserAgent.
	UserAgent string
	// MaxResponseBytes is how much of an answer's body is read (and thrown
	// away) before the connection is closed. Default:
	// DefaultMaxResponseBytes (64 KiB).
	MaxResponseBytes int64
	// TLS configures https targets (a private CA, say). Default: the
	// system's roots.
	TLS *tls.Config
}

// Result is the outcome of one attempt.
type Result struct {
	// Status is the answer's HTTP status; 0 when there was no answer.
	Status int
	// RetryAfter is what the answer's Retry-After asked for (delay-seconds
	// or an HTTP date, whatever the status), capped at DefaultMaxAge; 0
	// when it asked for nothing or the callback was delivered.
	RetryAfter time.Duration
	// Delivered: the target answered 2xx. The callback is done.
	Delivered bool
	// Gone: the target answered 410. Stop calling it back for good.
	Gone bool
	// Refused: the URL is invalid or its target is refused by the address
	// rule. Retrying cannot help unless the configuration changes.
	Refused bool
	// Err says why the callback was not delivered; nil when it was. Its
	// text names the target at most, never an address of arr's own
	// network: it may be shown to the operation's owner.
	Err error
}

// Sender makes callback attempts. It is safe for concurrent use.
type Sender struct {
	allow    AllowList
	timeout  time.Duration
	maxPer   int
	resolver Resolver
	ua       string
	maxResp  int64
	client   *http.Client

	mu    sync.Mutex
	dests map[string]*destination
}

type destination struct {
	slots chan struct{}
	users int // attempts holding or waiting for a slot
}

// NewSender returns a Sender with cfg's settings (see Config for defaults).
//
// Its HTTP client uses no proxy (not even one from the environment),
// follows no redirect (a 3xx is a failed attempt), and connects only
// through a dialer that resolves the host itself, refuses it when any of
// its addresses is not public (IsPublic) unless cfg.Allow exempts it, and
// then connects to exactly the addresses it checked, checking each once
// more as the socket connects.
func NewSender(cfg Config) *Sender {
	s := &Sender{
		allow:    cfg.Allow,
		timeout:  cfg.Timeout,
		maxPer:   cfg.MaxPerDestination,
		resolver: cfg.Resolver,
		ua:       cfg.UserAgent,
		maxResp:  cfg.MaxResponseBytes,
		dests:    map[string]*destination{},
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxPer <= 0 {
		s.maxPer = DefaultMaxPerDestination
	}
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	if s.ua == "" {
		s.ua = DefaultUserAgent
	}
	if s.maxResp <= 0 {
		s.maxResp = DefaultMaxResponseBytes
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            s.dial,
		TLSClientConfig:        cfg.TLS,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    s.timeout,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    s.maxPer,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
	s.client = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return s
}

// Close closes the Sender's idle connections. Sends still in flight finish.
func (s *Sender) Close() {
	s.client.CloseIdleConnections()
}

// Send POSTs body to target with header (plus Content-Type: ContentType and
// User-Agent when header has none), and reports the outcome. It waits for
// one of the target's MaxPerDestination slots as long as ctx allows, then
// bounds the attempt by the Timeout. target is checked with CheckURL; the
// address rule is applied when connecting (see NewSender). Send does not
// check that a request may name target (AllowList.Names): that is for the
// caller, when the request names it.
func (s *Sender) Send(ctx context.Context, target string, header http.Header, body []byte) Result {
	u, err := CheckURL(target)
	if err != nil {
		return Result{Refused: true, Err: err}
	}
	release, err := s.acquire(ctx, Destination(u))
	if err != nil {
		return Result{Err: errors.New("the attempt was canceled before it was made")}
	}
	defer release()

	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Result{Refused: true, Err: fmt.Errorf("%w: %v", ErrInvalidURL, err)}
	}
	for k, v := range header {
		req.Header[k] = append([]string(nil), v...)
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ContentType)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", s.ua)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return s.failure(ctx, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, s.maxResp))
	resp.Body.Close()

	code := resp.StatusCode
	r := Result{Status: code}
	switch {
	case code >= 200 && code <= 299:
		r.Delivered = true
		return r
	case code == http.StatusGone:
		r.Gone = true
		r.Err = errors.New("the target answered 410 Gone: it wants no more callbacks")
	case code >= 300 && code <= 399:
		r.Err = fmt.Errorf("the target answered %d %s; redirects are not followed: give the final URL", code, http.StatusText(code))
	default:
		r.Err = fmt.Errorf("the target answered %d %s", code, http.StatusText(code))
	}
	r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return r
}

// acquire takes one of key's slots, waiting as long as ctx allows, and
// returns the function that gives it back. A destination's slots are
// forgotten when no one holds or waits for them.
func (s *Sender) acquire(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	d := s.dests[key]
	if d == nil {
		d = &destination{slots: make(chan struct{}, s.maxPer)}
		s.dests[key] = d
	}
	d.users++
	s.mu.Unlock()
	leave := func() {
		s.mu.Lock()
		if d.users--; d.users == 0 {
			delete(s.dests, key)
		}
		s.mu.Unlock()
	}
	select {
	case d.slots <- struct{}{}:
		return func() { <-d.slots; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// Destination is the destination of a callback URL, whose attempts in
// flight Config.MaxPerDestination bounds: u's host:port, the host
// canonical, the port explicit.
func Destination(u *url.URL) string {
	host, _, _ := canonHost(u.Hostname())
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	} else {
		port, _ = canonPort(port)
	}
	return net.JoinHostPort(host, port)
}

// dial resolves addr's host, refuses it unless every address is public or
// exempt, and connects to the checked addresses, in order, until one
// answers.
func (s *Sender) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	var addrs []netip.Addr
	literal, err := netip.ParseAddr(host)
	if err == nil {
		addrs = []netip.Addr{literal}
	} else {
		addrs, err = s.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
	}
	exemptName := s.allow.Exempt(host, port)
	allowed := make(map[netip.AddrPort]bool, len(addrs))
	targets := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !exemptName && !s.allow.Exempt(a.WithZone("").String(), port) {
			if class := addrClass(a); class != "" {
				if literal.IsValid() {
					return nil, fmt.Errorf("%w: %s is a %s address, which arr calls back only when an exact allow-list entry names it", ErrRefused, host, class)
				}
				return nil, fmt.Errorf("%w: %s resolves to a %s address, which arr calls back only when an exact allow-list entry names the host", ErrRefused, host, class)
			}
		}
		ap := netip.AddrPortFrom(a, uint16(pn))
		if !allowed[ap] {
			allowed[ap] = true
			targets = append(targets, ap)
		}
	}
	var firstErr error
	for i, ap := range targets {
		d := net.Dialer{
			KeepAlive: 30 * time.Second,
			// The last word: the socket connects only to a checked address.
			ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
				if got, err := netip.ParseAddrPort(address); err != nil || !allowed[netip.AddrPortFrom(got.Addr().Unmap(), got.Port())] {
					return fmt.Errorf("%w: %s: connecting to an unchecked address", ErrRefused, host)
				}
				return nil
			},
		}
		if deadline, ok := ctx.Deadline(); ok && len(targets)-i > 1 {
			// Leave time for the other addresses, as net.Dialer does.
			d.Timeout = max(time.Until(deadline)/time.Duration(len(targets)-i), 2*time.Second)
		}
		conn, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// failure turns the error of client.Do into a Result whose Err is safe to
// show: net.OpError and net.DNSError, which carry addresses of arr's side
// (its own address, its DNS server's), are described without them.
func (s *Sender) failure(parent context.Context, err error) Result {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrInvalidURL) {
		var oe *net.OpError
		for errors.As(err, &oe) {
			err = oe.Err
		}
		return Result{Refused: true, Err: err}
	}
	return Result{Err: errors.New(describe(parent, err, s.timeout))}
}

func describe(parent context.Context, err error, timeout time.Duration) string {
	if parent.Err() != nil {
		return "the attempt was canceled"
	}
	if ne, ok := errors.AsType[net.Error](err); errors.Is(err, context.DeadlineExceeded) || ok && ne.Timeout() {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	if de, ok := errors.AsType[*net.DNSError](err); ok {
		if de.IsNotFound {
			return fmt.Sprintf("cannot resolve %s: no such host", de.Name)
		}
		return fmt.Sprintf("cannot resolve %s: DNS lookup failed", de.Name)
	}
	if ce, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return "TLS: " + ce.Err.Error()
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return "TLS handshake failed: the target does not seem to speak TLS"
	}
	if ae, ok := errors.AsType[tls.AlertError](err); ok {
		return "TLS handshake failed: the target sent the alert " + strings.TrimPrefix(ae.Error(), "tls: ")
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the target"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the target"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the target closed the connection without an answer"
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		if se, ok := errors.AsType[*os.SyscallError](oe.Err); ok {
			return fmt.Sprintf("network error (%s: %v)", oe.Op, se.Err)
		}
		return fmt.Sprintf("network error (%s)", oe.Op)
	}
	return strings.TrimPrefix(err.Error(), "net/http: ")
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP
// date, as a duration from now: 0 when absent, invalid or past, at most
// DefaultMaxAge.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(DefaultMaxAge/time.Second) {
			return DefaultMaxAge
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), DefaultMaxAge)
}

// Timeout is the bound on one attempt (Config.Timeout, or its default).
func (s *Sender) Timeout() time.Duration { return s.timeout }
