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

	arrengine "github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/enginetest"
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
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/urlsign/signtest"
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

// storeHarness opens stores by URL on one named engine, which it holds
// with Open so that the suite's close-and-reopen tests find their data:
// each OpenStore closes the URL's engine (every port of it) and opens it
// afresh. Its Close checks that the suite's handles released the engine.
type storeHarness struct {
	t    *testing.T
	name string
	keep *Engine
	r    enginetest.Reopener
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	return h.r.Store(ctx, "mem:"+h.name)
}

func (h *storeHarness) OpenAtomic(ctx context.Context) (arrengine.Atomic, qdriver.Queue, error) {
	return h.r.Atomic(ctx)
}

func (h *storeHarness) Close() {
	h.r.Close()
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
	r    enginetest.Reopener
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	return h.r.Queue(ctx, fmt.Sprintf("mem:%s?maxDeliveries=%d", h.name, maxDeliveries))
}

func (h *queueHarness) Close() {
	h.r.Close()
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
	var n atomic.Int64
	resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
		Open: func(t *testing.T) rdriver.Store {
			// Each subtest opens its own engine.Engine (a URL of its
			// own: the same URL would return the same Engine, whose
			// result store the first subtest to end would close) on the
			// one mem engine; maxDeliveries is the queue's and harmless.
			u := fmt.Sprintf("mem:%s?maxDeliveries=%d", name, n.Add(1))
			return enginetest.Results(t, u).Driver()
		},
	})
	expectReleased(t, name)
}

func TestSignerConformance(t *testing.T) {
	t.Parallel()
	name := uniqueName("signer") // one engine (and keyring) for every subtest
	var n atomic.Int64
	signtest.RunConformanceTests(t, signtest.Harness{
		Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
			// An engine.Engine of its own per subtest, on the one mem
			// engine, as for TestResultsConformance; a custom prefix.
			e := enginetest.Open(t, fmt.Sprintf("mem:%s?prefix=/r/x/&maxDeliveries=%d", name, n.Add(1)))
			ctx := context.Background()
			return try(e.Results(ctx)).must(t), try(e.Signer(ctx)).must(t)
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

// fetch serves a signed URL through a signer's handler.
func fetch(t *testing.T, sg *urlsign.Signer, signed string) (int, string) {
	t.Helper()
	prefix, h := sg.Handler()
	if h == nil || !strings.HasPrefix(signed, prefix) {
		t.Fatalf("handler %v for prefix %q, URL %q", h, prefix, signed)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, signed, nil))
	return rec.Code, rec.Body.String()
}

// ---- engine ----

// openEngine opens the engine.Engine of urlstr; the caller closes it.
func openEngine(t *testing.T, urlstr string) *arrengine.Engine {
	t.Helper()
	return try(arrengine.Open(context.Background(), urlstr)).must(t)
}

// ports returns the ports of e: operations store, queue, result store
// and URL signer.
func ports(t *testing.T, e *arrengine.Engine) (*opstore.Store, *queue.Queue, *resultstore.Store, *urlsign.Signer) {
	t.Helper()
	ctx := context.Background()
	return try(e.Store(ctx)).must(t), try(e.Queue(ctx)).must(t), try(e.Results(ctx)).must(t), try(e.Signer(ctx)).must(t)
}

// submit is the atomic submit of op and its message through e.
func submit(ctx context.Context, e *arrengine.Engine, op *operation.Operation, body string) (*operation.Operation, bool, error) {
	a := e.Atomic()
	if a == nil {
		return nil, false, errors.New("the engine has no one-step writes")
	}
	return a.SubmitAtomic(ctx, op, nil, queue.Message{ID: op.ID, Body: []byte(body)})
}

// Engines opened from different URLs naming the same mem engine (here
// with different, harmless query strings) share it: data, watches, atomic
// submits and URL signing keys. The same URL opens the same Engine.
func TestSameNameSharesData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("shared")
	u1, u2 := "mem:"+name, "mem:"+name+"?defaultLease=30s"
	e1, e2 := openEngine(t, u1), openEngine(t, u2)
	if e1 == e2 {
		t.Fatal("two URLs opened one engine.Engine")
	}
	e1again := openEngine(t, u1)
	if e1again != e1 {
		t.Fatal("the same URL opened a second engine.Engine")
	}
	if s1, s1again := try(e1.Store(ctx)).must(t), try(e1again.Store(ctx)).must(t); s1 != s1again {
		t.Fatal("the same Engine handed out two operations stores")
	}
	if err := e1again.Close(); err != nil {
		t.Fatal(err)
	}
	st1, q1, rs1, sg1 := ports(t, e1)
	st2, q2, rs2, sg2 := ports(t, e2)

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

	// An atomic submit through e2 is received through e1's queue and its
	// operation read through e1's store.
	if !e2.Caps().AtomicSubmit || e2.Atomic() == nil {
		t.Fatalf("the mem engine has no one-step writes: %+v", e2.Caps())
	}
	op2 := newOp()
	if _, created, err := submit(ctx, e2, op2, "job"); err != nil || !created {
		t.Fatalf("SubmitAtomic = %v, %v", created, err)
	}
	if _, err := st1.Get(ctx, op2.ID); err != nil {
		t.Fatalf("the submitted operation through e1: %v", err)
	}
	ds := try(q1.Receive(ctx, 1, time.Minute)).must(t)
	if len(ds) != 1 || ds[0].Message().ID != op2.ID || string(ds[0].Message().Body) != "job" {
		t.Fatalf("q1 received %v", ds)
	}
	if err := ds[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if s := try(q2.Stats(ctx)).must(t); s != (queue.Stats{}) {
		t.Fatalf("q2's Stats after q1 acked = %+v, want empty", s)
	}

	// A result put through rs1 is read through rs2, and its URL signed by
	// e1's signer is served by e2's.
	if _, err := rs1.Put(ctx, "k", strings.NewReader("shared bytes"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	r := try(rs2.Open(ctx, "k")).must(t)
	if b, _ := io.ReadAll(r); string(b) != "shared bytes" {
		t.Fatalf("rs2 read %q", b)
	}
	signed := try(sg1.SignedURL(ctx, "k", time.Now().Add(time.Minute))).must(t)
	if code, body := fetch(t, sg2, signed); code != http.StatusOK || body != "shared bytes" {
		t.Fatalf("sg2 served sg1's URL with %d %q", code, body)
	}

	for _, e := range []*arrengine.Engine{e1, e2} {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	expectReleased(t, name)
}

// Engines of different names, and private engines, share nothing.
func TestDifferentNamesDoNotShare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ea, eb := openEngine(t, "mem:"+uniqueName("a")), openEngine(t, "mem:"+uniqueName("b"))
	defer ea.Close()
	defer eb.Close()
	sa, qa, ra, sga := ports(t, ea)
	sb, qb, rb, sgb := ports(t, eb)

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
	signed := try(sga.SignedURL(ctx, "k", time.Now().Add(time.Minute))).must(t)
	if code, _ := fetch(t, sgb, signed); code != http.StatusForbidden {
		t.Fatalf("another engine served a URL it did not sign: %d", code)
	}
	// An atomic submit writes the operation and its message to its own
	// engine only.
	op2 := newOp()
	if _, created, err := submit(ctx, ea, op2, "job"); err != nil || !created {
		t.Fatalf("SubmitAtomic = %v, %v", created, err)
	}
	if _, err := sb.Get(ctx, op2.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("an atomic submit through a stored the operation in b: %v", err)
	}
	if s := try(qb.Stats(ctx)).must(t); s != (queue.Stats{}) {
		t.Fatalf("an atomic submit through a enqueued on b: %+v", s)
	}
	if s := try(qa.Stats(ctx)).must(t); s != (queue.Stats{Ready: 2}) {
		t.Fatalf("Stats of a's queue after an atomic submit = %+v, want 2 ready", s)
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

// Closing the last engine.Engine on a mem engine drops the mem engine and
// its data (an Engine's references are counted: the same URL opened twice
// needs two Closes); an Engine reference keeps it between engine.Engines;
// handles of a closed Engine are born closed.
func TestCloseReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("release")
	u, u2 := "mem:"+name, "mem:"+name+"?maxDeliveries=0"
	e := openEngine(t, u)
	st, q, _, _ := ports(t, e)
	e2 := openEngine(t, u2)
	rs := try(e2.Results(ctx)).must(t)
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
	// A second reference to e: its Close leaves e open.
	if again := openEngine(t, u); again != e {
		t.Fatal("the same URL opened a second engine.Engine")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, op.ID); err != nil {
		t.Fatalf("Get after one of two references to the engine.Engine was closed: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !isOpen(name) {
		t.Fatal("the mem engine went while another engine.Engine (with a result store) still held it")
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	expectReleased(t, name)
	// The ports of a closed Engine refuse, and Close is idempotent.
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a closed store = %v, want ErrClosed", err)
	}
	if err := q.Enqueue(ctx, queue.Message{ID: "x"}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Enqueue on a closed queue = %v, want ErrClosed", err)
	}
	if _, err := rs.Open(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open on a closed result store = %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The name now opens a new, empty engine.
	e = openEngine(t, u)
	st, q, rs, _ = ports(t, e)
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Get after the engine was released = %v, want ErrNotFound", err)
	}
	if s := try(q.Stats(ctx)).must(t); s != (queue.Stats{}) {
		t.Fatalf("Stats after the engine was released = %+v", s)
	}
	if _, err := rs.Open(ctx, "k"); !errors.Is(err, resultstore.ErrNotFound) {
		t.Fatalf("Open after the engine was released = %v, want ErrNotFound", err)
	}
	e.Close()
	expectReleased(t, name)

	// An Engine reference keeps the data while handles come and go.
	me := Open(name)
	s := me.Store()
	if _, _, err := s.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e = openEngine(t, u)
	st = try(e.Store(ctx)).must(t)
	if _, err := st.Get(ctx, op.ID); err != nil {
		t.Fatalf("Get through a URL while an Engine held the data: %v", err)
	}
	me.Close()
	me.Close()
	if !isOpen(name) {
		t.Fatal("closing the Engine dropped the engine while a URL's engine.Engine held it")
	}
	if _, err := me.Store().Get(ctx, op.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a store of a closed Engine = %v, want ErrClosed", err)
	}
	if _, err := me.Queue(QueueOptions{}).Receive(ctx, 1, time.Second); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Receive on a queue of a closed Engine = %v, want ErrClosed", err)
	}
	r := me.Results()
	if _, err := r.Put(ctx, "k", strings.NewReader("x"), ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put on a result store of a closed Engine = %v, want ErrClosed", err)
	}
	e.Close()
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

// The queue options of a URL are its queue's: its default lease and its
// MaxDeliveries.
func TestQueueURLOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName("qopts")
	q := enginetest.Queue(t, "mem:"+name+"?defaultLease=150ms&maxDeliveries=2")
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
		if e, err := arrengine.Open(ctx, u); err == nil {
			e.Close()
			t.Errorf("engine.Open(%q) succeeded", u)
		}
	}
	expectReleased(t, name)

	// Valid options of every port are accepted, and all three ports open.
	u := "mem:" + name + "?maxDeliveries=3&defaultLease=1m&prefix=/r/&maxURLLifetime=1h"
	_, _, _, sg := ports(t, enginetest.Open(t, u))
	if p, _ := sg.Handler(); p != "/r/" {
		t.Fatalf("Prefix = %q, want /r/", p)
	}
	if s, err := sg.SignedURL(ctx, "k", time.Now().Add(time.Minute)); err != nil || !strings.HasPrefix(s, "/r/k?") {
		t.Fatalf("SignedURL = %q, %v", s, err)
	}
	if _, err := sg.SignedURL(ctx, "k", time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("SignedURL beyond maxURLLifetime succeeded")
	}
	p := New()
	defer p.Close()
	rs := resultstore.New(p.Results())
	defer rs.Close()
	if sg, err := p.Signer(ctx, rs, ResultsOptions{Prefix: "x"}); err == nil {
		sg.Close()
		t.Fatal("Signer with a bad prefix succeeded")
	}
}

// TestOwnerIndexLeavesWithOperations checks that the owner index holds an
// entry exactly for each stored operation with an owner: DeleteExpired
// removes them, and an owner none of whose operations is left is gone.
func TestOwnerIndexLeavesWithOperations(t *testing.T) {
	ctx := context.Background()
	e := New()
	defer e.Close()
	s := opstore.New(e.Store())
	defer s.Close()
	t0 := time.Now()
	for i := range 20 {
		op := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending, Owner: fmt.Sprintf("owner-%d", i%4)}
		if i%2 == 0 {
			op.ExpiresAt = t0.Add(-time.Minute)
		}
		if _, _, err := s.Create(ctx, op, nil); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (owners, entries int) {
		e.eng.mu.Lock()
		defer e.eng.mu.Unlock()
		for _, ids := range e.eng.owned {
			owners++
			entries += len(ids)
		}
		return owners, entries
	}
	if o, n := count(); o != 4 || n != 20 {
		t.Fatalf("before DeleteExpired: %d owners, %d entries; want 4, 20", o, n)
	}
	if ops, err := s.DeleteExpired(ctx, t0, 100); err != nil || len(ops) != 10 {
		t.Fatalf("DeleteExpired = %d, %v; want 10", len(ops), err)
	}
	// owner-0 and owner-2 had only expiring operations (even i).
	if o, n := count(); o != 2 || n != 10 {
		t.Fatalf("after DeleteExpired: %d owners, %d entries; want 2, 10", o, n)
	}
}
