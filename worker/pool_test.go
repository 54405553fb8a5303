package worker_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/embedded"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/fileresult"
	"github.com/arrhq/arr/worker"
)

type rig struct {
	store   *opstore.Store
	queue   *queue.Queue
	results *resultstore.Store
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	db, err := embedded.Open(filepath.Join(dir, "db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rs, err := fileresult.Open(filepath.Join(dir, "results"), fileresult.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return &rig{opstore.New(db.Store()), queue.New(db.Queue()), resultstore.New(rs)}
}

func (r *rig) submit(t *testing.T, body string) string {
	t.Helper()
	now := time.Now().UTC()
	op := &operation.Operation{ID: now.Format("20060102150405.000000000") + body, Route: "r", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	r.store1(t, op, body)
	return op.ID
}

// store1 stores op with a request of body and enqueues its message.
func (r *rig) store1(t *testing.T, op *operation.Operation, body string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := r.store.Create(ctx, op, &operation.Request{Method: "POST", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	if err := r.queue.Enqueue(ctx, arr.Message{ID: op.ID, Route: op.Route}.Encode()); err != nil {
		t.Fatal(err)
	}
}

// client is a core over the rig's stores with cc's settings.
func (r *rig) client(t *testing.T, cc arr.Config) *arr.Client {
	t.Helper()
	cc.Store, cc.Queue, cc.Results = r.store, r.queue, r.results
	cc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := arr.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run starts a pool with cfg over a core with cc's settings over the
// rig's stores (and a quiet logger) until the test ends, and returns the
// pool's context.
func (r *rig) run(t *testing.T, cc arr.Config, cfg worker.Config) context.Context {
	t.Helper()
	cfg.Client = r.client(t, cc)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = p.Run(ctx) }()
	return ctx
}

func (r *rig) pool(t *testing.T, h worker.Handler, grace time.Duration) *worker.Pool {
	p, err := worker.New(worker.Config{Client: r.client(t, arr.Config{}),
		Handlers: map[string]worker.Handler{"r": h}, ShutdownGrace: grace,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// On shutdown a handler that finishes within the grace period completes;
// one that does not is canceled and its operation goes back to the queue
// without the attempt being counted, and a later pool finishes it.
func TestShutdownGrace(t *testing.T) {
	r := newRig(t)
	started := make(chan string, 2)
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		started <- string(tk.Request.Body)
		d := 100 * time.Millisecond
		if string(tk.Request.Body) == "slow" {
			d = time.Hour
		}
		select {
		case <-time.After(d):
			return &worker.Result{Body: tk.Request.Body}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	quick, slow := r.submit(t, "quick"), r.submit(t, "slow")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	p := r.pool(t, h, 500*time.Millisecond)
	go func() { done <- p.Run(ctx) }()
	<-started
	<-started
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	if op, _ := r.store.Get(context.Background(), quick); op.Status != operation.Succeeded {
		t.Fatalf("quick: %s", op.Status)
	}
	op, _ := r.store.Get(context.Background(), slow)
	if op.Status != operation.Pending || op.Attempts != 0 {
		t.Fatalf("slow after shutdown: %s, %d attempts; want pending, 0", op.Status, op.Attempts)
	}

	// A new pool with a fast handler finishes the returned operation.
	fast := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return &worker.Result{ContentType: "text/plain", Body: []byte("done")}, nil
	})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = r.pool(t, fast, time.Second).Run(ctx2) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		op, _ = r.store.Get(context.Background(), slow)
		if op.Status == operation.Succeeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("returned operation never finished: %s", op.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if op.Attempts != 1 {
		t.Fatalf("attempts %d, want 1", op.Attempts)
	}
}

// A handler that outlives its timeout fails the attempt; a panic is a
// permanent failure.
func TestTimeoutAndPanic(t *testing.T) {
	r := newRig(t)
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		if string(tk.Request.Body) == "panic" {
			panic("boom")
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	hang, boom := r.submit(t, "hang"), r.submit(t, "panic")
	ctx := r.run(t, arr.Config{Timeout: 100 * time.Millisecond, MaxAttempts: 2,
		Backoff: func(int) time.Duration { return time.Millisecond }},
		worker.Config{Handlers: map[string]worker.Handler{"r": h}})
	for _, c := range []struct {
		id       string
		attempts int
		detail   string
	}{{hang, 2, "the handler did not finish within 100ms"}, {boom, 1, "handler panicked: boom"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			op, _ := r.store.Get(ctx, c.id)
			if op.Status == operation.Failed {
				if op.Attempts != c.attempts || op.Error == nil || op.Error.Detail != c.detail {
					t.Fatalf("%s: attempts %d, error %+v", c.id, op.Attempts, op.Error)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never failed: %s", c.id, op.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// crashedStart is when the attempt of submitRunning's operations started.
var crashedStart = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// submitRunning stores an operation as a worker that died mid-attempt
// leaves it: running, with its message queued again.
func (r *rig) submitRunning(t *testing.T, body string, attempts, interruptions int) string {
	t.Helper()
	now := time.Now().UTC()
	op := &operation.Operation{ID: now.Format("20060102150405.000000000") + body, Route: "r", Status: operation.Running,
		CreatedAt: now, UpdatedAt: now, Attempts: attempts, Interruptions: interruptions, AttemptStartedAt: crashedStart}
	r.store1(t, op, body)
	return op.ID
}

func (r *rig) waitTerminal(t *testing.T, id string) *operation.Operation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		op, err := r.store.Get(context.Background(), id)
		if err == nil && op.Status.Terminal() {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not terminal: %+v %v", id, op, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An attempt cut short by a dead worker is recorded as interrupted and
// counted in its own budget, not in MaxAttempts; the next attempt runs.
// Past MaxInterruptions the operation fails without running again.
func TestInterruptedAttempts(t *testing.T) {
	r := newRig(t)
	var ran atomic.Int32
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		ran.Add(1)
		return &worker.Result{Body: tk.Request.Body}, nil
	})
	again := r.submitRunning(t, "again", 1, 0)
	doomed := r.submitRunning(t, "doomed", 3, 2)
	r.run(t, arr.Config{MaxAttempts: 1, MaxInterruptions: 3},
		worker.Config{Handlers: map[string]worker.Handler{"r": h}})

	op := r.waitTerminal(t, again)
	if op.Status != operation.Succeeded || op.Attempts != 2 || op.Interruptions != 1 || len(op.History) != 1 ||
		op.History[0].Outcome != operation.OutcomeInterrupted || op.History[0].Number != 1 ||
		op.History[0].Error.Type != worker.ProblemWorkerLost || !op.History[0].StartedAt.Equal(crashedStart) ||
		!op.AttemptStartedAt.After(op.History[0].StartedAt) {
		t.Fatalf("after one interruption: %+v", op)
	}
	op = r.waitTerminal(t, doomed)
	if op.Status != operation.Failed || op.Error.Type != worker.ProblemAttemptsExhausted || op.Interruptions != 3 {
		t.Fatalf("after three interruptions: %+v", op)
	}
	if ran.Load() != 1 {
		t.Fatalf("the handler ran %d times, want once (the doomed operation must not run)", ran.Load())
	}
}

// The lease is renewed while a handler winds down after its context ended
// (a command in its kill grace): the operation is not delivered to another
// run meanwhile, and the timeout is its only recorded outcome.
func TestLeaseKeptWhileHandlerWindsDown(t *testing.T) {
	r := newRig(t)
	var running, runs, overlap atomic.Int32
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		runs.Add(1)
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		<-ctx.Done()
		time.Sleep(time.Second) // ignores its context for three leases
		return nil, ctx.Err()
	})
	id := r.submit(t, "slow-to-stop")
	r.run(t, arr.Config{Timeout: 100 * time.Millisecond, MaxAttempts: 1},
		worker.Config{Handlers: map[string]worker.Handler{"r": h}, Lease: 300 * time.Millisecond})
	op := r.waitTerminal(t, id)
	time.Sleep(500 * time.Millisecond) // a wrong redelivery would start by now
	if op.Status != operation.Failed || op.Error.Type != worker.ProblemTimeout || len(op.History) != 1 ||
		op.History[0].Outcome != operation.OutcomeFailed || op.Interruptions != 0 {
		t.Fatalf("operation %+v, history %+v", op, op.History)
	}
	if runs.Load() != 1 || overlap.Load() != 0 {
		t.Fatalf("the handler ran %d times (%d overlapping)", runs.Load(), overlap.Load())
	}
}

// A handler that runs for several leases keeps its operation: the
// heartbeats renew the lease, and no other run starts.
func TestLongHandlerKeepsItsLease(t *testing.T) {
	r := newRig(t)
	var runs atomic.Int32
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		runs.Add(1)
		select {
		case <-time.After(time.Second): // over three leases
			return &worker.Result{Body: []byte("done")}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	id := r.submit(t, "long")
	r.run(t, arr.Config{}, worker.Config{Handlers: map[string]worker.Handler{"r": h}, Lease: 300 * time.Millisecond})
	op := r.waitTerminal(t, id)
	if op.Status != operation.Succeeded || op.Attempts != 1 || len(op.History) != 0 || runs.Load() != 1 {
		t.Fatalf("operation %+v after %d runs", op, runs.Load())
	}
}

// An attempt whose operation a later attempt took over (its lease was lost
// and the operation delivered again) neither ends the operation nor
// deletes the result the later attempt wrote.
func TestSupersededAttemptLeavesTheOperation(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	started, release := make(chan string, 1), make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		started <- tk.ID
		<-release
		return &worker.Result{Body: []byte("same bytes")}, nil
	})
	id := r.submit(t, "taken-over")
	p := r.pool(t, h, time.Second)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = p.Run(pctx) }()
	<-started
	// A later attempt starts and succeeds meanwhile.
	if _, err := r.results.Put(ctx, id, strings.NewReader("same bytes"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	later, err := r.store.Transition(ctx, id, func(o *operation.Operation) error {
		o.Attempts++
		o.Status, o.Result = operation.Succeeded, &operation.Result{Key: id, ContentType: "text/plain", Size: 10}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.queue.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.InFlight == 0 && st.Ready == 0 && st.Delayed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale delivery was not settled: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	op, err := r.store.Get(ctx, id)
	if err != nil || op.Version != later.Version || op.Status != operation.Succeeded {
		t.Fatalf("the stale attempt changed the operation: %+v %v (was version %d)", op, err, later.Version)
	}
	rd, err := r.results.Open(ctx, id)
	if err != nil {
		t.Fatalf("the later attempt's result was deleted: %v", err)
	}
	rd.Close()
}
