package server

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// Defaults of ConnConfig (docs/operations.md, "Connections and streams").
const (
	// DefaultReadHeaderTimeout bounds the time to read a request's
	// header block.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection idle this long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMinBodyRate is the slowest average rate, in bytes a second,
	// at which a request body may arrive once DefaultBodyRateGrace has
	// passed: 1 MiB (the default body limit) then takes at most about
	// 4.5 minutes.
	DefaultMinBodyRate = 4 << 10
	// DefaultBodyRateGrace is the time a body may take before
	// DefaultMinBodyRate applies.
	DefaultBodyRateGrace = 10 * time.Second
	// DefaultMinWriteRate is the slowest rate, in bytes a second, at which
	// a client must take a response: each write of n bytes must be
	// accepted within DefaultWriteRateGrace + n/DefaultMinWriteRate.
	DefaultMinWriteRate = 4 << 10
	// DefaultWriteRateGrace: see DefaultMinWriteRate.
	DefaultWriteRateGrace = 10 * time.Second
	// connRetryAfter is the Retry-After of a connection refused at the
	// cap.
	connRetryAfter = time.Second
	// maxRejecting bounds the connections being answered 503 at once
	// (each holds its descriptor for up to 2 s); beyond it a refused
	// connection is closed without an answer.
	maxRejecting = 64
)

// DefaultMaxConns is the default of ConnConfig.MaxConns: three quarters
// of the process's file descriptor limit (RLIMIT_NOFILE, which Go raises
// to the hard limit at start), leaving the rest to the stores, result
// files, outgoing connections and the up to 64 connections being refused
// at a time; at least 64. Where the limit cannot be
// read (Windows), 10,000.
func DefaultMaxConns() int {
	n, ok := fdLimit()
	if !ok {
		return 10000
	}
	n = min(n, 1<<20) // RLIM_INFINITY
	return int(max(n/4*3, 64))
}

// ConnConfig bounds what one client connection can hold on the api
// listener (the admin listener is not bounded, so that /metrics answers
// under attack). Every field has a default, given in its comment; -1
// turns a bound off.
type ConnConfig struct {
	// MaxConns caps the open connections of the api listener. A new
	// connection beyond it closes the connection idle longest, if there
	// is an idle keep-alive one; otherwise it is answered at once with
	// 503, Retry-After: 1 and the problem
	// api.ProblemTooManyConnections, and closed. Default
	// DefaultMaxConns().
	MaxConns int
	// ReadHeaderTimeout bounds the time to read a request's header block.
	// Default DefaultReadHeaderTimeout (10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Default
	// DefaultIdleTimeout (2m).
	IdleTimeout time.Duration
	// MinBodyRate is the slowest average rate, in bytes a second, at
	// which a request body may arrive once BodyRateGrace has passed since
	// the handler started: a slower body is cut off, answered 408
	// (api.ProblemBodyTooSlow) with the connection closed, and nothing
	// of it is stored. Default DefaultMinBodyRate (4 KiB/s).
	MinBodyRate int64
	// BodyRateGrace: see MinBodyRate. Default DefaultBodyRateGrace (10s).
	BodyRateGrace time.Duration
	// MinWriteRate is the slowest rate, in bytes a second, at which a
	// client must take a response: each write of n bytes to the
	// connection must be accepted within WriteRateGrace +
	// n/MinWriteRate, or the connection is closed. Time between writes
	// (an SSE stream waiting for a change, a long-poll) does not count.
	// Default DefaultMinWriteRate (4 KiB/s).
	MinWriteRate int64
	// WriteRateGrace: see MinWriteRate. Default DefaultWriteRateGrace
	// (10s).
	WriteRateGrace time.Duration
}

// withDefaults fills in c's zero fields.
func (c ConnConfig) withDefaults() ConnConfig {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.BodyRateGrace, DefaultBodyRateGrace)
	def(&c.WriteRateGrace, DefaultWriteRateGrace)
	if c.MinBodyRate == 0 {
		c.MinBodyRate = DefaultMinBodyRate
	}
	if c.MinWriteRate == 0 {
		c.MinWriteRate = DefaultMinWriteRate
	}
	return c
}

// timeout is d for an http.Server: 0 (none) when turned off.
func timeout(d time.Duration) time.Duration { return max(d, 0) }

// conns enforces a ConnConfig: the connection cap (listener), the
// ambiguous-framing check (a scanner under each plain-text connection)
// and the transfer rates (handler).
type conns struct {
	cfg ConnConfig

	mu   sync.Mutex
	open int
	idle list.List // of *trackedConn, idle longest first

	rejecting chan struct{} // slots of connections being answered 503
	refusal   []byte        // the 503 a refused connection gets

	openGauge      prometheus.GaugeFunc
	rejected       prometheus.Counter
	evicted        prometheus.Counter
	slow           *prometheus.CounterVec
	refusedFraming prometheus.Counter
}

func newConns(cfg ConnConfig, reg prometheus.Registerer) (*conns, error) {
	c := &conns{cfg: cfg.withDefaults(), rejecting: make(chan struct{}, maxRejecting)}
	c.openGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "arr_connections_open",
		Help: "Open connections of the api listener.",
	}, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(c.open)
	})
	c.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arr_connections_rejected_total",
		Help: "Connections refused at the connection cap (answered 503 and closed).",
	})
	c.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arr_connections_idle_closed_total",
		Help: "Idle keep-alive connections closed to make room for a new one at the connection cap.",
	})
	c.slow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arr_slow_transfers_total",
		Help: "Requests cut off for transferring below the minimum rate, by direction: body (the client sent too slowly) or response (it read too slowly).",
	}, []string{"direction"})
	c.refusedFraming = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arr_ambiguous_framing_total",
		Help: "Requests with both Content-Length and Transfer-Encoding, refused with 400 and their connection closed.",
	})
	c.slow.WithLabelValues("body") // exported at 0 before the first cut
	c.slow.WithLabelValues("response")
	for _, m := range []prometheus.Collector{c.openGauge, c.rejected, c.evicted, c.slow, c.refusedFraming} {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	body := problemJSON(&operation.Problem{Type: api.ProblemTooManyConnections, Title: "Too many connections",
		Status: http.StatusServiceUnavailable,
		Detail: fmt.Sprintf("the server holds its maximum of %d connections; retry later", c.cfg.MaxConns)})
	c.refusal = fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"+
		"Cache-Control: no-store\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		int(connRetryAfter/time.Second), len(body), body)
	return c, nil
}

// problemJSON is p as problem.Write writes it.
func problemJSON(p *operation.Problem) []byte {
	return append(problem.AppendJSON(nil, p), '\n')
}

// listener wraps ln with the connection cap. Without TLS (tlsCfg nil),
// its connections also carry the framing check; with TLS, refused
// connections are answered over TLS with tlsCfg, and the framing check
// is not made (it would see only ciphertext under net/http's TLS).
func (c *conns) listener(ln net.Listener, tlsCfg *tls.Config) net.Listener {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"http/1.1"} // the refusal is HTTP/1.1
	}
	return &capListener{Listener: ln, c: c, tls: tlsCfg}
}

type capListener struct {
	net.Listener
	c   *conns
	tls *tls.Config
}

// Accept returns the next connection within the cap, refusing those
// beyond it (see ConnConfig.MaxConns).
func (l *capListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.c.admit() {
			tc := &trackedConn{Conn: nc, c: l.c}
			if l.tls == nil {
				tc.scan = &framing{}
			}
			return tc, nil
		}
		l.c.refuse(nc, l.tls)
	}
}

// admit takes a connection slot, closing the connection idle longest to
// free one if it must.
func (c *conns) admit() bool {
	if c.cfg.MaxConns < 0 {
		c.mu.Lock()
		c.open++
		c.mu.Unlock()
		return true
	}
	for {
		c.mu.Lock()
		if c.open < c.cfg.MaxConns {
			c.open++
			c.mu.Unlock()
			return true
		}
		e := c.idle.Front()
		if e == nil {
			c.mu.Unlock()
			return false
		}
		victim := e.Value.(*trackedConn)
		c.idle.Remove(e)
		victim.elem = nil
		c.mu.Unlock()
		c.evicted.Inc()
		_ = victim.Close() // frees its slot
	}
}

// refuse answers nc 503 (ConnConfig.MaxConns) and closes it, in the
// background and bounded in time; beyond maxRejecting such answers at
// once, it closes nc without one.
func (c *conns) refuse(nc net.Conn, tlsCfg *tls.Config) {
	c.rejected.Inc()
	select {
	case c.rejecting <- struct{}{}:
	default:
		_ = nc.Close()
		return
	}
	go func() {
		defer func() { <-c.rejecting }()
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
		conn := nc
		if tlsCfg != nil {
			tc := tls.Server(nc, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			conn = tc
		}
		if _, err := conn.Write(c.refusal); err != nil {
			return
		}
		// Half-close and drain what the client sent, so that the close
		// does not reset the connection before the client reads the 503.
		if tcp, ok := nc.(*net.TCPConn); ok && tlsCfg == nil {
			_ = tcp.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}()
}

// connState keeps the idle connections in the order they became idle.
func (c *conns) connState(nc net.Conn, st http.ConnState) {
	tc := tracked(nc)
	if tc == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc.elem != nil {
		c.idle.Remove(tc.elem)
		tc.elem = nil
	}
	if st == http.StateIdle && !tc.closed {
		tc.elem = c.idle.PushBack(tc)
	}
}

// tracked is the trackedConn under nc, or nil.
func tracked(nc net.Conn) *trackedConn {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	tc, _ := nc.(*trackedConn)
	return tc
}

type connKey struct{}

// connContext puts the connection in its requests' contexts.
func (c *conns) connContext(ctx context.Context, nc net.Conn) context.Context {
	if tc := tracked(nc); tc != nil {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// trackedConn is a connection of the api listener: it holds a slot of
// the cap until closed, and reads the framing of the plain-text requests
// it carries.
type trackedConn struct {
	net.Conn
	c      *conns
	scan   *framing      // nil under TLS
	served atomic.Int64  // requests handed to the handler
	elem   *list.Element // in c.idle while idle; guarded by c.mu
	closed bool          // guarded by c.mu
}

func (t *trackedConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if t.scan != nil && n > 0 {
		t.scan.feed(p[:n])
	}
	return n, err
}

// ReadFrom lets net/http send files with sendfile, as it does on a bare
// *net.TCPConn.
func (t *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := t.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{t.Conn}, r)
}

// Close closes the connection and frees its slot, once.
func (t *trackedConn) Close() error {
	t.c.mu.Lock()
	first := !t.closed
	if first {
		t.closed = true
		t.c.open--
		if t.elem != nil {
			t.c.idle.Remove(t.elem)
			t.elem = nil
		}
	}
	t.c.mu.Unlock()
	return t.Conn.Close()
}

// handler wraps h with the per-request checks: a request whose header
// block had both Content-Length and Transfer-Encoding is refused (400,
// api.ProblemAmbiguousFraming) and its connection closed, before h sees
// it; the body must arrive at MinBodyRate and the response be taken at
// MinWriteRate.
func (c *conns) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc, _ := r.Context().Value(connKey{}).(*trackedConn)
		if tc != nil && tc.scan != nil {
			n := tc.served.Add(1)
			if a := tc.scan.ambiguous.Load(); a != 0 && n >= a {
				c.refusedFraming.Inc()
				w.Header().Set("Connection", "close")
				problem.Write(w, r, &operation.Problem{Type: api.ProblemAmbiguousFraming, Title: "Ambiguous framing",
					Status: http.StatusBadRequest,
					Detail: "the request has both Content-Length and Transfer-Encoding (RFC 9112, section 6.3); send one of them"})
				return
			}
		}
		rc := http.NewResponseController(w)
		var body *rateBody
		if c.cfg.MinBodyRate > 0 && r.Body != nil && r.Body != http.NoBody {
			body = &rateBody{ReadCloser: r.Body, rc: rc, start: time.Now(), rate: c.cfg.MinBodyRate,
				grace: c.cfg.BodyRateGrace, c: c}
			r.Body = body
		}
		if c.cfg.MinWriteRate > 0 {
			rw := &rateWriter{ResponseWriter: w, rc: rc, rate: c.cfg.MinWriteRate, grace: c.cfg.WriteRateGrace, c: c}
			rw.deadline(0)
			w = rw
		}
		h.ServeHTTP(w, r)
		if body != nil && !body.eof {
			// What the handler left unread, net/http reads (up to 256
			// KiB) before the next request: at the same rate.
			_ = rc.SetReadDeadline(body.deadline())
		}
		if rw, ok := w.(*rateWriter); ok {
			rw.deadline(4 << 10) // the final flush of the buffered response
		}
	})
}

// rateBody is a request body that must arrive at rate bytes a second on
// average once grace has passed since start.
type rateBody struct {
	io.ReadCloser
	rc           *http.ResponseController
	start        time.Time
	rate         int64
	grace        time.Duration
	n            int64
	eof, counted bool
	c            *conns
	set          time.Time // the read deadline set last
}

// deadline is when the body falls below its rate unless more arrives.
func (b *rateBody) deadline() time.Time {
	return b.start.Add(b.grace + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)))
}

func (b *rateBody) Read(p []byte) (int, error) {
	// As rateWriter.deadline: moved only when it falls short.
	if d := b.deadline(); d.After(b.set) {
		b.set = d.Add(b.grace / 4)
		_ = b.rc.SetReadDeadline(b.set)
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case isTimeout(err):
		if !b.counted {
			b.counted = true
			b.c.slow.WithLabelValues("body").Inc()
		}
		return n, fmt.Errorf("%w: %d bytes in %s, below %d bytes/s after %s", api.ErrBodyTooSlow,
			b.n, time.Since(b.start).Round(time.Millisecond), b.rate, b.grace)
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// rateWriter sets the connection's write deadline before each write: n
// bytes must be taken within grace + n/rate.
type rateWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	rate  int64
	grace time.Duration
	c     *conns
	cut   bool
	until time.Time // the write deadline set last
}

// deadline gives a write of n bytes starting now at least grace +
// n/rate. It moves the connection's deadline only when that falls
// short, and then a quarter of the grace further, so that a response of
// a few small writes sets it once (each set is a poller update), at the
// price of up to a quarter of the grace more leniency.
func (w *rateWriter) deadline(n int) {
	want := time.Now().Add(w.grace + time.Duration(float64(n)/float64(w.rate)*float64(time.Second)))
	if want.After(w.until) {
		w.until = want.Add(w.grace / 4)
		_ = w.rc.SetWriteDeadline(w.until)
	}
}

func (w *rateWriter) Write(p []byte) (int, error) {
	w.deadline(len(p))
	n, err := w.ResponseWriter.Write(p)
	w.count(err)
	return n, err
}

func (w *rateWriter) WriteHeader(code int) {
	w.deadline(0)
	w.ResponseWriter.WriteHeader(code)
}

// FlushError flushes within the deadline of a write of the bytes
// buffered (at most net/http's 4 KiB buffer).
func (w *rateWriter) FlushError() error {
	w.deadline(4 << 10)
	err := w.rc.Flush()
	w.count(err)
	return err
}

// Flush is FlushError for the callers of http.Flusher.
func (w *rateWriter) Flush() { _ = w.FlushError() }

// rateChunk is the most ReadFrom sends under one write deadline.
const rateChunk = 64 << 10

// ReadFrom keeps the underlying writer's sendfile path (a file result),
// rateChunk bytes at a time, each within its write deadline.
func (w *rateWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	var total int64
	for {
		w.deadline(rateChunk)
		n, err := rf.ReadFrom(io.LimitReader(src, rateChunk))
		total += n
		w.count(err)
		if err != nil || n < rateChunk {
			return total, err
		}
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *rateWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *rateWriter) count(err error) {
	if isTimeout(err) && !w.cut {
		w.cut = true
		w.c.slow.WithLabelValues("response").Inc()
	}
}

// framing follows the HTTP/1 framing of the requests on one connection,
// as net/http reads it (RFC 9112: header block, then a body of
// Content-Length bytes or chunked), to find a header block with both
// Content-Length and Transfer-Encoding: net/http drops the
// Content-Length of such a request before a handler sees it and keeps
// the connection open. It sees every byte the server reads, in order;
// the work per byte is a few comparisons in header blocks and chunk size
// lines, none in body bytes.
//
// Input it cannot follow (most of which net/http refuses too) stops it,
// and the connection's requests from then on are refused (see lose).
type framing struct {
	state     uint8
	line      []byte // the current line, up to maxFramingLine bytes
	long      bool   // the current line is longer than that
	started   bool   // the request line of this header block was read
	http10    bool
	options   bool // OPTIONS *, which net/http answers without the handler
	cl        int64
	hasCL     bool
	hasTE     bool
	remaining int64 // bytes of body or chunk data still to come

	requests  int64        // header blocks handed to net/http, but OPTIONS *
	ambiguous atomic.Int64 // the number (from 1) of the first ambiguous request, or 0
}

const (
	stHeader uint8 = iota
	stBody
	stChunkSize
	stChunkData
	stChunkEnd // the CRLF after chunk data
	stTrailer
	stLost
)

// maxFramingLine is the longest line the scanner keeps: longer header
// lines are not Content-Length or Transfer-Encoding (whose values fit),
// and net/http refuses chunk size lines over 4 KiB.
const maxFramingLine = 4 << 10

func (f *framing) feed(p []byte) {
	for len(p) > 0 {
		switch f.state {
		case stLost:
			return
		case stBody, stChunkData:
			n := int64(len(p))
			if n > f.remaining {
				n = f.remaining
			}
			p = p[n:]
			if f.remaining -= n; f.remaining == 0 {
				if f.state == stBody {
					f.state = stHeader
				} else {
					f.state = stChunkEnd
				}
			}
		default:
			i := 0
			for i < len(p) && p[i] != '\n' {
				i++
			}
			// A long line keeps its first maxFramingLine bytes: enough
			// for its name, however the bytes arrive.
			if room := maxFramingLine - len(f.line); i > room {
				f.line, f.long = append(f.line, p[:room]...), true
			} else {
				f.line = append(f.line, p[:i]...)
			}
			if i == len(p) {
				return
			}
			p = p[i+1:]
			line := f.line
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			f.endLine(line)
			f.line, f.long = f.line[:0], false
		}
	}
}

// lose stops the scanner on input it cannot follow. The connection's
// requests from the one being read on are then refused as ambiguous:
// a client that frames its requests as RFC 9112 says never gets here,
// and a scanner that no longer follows the framing could not see a
// request smuggled after this one.
func (f *framing) lose() {
	f.state = stLost
	f.ambiguous.CompareAndSwap(0, f.requests+1)
}

// endLine takes one whole line (without its line ending) of a header
// block, a chunk size line, the end of chunk data or a trailer.
func (f *framing) endLine(line []byte) {
	switch f.state {
	case stChunkEnd:
		if len(line) != 0 {
			f.lose()
			return
		}
		f.state = stChunkSize
	case stChunkSize:
		size, ok := chunkSize(line)
		switch {
		case !ok || f.long:
			f.lose()
		case size == 0:
			f.state = stTrailer
		default:
			f.state, f.remaining = stChunkData, size
		}
	case stTrailer:
		if len(line) == 0 {
			f.state = stHeader
		}
	case stHeader:
		f.headerLine(line)
	}
}

func (f *framing) headerLine(line []byte) {
	if !f.started {
		if len(line) == 0 {
			return // blank lines before a request line
		}
		f.started = true
		f.http10 = len(line) >= 9 && string(line[len(line)-9:]) == " HTTP/1.0"
		f.options = len(line) >= 10 && string(line[:10]) == "OPTIONS * "
		return
	}
	if len(line) > 0 {
		name, value, ok := cutColon(line)
		switch {
		case !ok:
		case asciiEqualFold(name, "content-length"):
			if f.long {
				f.lose() // no Content-Length value is 4 KiB long
				return
			}
			n, err := strconv.ParseInt(string(trimSpace(value)), 10, 64)
			if err != nil || n < 0 || (f.hasCL && n != f.cl) {
				f.lose() // net/http refuses it
				return
			}
			f.cl, f.hasCL = n, true
		case asciiEqualFold(name, "transfer-encoding"):
			f.hasTE = true
		}
		return
	}
	// The end of the header block: a request net/http handles.
	if !f.options {
		f.requests++
		if f.hasCL && f.hasTE && f.ambiguous.Load() == 0 {
			f.ambiguous.Store(f.requests)
		}
	}
	switch {
	case f.hasTE && !f.http10: // net/http ignores Transfer-Encoding in HTTP/1.0
		f.state = stChunkSize // net/http takes only "chunked"
	case f.hasCL && f.cl > 0:
		f.state, f.remaining = stBody, f.cl
	}
	f.started, f.http10, f.options, f.hasCL, f.hasTE, f.cl = false, false, false, false, false, 0
	if cap(f.line) > 512 {
		f.line = nil // an idle connection keeps no long header line's buffer
	}
}

// chunkSize parses a chunk size line as net/http does: hex digits, then
// optional whitespace and a ;extension.
func chunkSize(line []byte) (int64, bool) {
	for i, b := range line {
		if b == ';' {
			line = line[:i]
			break
		}
	}
	line = trimSpace(line)
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n int64
	for _, b := range line {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b -= 'a' - 10
		case 'A' <= b && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(b)
		if n < 0 {
			return 0, false
		}
	}
	return n, true
}

func cutColon(line []byte) (name, value []byte, ok bool) {
	for i, b := range line {
		if b == ':' {
			return line[:i], line[i+1:], true
		}
	}
	return nil, nil, false
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
