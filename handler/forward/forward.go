// Package forward is arr's asynchronous gateway: a worker.Handler that
// replays the stored client request to an upstream HTTP service and keeps
// the upstream's response as the operation's result.
//
// The client talks to arr, which answers 202 Accepted at once and stores the
// request; a worker later runs this handler, which sends the same method,
// path (appended to the upstream URL's prefix), raw query, body and
// end-to-end headers to the upstream, with the request made under the
// attempt's context: canceling the operation, timing the attempt out or
// shutting the worker down aborts the upstream request.
//
// What the upstream's answer becomes:
//
//	upstream outcome              operation outcome
//	----------------------------  ------------------------------------------------
//	1xx, 2xx, 3xx                 success; status, end-to-end headers and body are
//	                              the result (redirects are not followed)
//	429, 5xx (and codes >= 600)   retryable failure: ProblemUpstreamError (502),
//	                              delayed by the response's Retry-After (<= 1h)
//	other 4xx                     permanent failure: ProblemUpstreamRejected with
//	                              the upstream's status
//	connection, TLS, I/O error    retryable failure: urn:arr:problem:upstream-unreachable (502),
//	                              whose detail names no host or address (the error
//	                              itself goes to Config.Logger)
//	ctx done (cancel, timeout,    error that errors.Is context.Canceled or
//	shutdown)                     context.DeadlineExceeded, as the context says
//	request cannot be built       permanent failure (bad stored method, say, or a
//	                              path that would leave the URL's prefix: one with
//	                              a dot segment, a backslash or a control character)
//	sealed credentials unreadable permanent failure: urn:arr:problem:credentials-unreadable (500)
//
// Headers sent upstream: the stored request's headers minus the hop-by-hop
// ones (Connection, Keep-Alive, Proxy-Connection, Proxy-Authenticate,
// Proxy-Authorization, Te, Trailer, Transfer-Encoding, Upgrade and any
// header Connection names), minus Prefer (it was addressed to arr),
// Content-Length (recomputed) and Host (the upstream's host is used); plus
// X-Forwarded-For (the client's IP appended to any existing value),
// X-Forwarded-Host, X-Forwarded-Proto, X-Arr-Operation-Id and X-Arr-Attempt;
// plus Config.Header, which is applied last and so overrides them all.
// The credentials the route keeps (arr.Route.ForwardCredentials), stored
// sealed, are opened with Config.Credentials just before the request is
// sent, and sent as the client sent them (Config.Header still overrides
// them). Idempotency-Key is kept: with at-least-once delivery the upstream may see
// the same request more than once, and the key lets it notice. When the
// client sent no User-Agent, none is sent (not Go's default).
//
// Headers of the result: the upstream's end-to-end headers, less
// Content-Length and, unless Config.KeepSetCookie, Set-Cookie and
// Set-Cookie2: a session the upstream opened would otherwise be shown to
// whoever may read the operation.
//
// The problem of an upstream failure carries the extensions upstreamStatus
// (the upstream's status code) and, when the response had one,
// upstreamContentType. Its detail is the start of the upstream's body as
// text (Config.MaxErrorBody bytes, invalid UTF-8 replaced, "…" appended when
// cut), after "upstream answered <code>: " for a retryable failure. When the
// body is JSON (application/json or a +json type such as
// application/problem+json), complete and valid, it is also kept as is in
// the upstreamBody extension, so that clients can read the upstream's own
// error structure. The core bounds what the operation records of it (see
// arr.Config.MaxDetailBytes and MaxExtensionBytes): a detail past 4 KiB is
// cut and an upstreamBody that would take the extensions past 8 KiB is
// left out (named in omittedMembers).
package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// Problem types of the failures this handler reports.
const (
	// ProblemUpstreamError is the type of the problem for an upstream's 429
	// or 5xx answer: status 502, retryable.
	ProblemUpstreamError = "urn:arr:problem:upstream-error"
	// ProblemUpstreamUnreachable: the upstream could not be reached (a
	// connection, TLS or I/O error); retried.
	ProblemUpstreamUnreachable = "urn:arr:problem:upstream-unreachable"
	// ProblemUpstreamRejected is the type of the problem for an upstream's
	// 4xx answer other than 429: the upstream's status, permanent.
	ProblemUpstreamRejected = "urn:arr:problem:upstream-rejected"
	// ProblemCredentialsUnreadable: the operation's sealed credentials
	// could not be opened (tampered with, their key removed from the
	// keyring, or no Config.Credentials); permanent, status 500.
	ProblemCredentialsUnreadable = "urn:arr:problem:credentials-unreadable"
)

// DefaultMaxErrorBody is Config.MaxErrorBody's default: 64 KiB.
const DefaultMaxErrorBody = 64 << 10

// MaxRetryAfter caps the delay an upstream's Retry-After can impose.
const MaxRetryAfter = time.Hour

// Config configures a forward handler. Every field but URL has a default,
// given in its comment.
type Config struct {
	// URL is the upstream's base URL, http or https:
	// scheme://host[:port][/prefix]. The request's path is appended to the
	// prefix (one slash between them, never two), escaped, and the
	// request's raw query is kept; a path that would leave the prefix
	// fails the operation permanently. It must be absolute and have no user info, query or fragment
	// (set credentials with Header).
	URL string
	// Client sends the upstream requests. Default: a client over a clone of
	// http.DefaultTransport, with no overall Timeout (the attempt's context
	// bounds each request), that does not follow redirects. A Client given
	// here is used as it is: its CheckRedirect and Timeout apply.
	Client *http.Client
	// MaxErrorBody is how many bytes of an upstream's error body are kept in
	// the problem's detail. Default (0): DefaultMaxErrorBody. Negative is
	// rejected.
	MaxErrorBody int
	// Header holds headers set on every upstream request (an API key, say),
	// replacing any the client sent with the same name, and those the
	// handler adds (X-Forwarded-*, X-Arr-*). Default: none.
	// Hop-by-hop headers, Host and Content-Length are rejected.
	Header http.Header
	// Credentials opens the credentials the route keeps sealed
	// (arr.Route.ForwardCredentials). Required for such a route: without
	// it their operations fail (ProblemCredentialsUnreadable).
	Credentials *arr.Credentials
	// KeepSetCookie keeps the upstream's Set-Cookie headers in the
	// result. Default false: they are dropped.
	KeepSetCookie bool
	// Logger receives the errors of unreachable upstreams, which the
	// operation's problem does not show. Default slog.Default().
	Logger *slog.Logger
}

// New returns a handler that forwards each operation's request to cfg.URL.
// It fails when the URL is not an absolute http or https URL without user
// info, query and fragment, or when another field is invalid.
func New(cfg Config) (worker.Handler, error) {
	if cfg.URL == "" {
		return nil, errors.New("forward: URL is required")
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("forward: URL: %w", err)
	}
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, fmt.Errorf("forward: URL %q: scheme must be http or https", cfg.URL)
	case base.Opaque != "" || base.Host == "":
		return nil, fmt.Errorf("forward: URL %q: not an absolute URL with a host", cfg.URL)
	case base.User != nil:
		return nil, fmt.Errorf("forward: URL %q: user info is not allowed (set Authorization in Header)", base.Redacted())
	case base.RawQuery != "" || base.ForceQuery:
		return nil, fmt.Errorf("forward: URL %q: a query is not allowed", cfg.URL)
	case base.Fragment != "" || strings.Contains(cfg.URL, "#"):
		return nil, fmt.Errorf("forward: URL %q: a fragment is not allowed", cfg.URL)
	}
	if cfg.MaxErrorBody < 0 {
		return nil, fmt.Errorf("forward: MaxErrorBody %d is negative", cfg.MaxErrorBody)
	}
	if cfg.MaxErrorBody == 0 {
		cfg.MaxErrorBody = DefaultMaxErrorBody
	}
	for name, values := range cfg.Header {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("forward: Header: invalid name %q", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length":
			return nil, fmt.Errorf("forward: Header: %s cannot be set", name)
		}
		if isHopByHop(name) {
			return nil, fmt.Errorf("forward: Header: %s is a hop-by-hop header", name)
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return nil, fmt.Errorf("forward: Header: invalid value for %s", name)
			}
		}
	}
	client := cfg.Client
	if client == nil {
		var rt http.RoundTripper = http.DefaultTransport
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			rt = t.Clone()
		}
		client = &http.Client{
			Transport: rt,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &handler{base: base, client: client, maxErrorBody: cfg.MaxErrorBody, header: cfg.Header.Clone(),
		creds: cfg.Credentials, keepSetCookie: cfg.KeepSetCookie, log: cfg.Logger}, nil
}

type handler struct {
	base          *url.URL
	client        *http.Client
	maxErrorBody  int
	header        http.Header
	creds         *arr.Credentials
	keepSetCookie bool
	log           *slog.Logger
}

// Process forwards t.Request upstream; see the package documentation for
// what the answer becomes. On success the Result's Reader is the upstream's
// response body, which the caller must close (the worker does).
func (h *handler) Process(ctx context.Context, t *worker.Task, _ worker.Progress) (*worker.Result, error) {
	if t == nil || t.Request == nil {
		return nil, worker.Permanent(errors.New("forward: the task has no request"))
	}
	creds, err := h.credentials(ctx, t)
	if err != nil {
		return nil, err
	}
	req, err := h.newRequest(ctx, t, creds)
	if err != nil {
		return nil, worker.Permanent(fmt.Errorf("forward: %w", err))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, aborted(ctx)
		}
		// The error names the upstream's host and address, which are
		// the operator's business: it goes to the log, not to clients.
		h.log.Warn("forward: the upstream could not be reached", "operation", t.ID, "attempt", t.Attempt, "error", err)
		return nil, &operation.Problem{Type: ProblemUpstreamUnreachable, Title: "Upstream unreachable", Status: http.StatusBadGateway,
			Detail: "the upstream could not be reached"}
	}
	code := resp.StatusCode
	if code < 400 {
		ct := resp.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		hdr := resp.Header.Clone()
		removeHopByHop(hdr)
		hdr.Del("Content-Length")
		if !h.keepSetCookie {
			hdr.Del("Set-Cookie")
			hdr.Del("Set-Cookie2")
		}
		return &worker.Result{
			StatusCode:  code,
			Header:      hdr,
			ContentType: ct,
			Reader:      &body{ctx: ctx, rc: resp.Body},
		}, nil
	}
	return nil, h.failure(ctx, resp)
}

// credentials opens the task's sealed credentials, if it has any.
func (h *handler) credentials(ctx context.Context, t *worker.Task) (http.Header, error) {
	sealed := t.Request.Header.Get(arr.SealedHeader)
	if sealed == "" {
		return nil, nil
	}
	unreadable := func(detail string) error {
		return worker.Permanent(&operation.Problem{Type: ProblemCredentialsUnreadable, Title: "Stored credentials unreadable",
			Status: http.StatusInternalServerError, Detail: detail})
	}
	if h.creds == nil {
		return nil, unreadable("the operation's credentials are stored sealed, and this forward handler has no key to open them")
	}
	creds, err := h.creds.Open(ctx, t.ID, sealed)
	switch {
	case errors.Is(err, arr.ErrCredentials):
		h.log.Warn("forward: sealed credentials unreadable", "operation", t.ID, "error", err)
		return nil, unreadable("the operation's stored credentials cannot be decrypted (tampered with, or their key is gone); submit the request again")
	case err != nil:
		return nil, fmt.Errorf("forward: %w", err) // the keyring's: retried
	}
	return creds, nil
}

// newRequest builds the upstream request from the stored one and the
// opened credentials.
func (h *handler) newRequest(ctx context.Context, t *worker.Task, creds http.Header) (*http.Request, error) {
	in := t.Request
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base.String(), bytes.NewReader(in.Body))
	if err != nil {
		return nil, err
	}
	if err := checkUnderBase(h.base, in.Path); err != nil {
		return nil, err
	}
	target := *h.base
	target.Path, target.RawPath = joinPath(h.base, in.Path)
	target.RawQuery = in.RawQuery
	req.URL = &target
	req.Host = "" // the upstream's: req.URL.Host

	hdr := in.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	removeHopByHop(hdr)
	delete(hdr, arr.SealedHeader)
	for k, v := range creds {
		hdr[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	// Accept-Encoding is left to the transport, which asks for gzip and
	// decompresses: the stored result is the plain bytes, which the
	// result URL serves without a Content-Encoding.
	for _, k := range []string{"Prefer", "Content-Length", "Host", "Accept-Encoding"} {
		hdr.Del(k)
	}
	if _, ok := hdr["User-Agent"]; !ok {
		// Send none rather than Go's default, as httputil.ReverseProxy does.
		hdr.Set("User-Agent", "")
	}
	if ip := clientIP(in.RemoteAddr); ip != "" {
		if prior := hdr.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		hdr.Set("X-Forwarded-For", ip)
	}
	if in.Host != "" {
		hdr.Set("X-Forwarded-Host", in.Host)
	} else {
		hdr.Del("X-Forwarded-Host") // not ours to vouch for
	}
	if in.TLS {
		hdr.Set("X-Forwarded-Proto", "https")
	} else {
		hdr.Set("X-Forwarded-Proto", "http")
	}
	hdr.Set("X-Arr-Operation-Id", t.ID)
	hdr.Set("X-Arr-Attempt", strconv.Itoa(t.Attempt))
	for k, v := range h.header {
		hdr[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	req.Header = hdr
	return req, nil
}

// failure turns an upstream error response into the handler's error, and
// closes its body.
func (h *handler) failure(ctx context.Context, resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, int64(h.maxErrorBody)+1))
	if ctx.Err() != nil {
		return aborted(ctx)
	}
	truncated := len(b) > h.maxErrorBody
	if truncated {
		b = b[:h.maxErrorBody]
	}
	code := resp.StatusCode
	ct := resp.Header.Get("Content-Type")
	ext := map[string]any{"upstreamStatus": code}
	if ct != "" {
		ext["upstreamContentType"] = ct
	}
	if !truncated && isJSON(ct) && json.Valid(b) {
		ext["upstreamBody"] = json.RawMessage(bytes.Clone(b))
	}
	text := bodyText(b, truncated)

	if code == http.StatusTooManyRequests || code >= 500 {
		detail := "upstream answered " + strconv.Itoa(code)
		if text != "" {
			detail += ": " + text
		}
		var err error = &operation.Problem{Type: ProblemUpstreamError, Title: "Upstream error",
			Status: http.StatusBadGateway, Detail: detail, Extensions: ext}
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			err = worker.RetryAfter(err, d)
		}
		return err
	}
	if text == "" {
		text = "upstream answered " + strconv.Itoa(code)
	}
	return worker.Permanent(&operation.Problem{Type: ProblemUpstreamRejected, Title: "Upstream rejected the request",
		Status: code, Detail: text, Extensions: ext})
}

// aborted is the error for a request cut short because ctx is done: it is
// (errors.Is) ctx.Err(), and names the context's cause when it has another.
func aborted(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("upstream request aborted: %w: %w", cause, err)
	}
	return fmt.Errorf("upstream request aborted: %w", err)
}

// body is a successful response's body: its read errors say they come from
// the upstream and, when ctx is done, are ctx's error.
type body struct {
	ctx context.Context
	rc  io.ReadCloser
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		if b.ctx.Err() != nil {
			return n, aborted(b.ctx)
		}
		return n, fmt.Errorf("reading the upstream response: %w", err)
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// retryAfter parses a Retry-After value, delay-seconds or an HTTP-date, into
// a delay from now in [0, MaxRetryAfter]; ok is false when v is empty or
// invalid.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true // all digits: only too large
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// bodyText is an error body as text for a problem's detail: invalid UTF-8
// replaced, surrounding space trimmed, and an ellipsis when truncated.
func bodyText(b []byte, truncated bool) string {
	if truncated {
		// Drop a rune cut in two by the limit.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0; i++ {
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if truncated {
		s += "…"
	}
	return s
}

// isJSON reports whether ct is application/json or a +json media type.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// joinPath appends the request's path p to base's path with one slash
// between them. The escaped form (rawPath) is base's escaped path joined
// to p's escaping, so that what is sent is exactly p's bytes, escaped,
// under base's own escaping.
func joinPath(base *url.URL, p string) (joined, rawPath string) {
	if p == "" {
		if base.Path == "" {
			return "/", ""
		}
		return base.Path, base.RawPath
	}
	return singleJoiningSlash(base.Path, p), singleJoiningSlash(base.EscapedPath(), (&url.URL{Path: p}).EscapedPath())
}

// checkUnderBase refuses a request path that could reach the upstream
// outside base's path: one with a dot segment (. or ..), a backslash, NUL
// or another control character, or whose join to base's path, cleaned,
// is not base's path or under it. arr's api refuses such paths at submit;
// this keeps a stored request (an older arr's, or a Go caller's) from
// escaping the prefix.
func checkUnderBase(base *url.URL, p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("the request path %q has a control character or a backslash", p)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("the request path %q has a dot segment", p)
		}
	}
	prefix := path.Clean("/" + base.Path)
	got := path.Clean("/" + singleJoiningSlash(base.Path, p))
	if prefix != "/" && got != prefix && !strings.HasPrefix(got, prefix+"/") {
		return fmt.Errorf("the request path %q leaves the upstream's base path %q", p, base.Path)
	}
	return nil
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// clientIP is the IP of a RemoteAddr (host:port, or a bare IP), or "".
func clientIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.String()
	}
	return ""
}

// hopByHop are the headers that concern one connection only (RFC 9110
// §7.6.1, plus the non-standard Proxy-Connection).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHopByHop(name string) bool {
	name = http.CanonicalHeaderKey(name)
	for _, k := range hopByHop {
		if k == name {
			return true
		}
	}
	return false
}

// removeHopByHop deletes from h the hop-by-hop headers and those its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderValue reports whether v has no control characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
