package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
)

func TestNewLoggerFormats(t *testing.T) {
	for _, f := range []string{"", "text", "logfmt", "json"} {
		var b bytes.Buffer
		l, err := NewLogger(&b, LogConfig{Format: f}, slog.LevelInfo)
		if err != nil {
			t.Fatalf("%q: %v", f, err)
		}
		l.Info("hello", "k", "v w")
		line := b.String()
		if f == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] != "hello" || m["k"] != "v w" {
				t.Errorf("json line %q: %v %v", line, m, err)
			}
		} else if !strings.Contains(line, `msg=hello k="v w"`) {
			t.Errorf("%q line %q", f, line)
		}
	}
	if _, err := NewLogger(io.Discard, LogConfig{Format: "xml"}, slog.LevelInfo); err == nil {
		t.Error("format xml accepted")
	}
}

// An error value is cut to MaxLoggedErrorBytes, any other string to
// MaxLoggedStringBytes, also in attributes added by With.
func TestLogTruncates(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewLogger(&b, LogConfig{Format: "json"}, slog.LevelInfo)
	big := strings.Repeat("é", 64<<10)
	l.With("ctx", big).Warn("upstream", "err", errors.New(big), "detail", big)
	var m map[string]string
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if n := len(m["err"]); n > MaxLoggedErrorBytes || !strings.HasSuffix(m["err"], "…") {
		t.Errorf("err of %d bytes", n)
	}
	for _, k := range []string{"detail", "ctx"} {
		if n := len(m[k]); n > MaxLoggedStringBytes || n < MaxLoggedErrorBytes {
			t.Errorf("%s of %d bytes", k, n)
		}
	}
	if b.Len() > 8<<10 {
		t.Errorf("line of %d bytes", b.Len())
	}
}

// A line with an error that repeats within the window is logged once;
// the next one after the window says how many were left out. Lines of
// other operations, other errors or without an error are not sampled.
func TestLogSampling(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewLogger(&b, LogConfig{Format: "json", SampleWindow: time.Hour}, slog.LevelInfo)
	h := l.Handler()
	t0 := time.Now()
	rec := func(at time.Time, msg string, args ...any) {
		r := slog.NewRecord(at, slog.LevelError, msg, 0)
		r.Add(args...)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	full := errors.New("no space left on device")
	for i := range 100 {
		rec(t0.Add(time.Duration(i)*time.Millisecond), "store write", "err", full)
	}
	rec(t0, "store write", "err", errors.New("other"))
	rec(t0, "store write", "err", full, "id", "op-1")
	rec(t0, "store write", "err", full, "id", "op-2")
	rec(t0, "store write", "err", full, "id", "op-2", "attempt", 2)
	rec(t0, "no error here")
	rec(t0, "no error here")
	rec(t0.Add(2*time.Hour), "store write", "err", full)
	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 8 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if _, ok := lines[0]["suppressed"]; ok {
		t.Error("the first line has a suppressed count")
	}
	if last := lines[7]; last["suppressed"] != 99.0 || last["err"] != full.Error() {
		t.Errorf("the line after the window: %v", last)
	}
}

// A client that went away (a canceled context, a broken pipe, a reset
// connection) is logged at debug, not as an error.
func TestLogDisconnectsAtDebug(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewLogger(&b, LogConfig{Format: "json"}, slog.LevelInfo)
	for _, err := range []error{context.Canceled, fmt.Errorf("write: %w", syscall.EPIPE), &netErr{syscall.ECONNRESET}} {
		l.Error("api: list operations", "err", err)
	}
	if b.Len() != 0 {
		t.Errorf("disconnects logged at info or above: %s", b.String())
	}
	b.Reset()
	dl, _ := NewLogger(&b, LogConfig{Format: "json"}, slog.LevelDebug)
	dl.Error("api: list operations", "err", context.Canceled)
	if !strings.Contains(b.String(), `"level":"DEBUG"`) {
		t.Errorf("at debug: %s", b.String())
	}
	b.Reset()
	l.Error("api: list operations", "err", errors.New("disk on fire"))
	if !strings.Contains(b.String(), `"level":"ERROR"`) {
		t.Errorf("a real error: %s", b.String())
	}
}

type netErr struct{ err error }

func (e *netErr) Error() string { return "read tcp: " + e.err.Error() }
func (e *netErr) Unwrap() error { return e.err }

// The access log has one line per request with its fields; the principal
// once authenticated; the values of secret query parameters never, and
// no query at all under the signed results' prefix.
func TestAccessLogLine(t *testing.T) {
	var b bytes.Buffer
	log, _ := NewLogger(&b, LogConfig{Format: "json"}, slog.LevelInfo)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "12345")
	})
	authed := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(arr.WithCaller(r.Context(), arr.Caller{Principal: "key:alice"})))
		})
	}
	h := accessLog(authed(notePrincipal(inner)), log, "/blobs/")
	for _, target := range []string{"/v1/operations?limit=5&token=s3cret&Sig=s3cret", "/blobs/abc.1?se=1&kid=k&sig=s3cret"} {
		b.Reset()
		req := httptest.NewRequest("GET", target, nil)
		req.RemoteAddr = "192.0.2.7:5555"
		req.Header.Set("X-Request-Id", "req-42")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if strings.Contains(b.String(), "s3cret") {
			t.Errorf("secret logged: %s", b.String())
		}
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatalf("%v: %s", err, b.String())
		}
		want := map[string]any{"msg": "request", "method": "GET", "status": 418.0, "bytes": 5.0,
			"principal": "key:alice", "ip": "192.0.2.7", "request_id": "req-42"}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s: %s = %v, want %v", target, k, m[k], v)
			}
		}
		if _, ok := m["duration_ms"].(float64); !ok {
			t.Errorf("no duration_ms: %v", m)
		}
		if rec.Header().Get("X-Request-Id") != "req-42" {
			t.Errorf("response X-Request-Id %q", rec.Header().Get("X-Request-Id"))
		}
		if strings.HasPrefix(target, "/blobs/") {
			if m["query"] != "" || m["path"] != "/blobs/abc.1" {
				t.Errorf("blob line: %v", m)
			}
		} else if q, _ := m["query"].(string); !strings.Contains(q, "limit=5") || !strings.Contains(q, "token=REDACTED") {
			t.Errorf("query %q", q)
		}
	}
	// A hostile request id is replaced by one of ours.
	b.Reset()
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("X-Request-Id", "a b\x00"+strings.Repeat("x", 100))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if id := rec.Header().Get("X-Request-Id"); !validRequestID(id) || strings.Contains(b.String(), "xxxx") {
		t.Errorf("request id %q; %s", id, b.String())
	}
}

// The access log's cost per request: the wrapper and a text line written
// to io.Discard, against the bare handler.
//
//	go test -run '^$' -bench AccessLog -benchtime 200000x ./server/
func BenchmarkAccessLog(b *testing.B) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) })
	log, _ := NewLogger(io.Discard, LogConfig{}, slog.LevelInfo)
	req := httptest.NewRequest("POST", "/v1/echo?x=1", nil)
	w := httptest.NewRecorder()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"off", notePrincipal(inner)}, {"on", accessLog(notePrincipal(inner), log, "/blobs/")}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeHTTP(w, req)
			}
		})
	}
}
