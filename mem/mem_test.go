package mem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/queue/queuetest"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
)

var nameSeq atomic.Int64

// uniqueName returns an engine name no other test uses.
func uniqueName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, nameSeq.Add(1)) }

// isOpen reports whether the process holds an engine named name.
func isOpen(name string) bool {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return registry.engines[name] != nil
}

// expectReleased fails t if the engine named name is still held: every
// handle on it must have been closed.
func expectReleased(t *testing.T, name string) {
	t.Helper()
	if isOpen(name) {
		t.Errorf("engine %q is still held after every handle on it was closed", name)
	}
}

// ---- conformance ----

// storeHarness opens stores and queues by URL on one named engine, which
// it holds with Open so that the suite's close-and-reopen tests find their
// data; its Close checks that the suite's handles released the engine.
type storeHarness struct {
	t    *testing.T
	name string
	keep *Engine
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	s, err := opstore.OpenStore(ctx, "mem:"+h.name)
	if err != nil {
		return nil, err
	}
	return s.Driver(), nil
}

func (h *storeHarness) OpenQueue(ctx context.Context) (qdriver.Queue, error) {
	q, err := queue.OpenQueue(ctx, "mem:"+h.name)
	if err != nil {
		return nil, err
	}
	return q.Driver(), nil
}

func (h *storeHarness) Close() {
	h.keep.Close()
	expectReleased(h.t, h.name)
}

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
		name := uniqueName("opstore")
		return &storeHarness{t: t, name: name, keep: Open(name)}, nil
	})
}

type queueHarness struct {
	t    *testing.T
	name string
	keep *Engine
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	q, err := queue.OpenQueue(ctx, fmt.Sprintf("mem:%s?maxDeliveries=%d", h.name, maxDeliveries))
	if err != nil {
		return nil, err
	}
	return q.Driver(), nil
}

func (h *queueHarness) Close() {
	h.keep.Close()
	expectReleased(h.t, h.name)
}

func TestQueueConformance(t *testing.T) {
	t.Parallel()
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		name := uniqueName("queue")
		return &queueHarness{t: t, name: name, keep: Open(name)}, nil
	})
}

func TestResultsConformance(t *testing.T) {
	t.Parallel()
	name := uniqueName("results") // one engine for every subtest, as a shared bucket
	resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
		Open: func(t *testing.T) rdriver.Store {
			st, err := resultstore.OpenStore(context.Background(), "mem:"+name)
			if err != nil {
				t.Fatal(err)
			}
			return st.Driver()
		},
	})
	expectReleased(t, name)
}

// ---- helpers ----

func newOp() *operation.Operation {
	now := time.Now().UTC()
	return &operation.Operation{ID: opstoretest.NewID(), Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
}

// res is a call's result and error, for try(f()).must(t).
type res[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) res[T] { return res[T]{v, err} }

func (r res[T]) must(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

// fetch serves a signed URL through a result store's handler.
func fetch(t *testing.T, rs *resultstore.Store, signed string) (int, string) {
	t.Helper()
	prefix, h := rs.Handler()
	if h == nil || !strings.HasPrefix(signed, prefix) {
		t.Fatalf("handler %v for prefix %q, URL %q", h, prefix, signed)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, signed, nil))
	return rec.Code, rec.Body.String()
}

// ---- engine ----

// Stores, queues and result stores opened from URLs with the same name
// share one engine: data, watches, atomic submits and URL signing keys.
func TestSameNameSharesData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("shared")
	u := "mem:" + name
	st1, st2 := try(opstore.OpenStore(ctx, u)).must(t), try(opstore.OpenStore(ctx, u)).must(t)
	q1, q2 := try(queue.OpenQueue(ctx, u)).must(t), try(queue.OpenQueue(ctx, u)).must(t)
	rs1, rs2 := try(resultstore.OpenStore(ctx, u)).must(t), try(resultstore.OpenStore(ctx, u)).must(t)

	op := try(func() (*operation.Operation, error) { op, _, err := st1.Create(ctx, newOp(), nil); return op, err }()).must(t)
	got := try(st2.Get(ctx, op.ID)).must(t)
	ch, stop, err := st1.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	got.Message = "from st2"
	if err := st2.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("an update through one handle did not wake a watch through the other")
	}
	if again := try(st1.Get(ctx, op.ID)).must(t); again.Message != "from st2" || again.Version != 2 {
		t.Fatalf("st1 sees %q v%d, want st2's update", again.Message, again.Version)
	}

	// An atomic submit through st2 and q1 is received through q2.
	op2 := newOp()
	if _, created, err := st2.Submit(ctx, op2, nil, q1, queue.Message{ID: op2.ID, Body: []byte("job")}); err != nil || !created {
		t.Fatalf("Submit = %v, %v", created, err)
	}
	if _, ok := st2.Driver().(opdriver.AtomicSubmitter); !ok {
		t.Fatal("the store is not an AtomicSubmitter")
	}
	ds := try(q2.Receive(ctx, 1, time.Minute)).must(t)
	if len(ds) != 1 || ds[0].Message().ID != op2.ID || string(ds[0].Message().Body) != "job" {
		t.Fatalf("q2 received %v", ds)
	}
	if err := ds[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}

	// A result put through rs1 is read, and its URL served, through rs2.
	if _, err := rs1.Put(ctx, "k", strings.NewReader("shared bytes"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	r := try(rs2.Open(ctx, "k")).must(t)
	if b, _ := io.ReadAll(r); string(b) != "shared bytes" {
		t.Fatalf("rs2 read %q", b)
	}
	signed := try(rs1.SignedURL(ctx, "k", time.Now().Add(time.Minute))).must(t)
	if code, body := fetch(t, rs2, signed); code != http.StatusOK || body != "shared bytes" {
		t.Fatalf("rs2 served rs1's URL with %d %q", code, body)
	}

	for _, c := range []io.Closer{st1, st2, q1, q2, rs1, rs2} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	expectReleased(t, name)
}

// Engines of different names, and private engines, share nothing.
func TestDifferentNamesDoNotShare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := "mem:"+uniqueName("a"), "mem:"+uniqueName("b")
	sa, sb := try(opstore.OpenStore(ctx, a)).must(t), try(opstore.OpenStore(ctx, b)).must(t)
	defer sa.Close()
	defer sb.Close()
	qa, qb := try(queue.OpenQueue(ctx, a)).must(t), try(queue.OpenQueue(ctx, b)).must(t)
	defer qa.Close()
	defer qb.Close()
	ra, rb := try(resultstore.OpenStore(ctx, a)).must(t), try(resultstore.OpenStore(ctx, b)).must(t)
	defer ra.Close()
	defer rb.Close()

	op := newOp()
	if _, _, err := sa.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Get(ctx, op.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Get on another engine = %v, want ErrNotFound", err)
	}
	if err := qa.Enqueue(ctx, queue.Message{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	if s := try(qb.Stats(ctx)).must(t); s != (queue.Stats{}) {
		t.Fatalf("Stats of another engine's queue = %+v, want empty", s)
	}
	if _, err := ra.Put(ctx, "k", strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Open(ctx, "k"); !errors.Is(err, resultstore.ErrNotFound) {
		t.Fatalf("Open on another engine = %v, want ErrNotFound", err)
	}
	// Each engine signs with its own keys.
	signed := try(ra.SignedURL(ctx, "k", time.Now().Add(time.Minute))).must(t)
	if code, _ := fetch(t, rb, signed); code != http.StatusForbidden {
		t.Fatalf("another engine served a URL it did not sign: %d", code)
	}
	// An atomic submit needs the queue of the store's own engine.
	op2 := newOp()
	if _, _, err := sa.Driver().(opdriver.AtomicSubmitter).SubmitAtomic(ctx, op2, nil, qb.Driver(), queue.Message{ID: op2.ID}); !errors.Is(err, opdriver.ErrNotSameEngine) {
		t.Fatalf("SubmitAtomic with another engine's queue = %v, want ErrNotSameEngine", err)
	}
	if _, err := sa.Get(ctx, op2.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("a refused SubmitAtomic stored the operation: %v", err)
	}

	// Private engines share nothing with each other nor with named ones.
	p1, p2 := New(), New()
	defer p1.Close()
	defer p2.Close()
	s1, s2 := p1.Store(), p2.Store()
	defer s1.Close()
	defer s2.Close()
	if _, _, err := s1.Create(ctx, op, nil); err != nil {
		t.Fatalf("Create on a private engine of an id another engine holds: %v", err)
	}
	if _, err := s2.Get(ctx, op.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Get on another private engine = %v, want ErrNotFound", err)
	}
}

// Closing the last handle drops the engine and its data; an Engine
// reference keeps it between handles; handles of a closed Engine are born
// closed.
func TestCloseReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("release")
	u := "mem:" + name
	st, q, rs := try(opstore.OpenStore(ctx, u)).must(t), try(queue.OpenQueue(ctx, u)).must(t), try(resultstore.OpenStore(ctx, u)).must(t)
	op := newOp()
	if _, _, err := st.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, queue.Message{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Put(ctx, "k", strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	st.Close()
	q.Close()
	if !isOpen(name) {
		t.Fatal("the engine went while a result store handle still held it")
	}
	rs.Close()
	expectReleased(t, name)
	// Closed handles refuse, and Close is idempotent.
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a closed store = %v, want ErrClosed", err)
	}
	if err := q.Enqueue(ctx, queue.Message{ID: "x"}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Enqueue on a closed queue = %v, want ErrClosed", err)
	}
	if _, err := rs.Open(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open on a closed result store = %v, want ErrClosed", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The name now opens a new, empty engine.
	st, q, rs = try(opstore.OpenStore(ctx, u)).must(t), try(queue.OpenQueue(ctx, u)).must(t), try(resultstore.OpenStore(ctx, u)).must(t)
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Get after the engine was released = %v, want ErrNotFound", err)
	}
	if s := try(q.Stats(ctx)).must(t); s != (queue.Stats{}) {
		t.Fatalf("Stats after the engine was released = %+v", s)
	}
	if _, err := rs.Open(ctx, "k"); !errors.Is(err, resultstore.ErrNotFound) {
		t.Fatalf("Open after the engine was released = %v, want ErrNotFound", err)
	}
	st.Close()
	q.Close()
	rs.Close()
	expectReleased(t, name)

	// An Engine reference keeps the data while handles come and go.
	e := Open(name)
	s := e.Store()
	if _, _, err := s.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st = try(opstore.OpenStore(ctx, u)).must(t)
	if _, err := st.Get(ctx, op.ID); err != nil {
		t.Fatalf("Get through a URL while an Engine held the data: %v", err)
	}
	e.Close()
	e.Close()
	if !isOpen(name) {
		t.Fatal("closing the Engine dropped the engine while a store handle held it")
	}
	if _, err := e.Store().Get(ctx, op.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a store of a closed Engine = %v, want ErrClosed", err)
	}
	if _, err := e.Queue(QueueOptions{}).Receive(ctx, 1, time.Second); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Receive on a queue of a closed Engine = %v, want ErrClosed", err)
	}
	r := try(e.Results(ResultsOptions{})).must(t)
	if _, err := r.Put(ctx, "k", strings.NewReader("x"), ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put on a result store of a closed Engine = %v, want ErrClosed", err)
	}
	st.Close()
	expectReleased(t, name)
}

// Close ends the Receives blocked on the handle, including those waiting
// on a timer, and leaves no goroutine behind. Not parallel: it counts the
// process's goroutines.
func TestReceiveUnblocksOnClose(t *testing.T) {
	ctx := context.Background()
	before := runtime.NumGoroutine()
	e := New()
	q := e.Queue(QueueOptions{})
	// A delayed message: the receivers wait on a timer as well as for
	// enqueues.
	if err := q.Enqueue(ctx, queue.Message{ID: "later", Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	done := make(chan error, n)
	for range n {
		go func() {
			_, err := q.Receive(context.Background(), 1, 0)
			done <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them block
	select {
	case err := <-done:
		t.Fatalf("Receive returned %v before Close", err)
	default:
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case err := <-done:
			if !errors.Is(err, queue.ErrClosed) {
				t.Fatalf("Receive blocked during Close = %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not unblock every Receive")
		}
	}
	e.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Closing a queue handle gives its leases back at once, as a restart of a
// durable engine drops them; its deliveries can no longer be settled.
func TestClosedHandleGivesLeasesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := New()
	defer e.Close()
	q1, q2 := e.Queue(QueueOptions{}), e.Queue(QueueOptions{})
	defer q2.Close()
	if err := q1.Enqueue(ctx, qdriver.Message{ID: "a", Body: []byte("A")}, qdriver.Message{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	ds := try(q1.Receive(ctx, 2, time.Hour)).must(t)
	if len(ds) != 2 {
		t.Fatalf("received %d, want 2", len(ds))
	}
	if err := ds[1].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	// q2 waits; q1's Close hands it the leased message.
	got := make(chan []qdriver.Delivery, 1)
	go func() {
		ds, _ := q2.Receive(ctx, 1, time.Hour)
		got <- ds
	}()
	time.Sleep(50 * time.Millisecond)
	q1.Close()
	select {
	case d2 := <-got:
		if len(d2) != 1 || d2[0].Message().ID != ds[0].Message().ID || d2[0].Attempt() != 2 {
			t.Fatalf("after q1 closed, q2 received %d deliveries (want %s, attempt 2)", len(d2), ds[0].Message().ID)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the lease of a closed handle was not given back")
	}
	if err := ds[0].Ack(ctx); err == nil {
		t.Fatal("Ack of a closed handle's delivery succeeded")
	}
	if s := try(q2.Stats(ctx)).must(t); s != (qdriver.Stats{InFlight: 1}) {
		t.Fatalf("Stats = %+v, want one in flight", s)
	}
}

// The queue options of a URL are the handle's: its default lease and its
// MaxDeliveries.
func TestQueueURLOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("qopts")
	q := try(queue.OpenQueue(ctx, "mem:"+name+"?defaultLease=150ms&maxDeliveries=2")).must(t)
	defer q.Close()
	if err := q.Enqueue(ctx, queue.Message{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	try(q.Receive(ctx, 1, 0)).must(t)
	ds := try(q.Receive(ctx, 1, 0)).must(t) // after the default lease expired
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Fatalf("redelivered after %v with a default lease of 150ms", el)
	}
	if ds[0].Attempt() != 2 {
		t.Fatalf("Attempt = %d, want 2", ds[0].Attempt())
	}
	// Its second lease expires too: the next Receive dead-letters it.
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if ds, err := q.Receive(rctx, 1, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive after MaxDeliveries = %d, %v; want nothing", len(ds), err)
	}
	if s := try(q.Stats(ctx)).must(t); s != (queue.Stats{Dead: 1}) {
		t.Fatalf("Stats = %+v, want one dead", s)
	}
}

func TestURLErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("urlerr")
	for _, q := range []string{
		"bogus=1",
		"maxDeliveries=-1",
		"maxDeliveries=x",
		"maxDeliveries=1&maxDeliveries=2",
		"defaultLease=0s",
		"defaultLease=soon",
		"prefix=nope",
		"prefix=/a//b/",
		"maxURLLifetime=-1h",
	} {
		u := "mem:" + name + "?" + q
		if s, err := opstore.OpenStore(ctx, u); err == nil {
			s.Close()
			t.Errorf("OpenStore(%q) succeeded", u)
		}
		if s, err := queue.OpenQueue(ctx, u); err == nil {
			s.Close()
			t.Errorf("OpenQueue(%q) succeeded", u)
		}
		if s, err := resultstore.OpenStore(ctx, u); err == nil {
			s.Close()
			t.Errorf("resultstore.OpenStore(%q) succeeded", u)
		}
	}
	expectReleased(t, name)

	// Valid options of every port are accepted by all three.
	u := "mem:" + name + "?maxDeliveries=3&defaultLease=1m&prefix=/r/&maxURLLifetime=1h"
	st, q, rs := try(opstore.OpenStore(ctx, u)).must(t), try(queue.OpenQueue(ctx, u)).must(t), try(resultstore.OpenStore(ctx, u)).must(t)
	defer st.Close()
	defer q.Close()
	defer rs.Close()
	if p, _ := rs.Handler(); p != "/r/" {
		t.Fatalf("Prefix = %q, want /r/", p)
	}
	if s, err := rs.SignedURL(ctx, "k", time.Now().Add(time.Minute)); err != nil || !strings.HasPrefix(s, "/r/k?") {
		t.Fatalf("SignedURL = %q, %v", s, err)
	}
	if _, err := rs.SignedURL(ctx, "k", time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("SignedURL beyond maxURLLifetime succeeded")
	}
	if _, err := New().Results(ResultsOptions{Prefix: "x"}); err == nil {
		t.Fatal("Results with a bad prefix succeeded")
	}
}
