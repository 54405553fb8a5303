package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/worker"
)

// recorder is a slog.Handler that keeps the records, as maps of msg,
// level and the attributes' values.
type recorder struct {
	mu   sync.Mutex
	recs []map[string]any
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, m)
	return nil
}

func (h *recorder) lines() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.recs...)
}

// One line per outcome, from the core: succeeded (info), retrying with
// its delay (info), failed for a permanent error and dead-lettered after
// the last attempt (warn), each with route, id, attempt and duration, the
// error cut to 512 bytes.
func TestOutcomeLines(t *testing.T) {
	r := newRig(t)
	long := strings.Repeat("e", 10<<10)
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		switch string(tk.Request.Body) {
		case "ok":
			return &worker.Result{Body: []byte("fine")}, nil
		case "permanent":
			return nil, worker.Permanent(errors.New("bad request: " + long))
		}
		return nil, errors.New("flaky: " + long)
	})
	logs := &recorder{}
	cc := arr.Config{MaxAttempts: 3, Backoff: func(int) time.Duration { return time.Millisecond }}
	cc.Store, cc.Queue, cc.Results = r.store, r.queue, r.results
	cc.Logger = slog.New(logs)
	c, err := arr.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := worker.New(worker.Config{Client: c, Handlers: map[string]worker.Handler{"r": h}, Logger: cc.Logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	ok, perm, flaky := r.submit(t, "ok"), r.submit(t, "permanent"), r.submit(t, "flaky")
	for _, id := range []string{ok, perm, flaky} {
		r.waitTerminal(t, id)
	}
	// The outcome is logged just after the state the test waited for is
	// written: wait for the three final lines.
	type key struct{ msg, id string }
	var got map[key][]map[string]any
	debug := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, debug = map[key][]map[string]any{}, 0
		for _, m := range logs.lines() {
			id, _ := m["id"].(string)
			got[key{m["msg"].(string), id}] = append(got[key{m["msg"].(string), id}], m)
		}
		if len(got[key{"operation succeeded", ok}])+len(got[key{"operation failed", perm}])+
			len(got[key{"operation dead-lettered", flaky}]) == 3 || time.Now().After(deadline) {
			break
		}
	}
	got = map[key][]map[string]any{}
	for _, m := range logs.lines() {
		id, _ := m["id"].(string)
		got[key{m["msg"].(string), id}] = append(got[key{m["msg"].(string), id}], m)
		if m["level"] == "DEBUG" {
			debug++
		}
		if e, ok := m["err"].(string); ok && len(e) > 512 {
			t.Errorf("%s: err of %d bytes", m["msg"], len(e))
		}
	}
	check := func(msg, id, level string, n int) []map[string]any {
		t.Helper()
		ls := got[key{msg, id}]
		if len(ls) != n {
			t.Fatalf("%d %q lines for %s, want %d", len(ls), msg, id, n)
		}
		for _, m := range ls {
			if m["level"] != level || m["route"] != "r" || m["attempt"] == nil || m["duration"] == nil {
				t.Errorf("%q line %v", msg, m)
			}
		}
		return ls
	}
	check("operation succeeded", ok, "INFO", 1)
	check("operation failed", perm, "WARN", 1)
	for _, m := range check("operation retrying", flaky, "INFO", 2) {
		if m["delay"] == nil || !strings.HasPrefix(m["err"].(string), "flaky: eee") {
			t.Errorf("retrying line %v", m)
		}
	}
	if m := check("operation dead-lettered", flaky, "WARN", 1)[0]; m["attempt"] != int64(3) {
		t.Errorf("dead-lettered line %v", m)
	}
	if len(got[key{"operation retrying", perm}])+len(got[key{"operation dead-lettered", perm}]) != 0 {
		t.Error("a permanent failure logged as retried or dead-lettered")
	}
	if len(got[key{"attempt started", ok}]) != 1 || debug < 5 {
		t.Errorf("debug lines: %d, attempt started %v", debug, got[key{"attempt started", ok}])
	}
}
