package embedded

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble's events make the engine's health: a background error until a
// flush or compaction succeeds, a write stall while it lasts.
func TestHealthFollowsPebbleEvents(t *testing.T) {
	h := &health{log: &sampler{}, stallLog: &sampler{}}
	l := h.listener(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := h.err(); err != nil {
		t.Fatalf("a new health: %v", err)
	}
	l.BackgroundError(errors.New("write 000093.sst: no space left on device\nstack trace"))
	if err := h.err(); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("after a background error: %v", err)
	}
	l.FlushEnd(pebble.FlushInfo{Err: errors.New("still failing")})
	if h.err() == nil {
		t.Fatal("a failed flush cleared the background error")
	}
	l.FlushEnd(pebble.FlushInfo{})
	if err := h.err(); err != nil {
		t.Fatalf("after a successful flush: %v", err)
	}
	l.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	if err := h.err(); err == nil || !strings.Contains(err.Error(), "memtable count limit") {
		t.Fatalf("during a write stall: %v", err)
	}
	l.WriteStallEnd()
	if err := h.err(); err != nil {
		t.Fatalf("after the stall: %v", err)
	}
}

// Pebble's fatal errors end the process with FatalExitCode, wherever they
// happen, rather than a panic that an HTTP handler's recover would catch.
func TestFatalExits(t *testing.T) {
	code := -1
	exit = func(c int) { code = c }
	defer func() { exit = osExit }()
	func() {
		defer func() { _ = recover() }() // exit was replaced: fatal panics after it
		pebbleLogger{l: slog.New(slog.NewTextHandler(io.Discard, nil)), errs: &sampler{}}.Fatalf("pebble: fatal commit error: %v", errors.New("no space left on device"))
	}()
	if code != FatalExitCode {
		t.Fatalf("exit code %d, want %d", code, FatalExitCode)
	}
}

// The engine's Health is its database's.
func TestEngineHealth(t *testing.T) {
	db := openT(t, t.TempDir(), Options{})
	e := &engineDriver{db: db}
	if err := e.Health(); err != nil {
		t.Fatalf("a new database: %v", err)
	}
	db.health.listener(slog.New(slog.NewTextHandler(io.Discard, nil))).BackgroundError(errors.New("disk full"))
	if e.Health() == nil {
		t.Fatal("Health is nil after a background error")
	}
}
