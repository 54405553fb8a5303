package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// health is what Pebble's event listener tells of the database's storage:
// a background error (a flush or compaction that failed, e.g. on a full
// disk; Pebble retries it) until a flush or compaction succeeds again, and
// write stalls while they last. The engine's Health reports it, for
// readiness.
type health struct {
	log, stallLog *sampler

	mu       sync.Mutex
	bgErr    error     // the last background error, until a flush or compaction succeeds
	bgErrAt  time.Time // when bgErr was first seen
	stalled  bool
	stallWhy string
}

// err returns what keeps the database from taking writes now, or nil.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.stalled:
		return fmt.Errorf("embedded: writes stalled (%s)", h.stallWhy)
	case h.bgErr != nil:
		return fmt.Errorf("embedded: background error since %s: %w", h.bgErrAt.Format(time.RFC3339), h.bgErr)
	}
	return nil
}

// listener is the Pebble event listener that keeps h.
func (h *health) listener(l *slog.Logger) *pebble.EventListener {
	cleared := func(err error) {
		if err != nil {
			return
		}
		h.mu.Lock()
		was := h.bgErr
		h.bgErr = nil
		h.mu.Unlock()
		if was != nil {
			l.Info("embedded: the store writes again after a background error", "component", "pebble", "err", firstLine(was))
		}
	}
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			h.mu.Lock()
			if h.bgErr == nil {
				h.bgErrAt = time.Now()
			}
			h.bgErr = err
			h.mu.Unlock()
			// Pebble retries a failing flush at once: one line a second
			// at most says so.
			h.log.Error(l, "embedded: background error (Pebble retries it)", "component", "pebble", "err", firstLine(err))
		},
		FlushEnd:      func(info pebble.FlushInfo) { cleared(info.Err) },
		CompactionEnd: func(info pebble.CompactionInfo) { cleared(info.Err) },
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			h.mu.Lock()
			h.stalled, h.stallWhy = true, info.Reason
			h.mu.Unlock()
			h.stallLog.Warn(l, "embedded: writes stalled", "component", "pebble", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			h.mu.Lock()
			h.stalled = false
			h.mu.Unlock()
			l.Debug("embedded: writes no longer stalled", "component", "pebble")
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			h.log.Warn(l, "embedded: slow disk", "component", "pebble", "path", info.Path,
				"op", info.OpType.String(), "duration", info.Duration)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("embedded: data corruption", "component", "pebble", "path", info.Path, "err", info.Details)
			fatal(l, fmt.Sprintf("data corruption in %s: %v", info.Path, info.Details))
		},
	}
}

// Health reports what keeps the engine from taking writes now (Pebble's
// background errors and write stalls), for readiness; see
// engine.HealthReporter.
func (e *engineDriver) Health() error { return e.db.health.err() }

// exit ends the process; tests replace it.
var exit = osExit

var osExit = os.Exit

// FatalExitCode is the exit status of a process whose embedded store hit
// an error it cannot go on from.
const FatalExitCode = 70

// fatal ends the process after an error Pebble cannot go on from (its
// Logger.Fatalf: a WAL write that failed, a MANIFEST that cannot be
// written, corruption): the database would only wedge, so the process
// exits for its supervisor to restart it. It exits rather than panics: a
// panic in a goroutine whose panics are recovered (an HTTP handler's)
// would leave the process up with a broken database.
func fatal(l *slog.Logger, msg string) {
	l.Error("embedded: the store cannot go on; exiting so that a supervisor restarts arr",
		"component", "pebble", "err", msg, "exit_code", FatalExitCode)
	exit(FatalExitCode)
	panic(errors.New("pebble: " + msg)) // exit was replaced (tests)
}

// sampler lets a line through at most once a second, counting the ones
// it held back.
type sampler struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (s *sampler) allow() (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.last) >= time.Second {
		n := s.dropped
		s.last, s.dropped = now, 0
		return true, n
	}
	s.dropped++
	return false, 0
}

func (s *sampler) Error(l *slog.Logger, msg string, args ...any) {
	if ok, n := s.allow(); ok {
		l.Error(msg, append(args, "suppressed", n)...)
	}
}

func (s *sampler) Warn(l *slog.Logger, msg string, args ...any) {
	if ok, n := s.allow(); ok {
		l.Warn(msg, append(args, "suppressed", n)...)
	}
}

// firstLine is err's message up to its first line break: Pebble's errors
// carry their stack trace after it.
func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}
