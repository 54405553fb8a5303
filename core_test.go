package arr_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/embedded"
	"github.com/arrhq/arr/internal/enginetest"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/fileresult"
)

// flakyQueue fails Enqueue while fail is set: a crash or a lost connection
// between an operation's write and its message's.
type flakyQueue struct {
	qdriver.Queue
	fail atomic.Bool
}

func (q *flakyQueue) Enqueue(ctx context.Context, msgs ...qdriver.Message) error {
	if q.fail.Load() {
		return errors.New("connection lost")
	}
	return q.Queue.Enqueue(ctx, msgs...)
}

type rig struct {
	store *opstore.Store
	q     *flakyQueue
	c     *arr.Client
}

// newRig is a core over the embedded engine without its one-step writes
// (as on an engine that has none), whose queue can be made to fail.
func newRig(t *testing.T) *rig {
	t.Helper()
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
	r := &rig{store: opstore.New(db.Store()), q: &flakyQueue{Queue: db.Queue()}}
	r.c, err = arr.New(arr.Config{Store: r.store, Queue: queue.New(r.q), Results: resultstore.New(rs),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) stats(t *testing.T) queue.Stats {
	t.Helper()
	st, err := r.q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// failWhileHeld submits an operation, takes its delivery and writes its
// failure, as a worker does before it acks; the delivery is not settled.
func (r *rig) failWhileHeld(t *testing.T) (*operation.Operation, queue.Delivery) {
	t.Helper()
	ctx := context.Background()
	op, _, err := r.c.Submit(ctx, arr.Submission{Route: "echo", Request: &operation.Request{Body: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.c.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("receive: %d, %v", len(ds), err)
	}
	if _, err := r.store.Transition(ctx, op.ID, func(o *operation.Operation) error {
		o.Status, o.Attempts, o.Error = operation.Failed, 1, &operation.Problem{Type: "urn:x", Title: "x"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return op, ds[0]
}

// A retry whose message is lost between its two writes leaves a pending
// operation without a message; the janitor's sweep enqueues it again, and
// a pending operation whose message is queued is left as it is.
func TestSweepRepairsARetryWhoseMessageWasLost(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// A worker took the message and the operation failed for good.
	op, d := r.failWhileHeld(t)
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}

	r.q.fail.Store(true)
	if _, err := r.c.Retry(ctx, op.ID); err == nil {
		t.Fatal("Retry with a failing queue succeeded")
	}
	got, err := r.c.Get(ctx, op.ID)
	if err != nil || got.Status != operation.Pending {
		t.Fatalf("after the failed retry: %+v, %v; want pending", got, err)
	}
	if st := r.stats(t); st.Ready != 0 {
		t.Fatalf("messages after the failed retry: %+v, want none", st)
	}
	r.q.fail.Store(false)
	r.c.Sweep(ctx, time.Now().Add(-time.Hour)) // too recent to sweep yet
	if st := r.stats(t); st.Ready != 0 {
		t.Fatalf("a sweep enqueued an operation changed after its bound: %+v", st)
	}
	r.c.Sweep(ctx, time.Now().Add(time.Second))
	if st := r.stats(t); st.Ready != 1 {
		t.Fatalf("messages after the sweep: %+v, want the lost one back", st)
	}
	r.c.Sweep(ctx, time.Now().Add(time.Second))
	r.c.Sweep(ctx, time.Now().Add(time.Second))
	ds, err := r.c.Receive(ctx, 10, time.Minute)
	if err != nil || len(ds) != 1 || ds[0].Message().ID != op.ID {
		t.Fatalf("after three sweeps: %d deliveries, %v; want exactly the one of %s", len(ds), err, op.ID)
	}
	if m, err := arr.DecodeMessage(ds[0].Message()); err != nil || m.Route != "echo" {
		t.Fatalf("swept message %+v, %v", m, err)
	}
}

// Cancel and Retry are the lifecycle's: a finished operation is not
// cancelable, only a failed one is retryable, and a retry gives fresh
// budgets and clears the expiry while keeping the history.
func TestCancelAndRetry(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	op, _, err := r.c.Submit(ctx, arr.Submission{Route: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Retry(ctx, op.ID); err != nil {
		t.Fatalf("retry of a pending operation (re-enqueue) = %v", err)
	}
	canceled, err := r.c.Cancel(ctx, op.ID)
	if err != nil || canceled.Status != operation.Canceled || canceled.Error.Type != arr.ProblemCanceled ||
		time.Until(canceled.ExpiresAt) < 23*time.Hour || !canceled.TombstoneUntil.Equal(canceled.ExpiresAt.Add(arr.DefaultTombstone)) {
		t.Fatalf("cancel = %+v, %v", canceled, err)
	}
	if got, err := r.c.Cancel(ctx, op.ID); !errors.Is(err, arr.ErrNotCancelable) || got.Status != operation.Canceled {
		t.Fatalf("second cancel = %v, %v; want ErrNotCancelable with the operation", got, err)
	}
	if _, err := r.c.Retry(ctx, op.ID); !errors.Is(err, arr.ErrNotRetryable) {
		t.Fatalf("retry of a canceled operation = %v, want ErrNotRetryable", err)
	}
	if _, err := r.c.Cancel(ctx, "0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a"); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("cancel of an unknown id = %v", err)
	}
}

// The queue message's format: version 1 round-trips; a legacy body (the
// bare route name) is still read; a later version is refused, not
// misread.
func TestMessageCodec(t *testing.T) {
	m := arr.Message{ID: "id-1", Route: "post-v1-reports"}
	q := m.Encode()
	if q.ID != "id-1" || q.Body[0] != 0x01 {
		t.Fatalf("encoded %+v", q)
	}
	if got, err := arr.DecodeMessage(q); err != nil || got != m {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if got, err := arr.DecodeMessage(queue.Message{ID: "id-2", Body: []byte("echo")}); err != nil || got.Route != "echo" {
		t.Fatalf("legacy body: %+v, %v", got, err)
	}
	if got, err := arr.DecodeMessage(queue.Message{ID: "id-3"}); err != nil || got.Route != "" || got.ID != "id-3" {
		t.Fatalf("empty body: %+v, %v", got, err)
	}
	if _, err := arr.DecodeMessage(queue.Message{ID: "id-4", Body: []byte{0x02, 'x'}}); err == nil {
		t.Fatal("a version-2 body was read as version 1")
	}
}

// One rule names a route from its pattern, whichever way it comes.
func TestRouteName(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/v1/reports", "post-v1-reports"},
		{"POST", "/v1/items/{id}", "post-v1-items-id"},
		{"*", "/", "any"},
		{"PUT", "/v1/a.b_c/{rest...}", "put-v1-a-b-c-rest"},
	} {
		if got := arr.RouteName(c.method, c.path); got != c.want {
			t.Errorf("RouteName(%s, %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

// all lists every operation of the rig's store.
func (r *rig) all(t *testing.T) []*operation.Operation {
	t.Helper()
	ops, _, err := r.c.List(context.Background(), arr.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// A submit whose operation was stored but whose message was not must not
// leave an operation pending for ever: with an idempotency key, the
// client's retry enqueues the held operation's message; without one (no
// retry can find it), the operation is failed as not-enqueued.
func TestSubmitWithoutMessage(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	sub := func(key string) arr.Submission {
		return arr.Submission{Route: "echo", IdempotencyKey: key, Request: &operation.Request{Body: []byte("b")}}
	}

	// With a key: the error leaves it pending; the retry repairs it.
	r.q.fail.Store(true)
	if _, _, err := r.c.Submit(ctx, sub("key-1")); err == nil {
		t.Fatal("Submit with the queue down succeeded")
	}
	ops := r.all(t)
	if len(ops) != 1 || ops[0].Status != operation.Pending {
		t.Fatalf("keyed operation after a failed enqueue: %+v, want one, pending", ops)
	}
	first := ops[0]
	r.q.fail.Store(false)
	stored, created, err := r.c.Submit(ctx, sub("key-1"))
	if err != nil || created || stored.ID != first.ID {
		t.Fatalf("retry: %+v created=%v %v, want the first operation, not created", stored, created, err)
	}
	if st := r.stats(t); st.Ready != 1 {
		t.Fatalf("retry enqueued %+v, want the held operation's message", st)
	}
	ds, err := r.c.Receive(ctx, 10, time.Minute)
	if err != nil || len(ds) != 1 || ds[0].Message().ID != first.ID {
		t.Fatalf("deliveries %v, %v; want the held operation's", ds, err)
	}
	if m, err := arr.DecodeMessage(ds[0].Message()); err != nil || m.Route != "echo" {
		t.Fatalf("message %+v, %v", m, err)
	}
	// A replay of a finished operation enqueues nothing.
	if _, err := r.store.Transition(ctx, first.ID, func(o *operation.Operation) error { o.Status = operation.Succeeded; return nil }); err != nil {
		t.Fatal(err)
	}
	_ = ds[0].Ack(ctx)
	if _, _, err := r.c.Submit(ctx, sub("key-1")); err != nil {
		t.Fatal(err)
	}
	if st := r.stats(t); st.Ready != 0 || st.InFlight != 0 {
		t.Fatalf("replay of a finished operation enqueued %+v, want nothing", st)
	}

	// Without a key: failed, to be deleted by the janitor.
	r.q.fail.Store(true)
	if _, _, err := r.c.Submit(ctx, sub("")); err == nil {
		t.Fatal("Submit with the queue down succeeded")
	}
	var lone *operation.Operation
	for _, op := range r.all(t) {
		if op.ID != first.ID {
			lone = op
		}
	}
	if lone == nil || lone.Status != operation.Failed || lone.Error == nil || lone.Error.Type != arr.ProblemNotEnqueued || lone.ExpiresAt.IsZero() {
		t.Fatalf("keyless operation after a failed enqueue: %+v, want failed not-enqueued with an expiry", lone)
	}
}

// On an engine with one-step writes, a retry is one durable write of the
// transition and the message: the message is there at once, and the
// queue's own Enqueue (the two-step path) is not used.
func TestRetryIsOneWriteOnAnAtomicEngine(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := enginetest.Open(t, "embedded:"+filepath.Join(dir, "db"))
	st, err := e.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qu, err := e.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := e.Results(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fq := &flakyQueue{Queue: qu.Driver()}
	c, err := arr.New(arr.Config{Store: st, Queue: queue.New(fq), Results: rs, Atomic: e.Atomic(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	op, _, err := c.Submit(ctx, arr.Submission{Route: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatal(len(ds), err)
	}
	if _, err := st.Transition(ctx, op.ID, func(o *operation.Operation) error { o.Status = operation.Failed; return nil }); err != nil {
		t.Fatal(err)
	}
	_ = ds[0].Ack(ctx)
	fq.fail.Store(true) // the two-step path would fail
	got, err := c.Retry(ctx, op.ID)
	if err != nil || got.Status != operation.Pending {
		t.Fatalf("Retry = %+v, %v; want pending", got, err)
	}
	if s, err := qu.Stats(ctx); err != nil || s.Ready != 1 {
		t.Fatalf("queue after the retry: %+v, %v; want its message", s, err)
	}
}

// A Retry between the write of an attempt's failure and the ack of its
// delivery enqueues while the delivery holds the message (a no-op), and
// the ack then drops it: Settled, which the worker calls after the ack,
// gives the retried operation its message back.
func TestSettledRequeuesARetryThatRacedTheAck(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	op, d := r.failWhileHeld(t)
	// The client sees the failure and retries before the worker acks.
	if _, err := r.c.Retry(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.stats(t); st.Ready != 0 {
		t.Fatalf("messages after the ack: %+v; the race this test is about did not happen", st)
	}
	// A disposition that did not end the operation changes nothing.
	if err := r.c.Settled(ctx, op.ID, arr.Disposition{Settle: arr.Nak, Outcome: "retried"}); err != nil {
		t.Fatal(err)
	}
	if st := r.stats(t); st.Ready != 0 {
		t.Fatalf("Settled of a Nak enqueued: %+v", st)
	}
	if err := r.c.Settled(ctx, op.ID, arr.Disposition{Settle: arr.AckLazy, Outcome: "failed"}); err != nil {
		t.Fatal(err)
	}
	ds, err := r.c.Receive(ctx, 10, time.Minute)
	if err != nil || len(ds) != 1 || ds[0].Message().ID != op.ID {
		t.Fatalf("after Settled: %d deliveries, %v; want the retried operation's", len(ds), err)
	}
}
