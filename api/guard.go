package api

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/arrhq/arr/internal/trustedproxy"
)

// The guard runs before routing, for every request the api serves (submit
// routes, gateway mode, /v1/operations, the seed's /api routes, the signed
// result URLs): it refuses paths, headers and Hosts that could be read two
// ways, strips forwarding headers nobody vouches for, and refuses
// state-changing requests a browser sent from another site. Nothing is
// stored for a request it refuses.

// Problem types of the guard's refusals.
const (
	ProblemInvalidPath   = "urn:arr:problem:invalid-path"
	ProblemInvalidHeader = "urn:arr:problem:invalid-header"
	ProblemInvalidHost   = "urn:arr:problem:invalid-host"
	ProblemMisdirected   = "urn:arr:problem:misdirected-request"
	ProblemCrossOrigin   = "urn:arr:problem:cross-origin"
)

// checkPath says why a request path cannot be served, or "" when it can.
// path is the decoded path (url.URL.Path), escaped the path as sent
// (url.URL.EscapedPath). Refused: a path that does not start with /, a dot
// segment (. or .., also percent-encoded), an empty segment (//) but the
// last, an encoded slash (%2F), a backslash (raw or %5C), NUL (raw or %00)
// or any other control character, and invalid UTF-8 after unescaping.
// Each of these is read differently by different servers, or is a
// mux's redirect rather than a resource.
func checkPath(path, escaped string) string {
	if path == "" || path[0] != '/' {
		return "the path must start with /"
	}
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		switch asciiLower(escaped[i+1 : i+3]) {
		case "2f":
			return "the path has an encoded slash (%2F)"
		case "5c":
			return "the path has an encoded backslash (%5C)"
		}
	}
	if !utf8.ValidString(path) {
		return "the path is not valid UTF-8"
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == 0:
			return "the path has a NUL character"
		case c < 0x20 || c == 0x7f:
			return "the path has a control character"
		case c == '\\':
			return "the path has a backslash"
		}
	}
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			return "the path has a dot segment (" + s + ")"
		case s == "" && i < len(segs)-1:
			return "the path has an empty segment (//)"
		}
	}
	return ""
}

// checkHeaders says why the request's header fields cannot be kept, or ""
// when they can: a name that is not a token, or a value with a control
// character other than tab (NUL, CR, LF). net/http's server refuses these
// already; the check is for requests that reach the handler otherwise.
func checkHeaders(h http.Header) string {
	for name, vs := range h {
		if !validToken(name) {
			return "the header name " + strconv.Quote(name) + " is not a token"
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
					return "the header " + name + " has a control character"
				}
			}
		}
	}
	return ""
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// isTchar reports whether c is an RFC 9110 tchar.
func isTchar(c byte) bool { return tchars[c] }

var tchars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// hostPort is a parsed Host: the host lower-cased (an IPv6 address without
// its brackets) and the port, "" when absent.
type hostPort struct{ host, port string }

// String is the Host form: host[:port], an IPv6 address in brackets.
func (h hostPort) String() string {
	host := h.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if h.port != "" {
		return host + ":" + h.port
	}
	return host
}

// parseHost reads a Host header value (RFC 9110 §7.2): a DNS name of ASCII
// letters, digits, '-', '_' and '.' (labels of 1 to 63, 253 in all), an
// IPv4 address, or an IPv6 address in brackets; then an optional port of 1
// to 5 digits up to 65535. The host comes back in lower case. ok is false
// for anything else, the empty string included.
func parseHost(s string) (hostPort, bool) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return hostPort{}, false
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return hostPort{}, false
			}
			port = rest[1:]
			if port == "" {
				return hostPort{}, false
			}
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return hostPort{}, false
		}
		host = a.String()
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return hostPort{}, false
			}
		}
		if !validHostname(host) {
			return hostPort{}, false
		}
		host = asciiLower(host)
	}
	if port != "" {
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return hostPort{}, false
		}
		if n, _ := strconv.Atoi(port); n > 65535 {
			return hostPort{}, false
		}
	}
	return hostPort{host: host, port: port}, true
}

// validHostname reports whether s is a DNS name (or an IPv4 address, which
// has the same syntax): ASCII labels of letters, digits, '-' and '_', each
// 1 to 63 bytes, 253 bytes in all; one trailing dot is allowed.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// isLoopback reports whether h names this machine: localhost (or a name
// under .localhost), an IPv4 address in 127.0.0.0/8, or ::1.
func isLoopback(h hostPort) bool {
	host := strings.TrimSuffix(h.host, ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// parseAllowedHosts reads Config.AllowedHosts: each entry a Host
// (host[:port]); an entry without a port allows any port.
func parseAllowedHosts(list []string) ([]hostPort, error) {
	var out []hostPort
	for _, e := range list {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		h, ok := parseHost(e)
		if !ok {
			return nil, &configError{"AllowedHosts: " + strconv.Quote(e) + " is not a host[:port]"}
		}
		out = append(out, h)
	}
	return out, nil
}

type configError struct{ msg string }

func (e *configError) Error() string { return "api: " + e.msg }

// hostAllowed reports whether links may be built from h: it is a loopback
// host, the public URL's host, or in AllowedHosts (with its port, when the
// entry has one).
func (s *Server) hostAllowed(h hostPort) bool {
	if isLoopback(h) {
		return true
	}
	for _, a := range s.allowedHosts {
		if a.host == h.host && (a.port == "" || a.port == h.port) {
			return true
		}
	}
	return false
}

// origin is where a request says it was sent: the scheme and Host its
// links are built from.
type origin struct {
	scheme string
	host   string // as in a Host header; "" when the request had none
}

// forwardingHeaders are the headers through which a proxy tells what its
// client asked for. They are believed only from a trusted proxy, and
// deleted from every other request before anything is stored or forwarded.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Real-Ip"}

// requestOrigin is the scheme and Host r was sent to: the direct ones, or,
// when the direct peer is a trusted proxy, those its Forwarded (proto=,
// host=) or X-Forwarded-Proto and X-Forwarded-Host say. Of several
// values, the last is taken: the one the trusted peer itself wrote.
func (s *Server) requestOrigin(r *http.Request) origin {
	o := origin{scheme: "http", host: r.Host}
	if r.TLS != nil {
		o.scheme = "https"
	}
	if !trustedproxy.Contains(s.trusted, r.RemoteAddr) {
		return o
	}
	proto, host := lastForwarded(r.Header.Values("Forwarded"))
	if proto == "" {
		proto = lastListValue(r.Header.Values("X-Forwarded-Proto"))
	}
	if host == "" {
		host = lastListValue(r.Header.Values("X-Forwarded-Host"))
	}
	switch asciiLower(proto) {
	case "http", "https":
		o.scheme = asciiLower(proto)
	}
	if host != "" {
		o.host = host
	}
	return o
}

// lastListValue is the last element of a comma-separated header.
func lastListValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// lastForwarded reads proto= and host= from the last element of RFC 7239
// Forwarded header values (quoted values unquoted).
func lastForwarded(vs []string) (proto, host string) {
	last := lastListValue(vs)
	for pair := range strings.SplitSeq(last, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		}
		switch asciiLower(strings.TrimSpace(k)) {
		case "proto":
			proto = v
		case "host":
			host = v
		}
	}
	return proto, host
}

// hostExempt are the paths served whatever the Host: the probes and
// metrics, which build no links (an orchestrator's probe sends the pod's
// address as Host).
var hostExempt = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// guard checks r before routing; it answers the refusal itself and
// returns nil, or returns the request to route (forwarding headers
// stripped unless from a trusted proxy, its origin in the context).
func (s *Server) guard(w http.ResponseWriter, r *http.Request) *http.Request {
	if msg := checkPath(r.URL.Path, r.URL.EscapedPath()); msg != "" {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidPath, "Invalid path", msg)
		return nil
	}
	if strings.ContainsFunc(r.URL.RawQuery, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid query", "the query has a control character")
		return nil
	}
	if msg := checkHeaders(r.Header); msg != "" {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidHeader, "Invalid header", msg)
		return nil
	}
	o := s.requestOrigin(r)
	if !trustedproxy.Contains(s.trusted, r.RemoteAddr) && hasAny(r.Header, forwardingHeaders) {
		r = r.Clone(r.Context())
		for _, h := range forwardingHeaders {
			r.Header.Del(h)
		}
	}
	if o.host != "" || s.cfg.PublicURL == "" {
		hp, ok := parseHost(o.host)
		if !ok {
			writeProblem(w, http.StatusBadRequest, ProblemInvalidHost, "Invalid Host",
				"the Host "+strconv.Quote(o.host)+" is not a host[:port]")
			return nil
		}
		if !hostExempt[r.URL.Path] && (s.cfg.PublicURL == "" || len(s.allowedHosts) > 0) && !s.hostAllowed(hp) {
			writeProblem(w, http.StatusMisdirectedRequest, ProblemMisdirected, "Misdirected request",
				"this server does not answer for the Host "+strconv.Quote(o.host)+
					"; its operator can allow it with -allowed-hosts or set -public-url")
			return nil
		}
	}
	if err := s.cop.Check(r); err != nil {
		writeProblem(w, http.StatusForbidden, ProblemCrossOrigin, "Cross-origin request refused",
			"a browser sent this "+r.Method+" from another site; its operator can trust that origin with -allowed-origins")
		return nil
	}
	return r
}

func hasAny(h http.Header, names []string) bool {
	for _, n := range names {
		if _, ok := h[n]; ok {
			return true
		}
	}
	return false
}

// originOf is the origin of r's links (see requestOrigin), its Host in
// canonical form (lower case) when it is valid, as the guard made sure.
func (s *Server) originOf(r *http.Request) origin {
	o := s.requestOrigin(r)
	if hp, ok := parseHost(o.host); ok {
		o.host = hp.String()
	}
	return o
}

// asciiLower lower-cases the ASCII letters of s and nothing else: unlike
// strings.ToLower, the Kelvin sign (U+212A) does not become k.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// asciiEqualFold reports whether a and b are equal under ASCII case
// folding only (strings.EqualFold also folds ſ to s and K to k).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
