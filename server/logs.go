package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	arr "github.com/arrhq/arr"
)

// Defaults of LogConfig.
const (
	// DefaultLogFormat is LogConfig.Format's default: "text" (logfmt).
	DefaultLogFormat = "text"
	// DefaultLogSampleWindow is LogConfig.SampleWindow's default: an
	// error line repeated within a second is logged once.
	DefaultLogSampleWindow = time.Second
	// MaxLoggedErrorBytes bounds an error value, and MaxLoggedStringBytes
	// any other string, in a log line (cut on a rune boundary, ending in
	// "…").
	MaxLoggedErrorBytes  = 512
	MaxLoggedStringBytes = 2 << 10
)

// LogConfig: see Config.Logs. It says how arr logs: the format, the access
// log and the sampling of repeated lines. Whatever the handler under it,
// server.New makes the server's Logger tidy (see NewLogger): error values
// cut to MaxLoggedErrorBytes, other strings to MaxLoggedStringBytes, client
// disconnects at debug, repeated error lines sampled.
type LogConfig struct {
	// Format is "text" (or its synonym "logfmt": slog.TextHandler, one
	// key=value line per record) or "json" (slog.JSONHandler, one object
	// per line). Default DefaultLogFormat ("text"). It applies to the
	// logger NewLogger builds (arr serve's); a Config.Logger given is
	// used with its own handler.
	Format string
	// NoAccessLog turns the access log off. Default false: one info line
	// "request" per HTTP request (see accessLog for its fields).
	NoAccessLog bool
	// SampleWindow: a line with an error value (err) whose level, message,
	// error, operation id, attempt and error id (the error_id a client was
	// given: such lines are never left out) repeat one logged within this
	// window is not logged; the next one logged after the window says how many were
	// left out ("suppressed"). Default DefaultLogSampleWindow (1s);
	// negative logs every line.
	SampleWindow time.Duration
}

// NewLogger returns a tidy logger (see LogConfig) writing cfg.Format's
// lines at level and above to w. An unknown format is an error.
func NewLogger(w io.Writer, cfg LogConfig, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch cfg.Format {
	case "", "text", "logfmt":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want text, logfmt or json", cfg.Format)
	}
	return slog.New(tidyHandler(h, cfg.SampleWindow)), nil
}

// tidyLogger returns l made tidy, unless it is already.
func tidyLogger(l *slog.Logger, window time.Duration) *slog.Logger {
	if _, ok := l.Handler().(*tidy); ok {
		return l
	}
	return slog.New(tidyHandler(l.Handler(), window))
}

func tidyHandler(h slog.Handler, window time.Duration) *tidy {
	if window == 0 {
		window = DefaultLogSampleWindow
	}
	return &tidy{next: h, window: window, seen: &sampler{last: map[string]*seenLine{}}}
}

// tidy is the slog.Handler wrapper that bounds and samples lines.
type tidy struct {
	next   slog.Handler
	window time.Duration // <= 0: no sampling
	seen   *sampler
	attrs  string // the key of the attributes added by WithAttrs
}

type sampler struct {
	mu   sync.Mutex
	last map[string]*seenLine
}

type seenLine struct {
	at         time.Time
	suppressed int
}

// maxSampled bounds the lines the sampler remembers; past it, those older
// than the window are forgotten (and, if still too many, all).
const maxSampled = 4096

func (t *tidy) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t *tidy) WithAttrs(as []slog.Attr) slog.Handler {
	c := *t
	c.next = t.next.WithAttrs(slices.Collect(func(yield func(slog.Attr) bool) {
		for _, a := range as {
			if !yield(bound(a)) {
				return
			}
		}
	}))
	for _, a := range as {
		c.attrs += a.Key + "=" + a.Value.String() + " "
	}
	return &c
}

func (t *tidy) WithGroup(name string) slog.Handler {
	c := *t
	c.next = t.next.WithGroup(name)
	c.attrs += name + "."
	return &c
}

func (t *tidy) Handle(ctx context.Context, r slog.Record) error {
	var errText, id string
	disconnect, cut := false, false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Value.Kind() {
		case slog.KindAny:
			if err, ok := a.Value.Any().(error); ok {
				cut = true
				if a.Key == "err" || a.Key == "error" {
					errText = arr.TruncateError(err, MaxLoggedErrorBytes)
					disconnect = disconnect || IsDisconnect(err)
				}
			}
		case slog.KindString:
			if len(a.Value.String()) > MaxLoggedStringBytes {
				cut = true
			}
			if a.Key == "err" || a.Key == "error" {
				errText = a.Value.String()
			}
		}
		if a.Key == "id" || a.Key == "error_id" || a.Key == "attempt" {
			id += a.Value.String() + " "
		}
		return true
	})
	out := r
	if cut {
		// A record the handler passes on as it is unless something in it
		// is cut (the access log's lines are not).
		out = slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			out.AddAttrs(bound(a))
			return true
		})
	}
	if disconnect && out.Level > slog.LevelDebug {
		// A client that went away is not the server's error.
		out.Level = slog.LevelDebug
		if !t.next.Enabled(ctx, out.Level) {
			return nil
		}
	}
	if errText != "" && t.window > 0 {
		key := out.Level.String() + "\x00" + r.Message + "\x00" + arr.TruncateError(errors.New(errText), MaxLoggedErrorBytes) +
			"\x00" + id + "\x00" + t.attrs
		n, ok := t.seen.admit(key, r.Time, t.window)
		if !ok {
			return nil
		}
		if n > 0 {
			if !cut {
				out = r.Clone()
			}
			out.AddAttrs(slog.Int("suppressed", n))
		}
	}
	return t.next.Handle(ctx, out)
}

// admit says whether the line key at now is logged, and how many like it
// were left out since the last one logged.
func (s *sampler) admit(key string, now time.Time, window time.Duration) (int, bool) {
	if now.IsZero() {
		now = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.last[key]; l != nil {
		if now.Sub(l.at) < window {
			l.suppressed++
			return 0, false
		}
		n := l.suppressed
		l.at, l.suppressed = now, 0
		return n, true
	}
	if len(s.last) >= maxSampled {
		for k, l := range s.last {
			if now.Sub(l.at) >= window {
				delete(s.last, k)
			}
		}
		if len(s.last) >= maxSampled {
			clear(s.last)
		}
	}
	s.last[key] = &seenLine{at: now}
	return 0, true
}

// bound cuts an error value to MaxLoggedErrorBytes and a string to
// MaxLoggedStringBytes.
func bound(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); len(s) > MaxLoggedStringBytes {
			return slog.String(a.Key, arr.TruncateError(errors.New(s), MaxLoggedStringBytes))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, arr.TruncateError(err, MaxLoggedErrorBytes))
		}
	}
	return a
}

// IsDisconnect reports whether err says that the client went away: a
// canceled context, a broken pipe, a connection reset.
func IsDisconnect(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, http.ErrAbortHandler)
}

// accessEntry is what the access log learns from inside the handler (the
// principal, known once authenticated).
type accessEntry struct{ principal string }

type accessKey struct{}

// notePrincipal records the authenticated caller's principal for the
// access log; it sits behind the authentication.
func notePrincipal(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e, ok := r.Context().Value(accessKey{}).(*accessEntry); ok {
			if c, ok := arr.CallerFrom(r.Context()); ok {
				e.principal = c.Principal
			}
		}
		h.ServeHTTP(w, r)
	})
}

// accessLog logs one info line "request" per request h serves, when it
// ends: method, path, query (without the values of secret parameters, and
// none at all under resultsPrefix, whose signed URLs carry their
// signature in it), status, bytes (of the body written), duration_ms,
// principal ("" when anonymous or refused), ip (the peer's) and
// request_id. The request id is the request's X-Request-Id when it is a
// short token (64 bytes of letters, digits, '.', '_', '-'), a new random
// one otherwise, and is set on the response.
func accessLog(h http.Handler, log *slog.Logger, resultsPrefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.Enabled(r.Context(), slog.LevelInfo) {
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = strconv.FormatUint(rand.Uint64(), 16)
		}
		w.Header().Set("X-Request-Id", id)
		e := &accessEntry{}
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), accessKey{}, e)))
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		query := ""
		if r.URL.RawQuery != "" && !(resultsPrefix != "" && strings.HasPrefix(r.URL.Path, resultsPrefix)) {
			query = redactQuery(r.URL.RawQuery)
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("query", query),
			slog.Int("status", status), slog.Int64("bytes", cw.bytes),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("principal", e.principal), slog.String("ip", ip), slog.String("request_id", id))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// secretParams are the query parameters whose values the access log
// leaves out (compared lower-cased).
var secretParams = map[string]bool{"sig": true, "signature": true, "token": true, "access_token": true,
	"api_key": true, "apikey": true, "key": true, "secret": true, "password": true, "code": true, "kid": true}

// redactQuery returns raw with the values of secretParams replaced by
// "REDACTED"; a query that does not parse is left out whole.
func redactQuery(raw string) string {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsed)"
	}
	for k, vs := range q {
		if secretParams[strings.ToLower(k)] {
			for i := range vs {
				vs[i] = "REDACTED"
			}
		}
	}
	return q.Encode()
}

// countingWriter counts the status and the body bytes written. It passes
// Flush on (SSE), and Unwrap for http.ResponseController.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's sendfile path (http.ServeContent
// of a file) and counts what it copied.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(c.ResponseWriter, r)
	}
	c.bytes += n
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
