// Package queuetest is the conformance suite every queue driver must pass.
// A driver's test calls RunConformanceTests with a HarnessMaker that opens
// the driver over fresh data, the way gocloud.dev's drivertest packages work
// (the suite wraps the driver in the portable *queue.Queue and exercises the
// portable methods, so that the portable layer is tested too):
//
//	func TestQueueConformance(t *testing.T) {
//		queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
//			return newHarness(t.TempDir()), nil
//		})
//	}
//
// Every test makes its own harness, so tests never see each other's
// messages. Timing assertions are one-sided and generous (seconds), so that a
// loaded machine slows the suite down but does not fail it.
package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/queue/driver"
)

// Harness opens one driver over one set of data.
type Harness interface {
	// OpenQueue opens the queue over the harness's data, dead-lettering a
	// message after maxDeliveries deliveries (0: never). The suite closes
	// every queue it opens, and may then call OpenQueue again: the new queue
	// must hold every message the closed one held that was not acked or
	// dead-lettered, with leases dropped.
	OpenQueue(ctx context.Context, maxDeliveries int) (driver.Queue, error)

	// Close releases what the harness holds (the suite has closed every
	// queue by then).
	Close()
}

// HarnessMaker makes a Harness over fresh, empty data.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

const (
	// within bounds how long a message that should arrive may take.
	within = 2 * time.Second
	// quiet is how long the suite waits to see that nothing arrives.
	quiet = 300 * time.Millisecond
	// long is a lease that does not expire during a test.
	long = time.Minute
)

// RunConformanceTests runs the suite against the driver newHarness opens.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	tests := []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"EnqueueReceiveAck", testEnqueueReceiveAck},
		{"ReceiveBlocksUntilEnqueue", testReceiveBlocksUntilEnqueue},
		{"ReceiveContextDone", testReceiveContextDone},
		{"ReceiveMax", testReceiveMax},
		{"LeaseExpiry", testLeaseExpiry},
		{"InProgressExtendsLease", testInProgress},
		{"NakDelay", testNakDelay},
		{"Term", testTerm},
		{"MaxDeliveries", testMaxDeliveries},
		{"EnqueueDuplicateID", testEnqueueDuplicate},
		{"MessageDelay", testMessageDelay},
		{"Stats", testStats},
		{"ConcurrentReceivers", testConcurrentReceivers},
		{"Reopen", testReopen},
		{"LeaseLost", testLeaseLost},
		{"CloseUnblocksReceive", testClose},
		{"AckLazy", testAckLazy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			h, err := newHarness(ctx, t)
			if err != nil {
				t.Fatalf("making harness: %v", err)
			}
			f := &fixture{t: t, ctx: ctx, h: h}
			t.Cleanup(func() {
				f.close()
				h.Close()
			})
			f.open(0)
			tc.fn(t, f)
		})
	}
}

// fixture holds the queue a test works on: the driver the harness opened,
// in the portable type.
type fixture struct {
	t   *testing.T
	ctx context.Context
	h   Harness
	q   *queue.Queue
}

func (f *fixture) open(maxDeliveries int) {
	f.t.Helper()
	d, err := f.h.OpenQueue(f.ctx, maxDeliveries)
	if err != nil {
		f.t.Fatalf("OpenQueue(maxDeliveries %d): %v", maxDeliveries, err)
	}
	if d == nil {
		f.t.Fatalf("OpenQueue(maxDeliveries %d) returned a nil queue", maxDeliveries)
	}
	f.q = queue.New(d)
}

func (f *fixture) close() {
	f.t.Helper()
	if f.q != nil {
		if err := f.q.Close(); err != nil {
			f.t.Errorf("Close: %v", err)
		}
		f.q = nil
	}
}

// reopen closes the queue and opens it again over the same data.
func (f *fixture) reopen(maxDeliveries int) {
	f.t.Helper()
	f.close()
	f.open(maxDeliveries)
}

func msg(id string) queue.Message {
	return queue.Message{ID: id, Body: []byte("body of " + id)}
}

func (f *fixture) enqueue(msgs ...queue.Message) {
	f.t.Helper()
	if err := f.q.Enqueue(f.ctx, msgs...); err != nil {
		f.t.Fatalf("Enqueue: %v", err)
	}
}

// receive waits up to within for n deliveries (in as many Receives as it
// takes) and fails if fewer arrive.
func (f *fixture) receive(n int, lease time.Duration) []queue.Delivery {
	f.t.Helper()
	var out []queue.Delivery
	ctx, cancel := context.WithTimeout(f.ctx, within)
	defer cancel()
	for len(out) < n {
		ds, err := f.q.Receive(ctx, n-len(out), lease)
		if err != nil {
			f.t.Fatalf("Receive: got %d of %d deliveries: %v", len(out), n, err)
		}
		if len(ds) == 0 {
			f.t.Fatalf("Receive returned no deliveries and no error")
		}
		if len(ds) > n-len(out) {
			f.t.Fatalf("Receive(max %d) returned %d deliveries", n-len(out), len(ds))
		}
		out = append(out, ds...)
	}
	return out
}

func (f *fixture) receiveOne(lease time.Duration) queue.Delivery {
	f.t.Helper()
	return f.receive(1, lease)[0]
}

// expectNone fails if anything is delivered within d.
func (f *fixture) expectNone(what string, d time.Duration) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, d)
	defer cancel()
	ds, err := f.q.Receive(ctx, 10, long)
	if len(ds) > 0 {
		f.t.Fatalf("%s: %d unexpected deliveries (first %s, attempt %d)", what, len(ds), ds[0].Message().ID, ds[0].Attempt())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("%s: Receive = %v, want context.DeadlineExceeded", what, err)
	}
}

func (f *fixture) ack(d queue.Delivery) {
	f.t.Helper()
	if err := d.Ack(f.ctx); err != nil {
		f.t.Fatalf("Ack(%s): %v", d.Message().ID, err)
	}
}

func (f *fixture) stats() queue.Stats {
	f.t.Helper()
	s, err := f.q.Stats(f.ctx)
	if err != nil {
		f.t.Fatalf("Stats: %v", err)
	}
	return s
}

func (f *fixture) expectStats(what string, want queue.Stats) {
	f.t.Helper()
	if got := f.stats(); got != want {
		f.t.Fatalf("%s: Stats = %+v, want %+v", what, got, want)
	}
}

func checkDelivery(t *testing.T, d queue.Delivery, id string, attempt int) {
	t.Helper()
	m := d.Message()
	if m.ID != id {
		t.Fatalf("delivered %s, want %s", m.ID, id)
	}
	if want := "body of " + id; string(m.Body) != want {
		t.Fatalf("delivered %s with body %q, want %q", id, m.Body, want)
	}
	if d.Attempt() != attempt {
		t.Fatalf("delivered %s with Attempt %d, want %d", id, d.Attempt(), attempt)
	}
}

func ids(ds []queue.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Message().ID
	}
	sort.Strings(out)
	return out
}

// ---- tests ----

func testEnqueueReceiveAck(t *testing.T, f *fixture) {
	body := make([]byte, 512)
	for i := range body {
		body[i] = byte(i)
	}
	f.enqueue(msg("a"), msg("b"))
	f.enqueue(queue.Message{ID: "c", Body: body})
	ds := f.receive(3, long)
	if got := ids(ds); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("received %v, want [a b c]", got)
	}
	for _, d := range ds {
		if d.Message().ID == "c" {
			if !bytes.Equal(d.Message().Body, body) || d.Attempt() != 1 {
				t.Fatalf("binary message: body equal %v, attempt %d", bytes.Equal(d.Message().Body, body), d.Attempt())
			}
			continue
		}
		checkDelivery(t, d, d.Message().ID, 1)
	}
	f.expectStats("all leased", queue.Stats{InFlight: 3})
	for _, d := range ds {
		f.ack(d)
	}
	f.expectStats("all acked", queue.Stats{})
	f.expectNone("after ack", quiet)
	f.reopen(0)
	f.expectNone("after ack and reopen", quiet)
	f.expectStats("after ack and reopen", queue.Stats{})
}

func testReceiveBlocksUntilEnqueue(t *testing.T, f *fixture) {
	type result struct {
		ds  []queue.Delivery
		err error
		at  time.Time
	}
	for i := range 3 {
		res := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
			defer cancel()
			ds, err := f.q.Receive(ctx, 1, long)
			res <- result{ds, err, time.Now()}
		}()
		select {
		case r := <-res:
			t.Fatalf("Receive on an empty queue returned %d deliveries, %v", len(r.ds), r.err)
		case <-time.After(quiet):
		}
		id := fmt.Sprintf("wake-%d", i)
		enqueued := time.Now()
		f.enqueue(msg(id))
		select {
		case r := <-res:
			if r.err != nil || len(r.ds) != 1 {
				t.Fatalf("woken Receive = %d deliveries, %v", len(r.ds), r.err)
			}
			checkDelivery(t, r.ds[0], id, 1)
			if lag := r.at.Sub(enqueued); lag > within {
				t.Fatalf("Receive woke %v after the Enqueue", lag)
			}
			f.ack(r.ds[0])
		case <-time.After(within):
			t.Fatalf("blocked Receive not woken within %v of an Enqueue", within)
		}
	}
}

func testReceiveContextDone(t *testing.T, f *fixture) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(f.ctx, 200*time.Millisecond)
	defer cancel()
	ds, err := f.q.Receive(ctx, 1, long)
	if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty queue until a deadline = %d, %v; want context.DeadlineExceeded", len(ds), err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("Receive returned after %v, before its deadline", el)
	}

	ctx, cancel = context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() {
		_, err := f.q.Receive(ctx, 1, long)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Receive after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(within):
		t.Fatalf("Receive did not return within %v of its context being canceled", within)
	}

	// An already-canceled context delivers nothing, even with messages ready.
	f.enqueue(msg("a"))
	ds, err = f.q.Receive(ctx, 1, long)
	if len(ds) != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a canceled context = %d, %v; want context.Canceled", len(ds), err)
	}
	checkDelivery(t, f.receiveOne(long), "a", 1)
}

func testReceiveMax(t *testing.T, f *fixture) {
	for i := range 10 {
		f.enqueue(msg(fmt.Sprintf("m%02d", i)))
	}
	seen := map[string]bool{}
	for len(seen) < 10 {
		ctx, cancel := context.WithTimeout(f.ctx, within)
		ds, err := f.q.Receive(ctx, 3, long)
		cancel()
		if err != nil {
			t.Fatalf("Receive: %v (after %d messages)", err, len(seen))
		}
		if len(ds) == 0 || len(ds) > 3 {
			t.Fatalf("Receive(max 3) returned %d deliveries", len(ds))
		}
		for _, d := range ds {
			if seen[d.Message().ID] {
				t.Fatalf("%s delivered twice while leased", d.Message().ID)
			}
			seen[d.Message().ID] = true
		}
	}
	f.expectNone("all leased", quiet)
}

func testLeaseExpiry(t *testing.T, f *fixture) {
	const lease = 300 * time.Millisecond
	f.enqueue(msg("a"), msg("b"))
	start := time.Now()
	first := f.receive(2, lease)
	var a1 queue.Delivery
	for _, d := range first {
		if d.Message().ID == "a" {
			a1 = d
		} else if err := d.InProgress(f.ctx, long); err != nil { // keep b leased
			t.Fatalf("InProgress(b): %v", err)
		}
	}
	a2 := f.receiveOne(long)
	if el := time.Since(start); el < lease {
		t.Fatalf("redelivered after %v, before the %v lease ended", el, lease)
	}
	checkDelivery(t, a2, "a", 2)
	if err := a1.Ack(f.ctx); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("Ack of the expired delivery after redelivery = %v, want ErrLeaseLost", err)
	}
	f.ack(a2)
	f.expectNone("after acking the redelivery", quiet)
	f.expectStats("b still leased", queue.Stats{InFlight: 1})
}

func testInProgress(t *testing.T, f *fixture) {
	const lease = 600 * time.Millisecond
	f.enqueue(msg("a"))
	d := f.receiveOne(lease)
	stop := make(chan struct{})
	hb := make(chan error, 1)
	go func() {
		tk := time.NewTicker(lease / 4)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				hb <- nil
				return
			case <-tk.C:
				if err := d.InProgress(f.ctx, lease); err != nil {
					hb <- err
					return
				}
			}
		}
	}()
	// Three leases' worth of heartbeating: never redelivered.
	f.expectNone("while heartbeating", 3*lease)
	f.expectStats("heartbeating", queue.Stats{InFlight: 1})
	close(stop)
	if err := <-hb; err != nil {
		t.Fatalf("InProgress: %v", err)
	}
	// Once the heartbeats stop, the lease ends and it comes back.
	d2 := f.receiveOne(long)
	checkDelivery(t, d2, "a", 2)
	if err := d.InProgress(f.ctx, lease); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("InProgress after redelivery = %v, want ErrLeaseLost", err)
	}
	f.ack(d2)
}

func testNakDelay(t *testing.T, f *fixture) {
	const delay = 500 * time.Millisecond
	f.enqueue(msg("a"))
	d := f.receiveOne(long)
	nakAt := time.Now()
	if err := d.Nak(f.ctx, delay); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	d2 := f.receiveOne(long)
	if el := time.Since(nakAt); el < delay {
		t.Fatalf("delivered %v after Nak(%v)", el, delay)
	}
	checkDelivery(t, d2, "a", 2)
	if err := d.Ack(f.ctx); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("Ack of a naked delivery = %v, want ErrLeaseLost", err)
	}

	// Nak(0): back at once.
	if err := d2.Nak(f.ctx, 0); err != nil {
		t.Fatalf("Nak(0): %v", err)
	}
	d3 := f.receiveOne(long)
	checkDelivery(t, d3, "a", 3)

	// A Nak with a long delay holds the message back for that long.
	if err := d3.Nak(f.ctx, time.Hour); err != nil {
		t.Fatalf("Nak(1h): %v", err)
	}
	f.expectNone("naked for an hour", quiet)
	f.expectStats("naked for an hour", queue.Stats{Delayed: 1})
}

func testTerm(t *testing.T, f *fixture) {
	f.enqueue(msg("a"), msg("b"))
	ds := f.receive(2, long)
	for _, d := range ds {
		if d.Message().ID == "a" {
			if err := d.Term(f.ctx, "poison"); err != nil {
				t.Fatalf("Term: %v", err)
			}
			if err := d.Ack(f.ctx); !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("Ack after Term = %v, want ErrLeaseLost", err)
			}
		} else {
			f.ack(d)
		}
	}
	f.expectStats("after Term", queue.Stats{Dead: 1})
	f.expectNone("after Term", quiet)
	f.reopen(0)
	f.expectStats("after Term and reopen", queue.Stats{Dead: 1})
	f.expectNone("after Term and reopen", quiet)
}

func testMaxDeliveries(t *testing.T, f *fixture) {
	f.reopen(2)
	// By Nak: the second Nak leaves it dead.
	f.enqueue(msg("naked"))
	d := f.receiveOne(long)
	checkDelivery(t, d, "naked", 1)
	if err := d.Nak(f.ctx, 0); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	d = f.receiveOne(long)
	checkDelivery(t, d, "naked", 2)
	if err := d.Nak(f.ctx, 0); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	f.expectNone("after MaxDeliveries naks", quiet)
	f.expectStats("after MaxDeliveries naks", queue.Stats{Dead: 1})

	// By lease expiry: two expired leases leave it dead.
	const lease = 200 * time.Millisecond
	f.enqueue(msg("expired"))
	checkDelivery(t, f.receiveOne(lease), "expired", 1)
	checkDelivery(t, f.receiveOne(lease), "expired", 2)
	f.expectNone("after MaxDeliveries expired leases", lease+quiet)
	f.expectStats("after MaxDeliveries expired leases", queue.Stats{Dead: 2})

	// Dead letters stay dead across a reopen.
	f.reopen(2)
	f.expectNone("dead letters after reopen", quiet)
	f.expectStats("dead letters after reopen", queue.Stats{Dead: 2})

	// A message acked on its last allowed delivery is simply gone.
	f.enqueue(msg("ok"))
	d = f.receiveOne(long)
	if err := d.Nak(f.ctx, 0); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	d = f.receiveOne(long)
	checkDelivery(t, d, "ok", 2)
	f.ack(d)
	f.expectStats("after acking on the last delivery", queue.Stats{Dead: 2})
}

func testEnqueueDuplicate(t *testing.T, f *fixture) {
	// Twice in one call, and again in another call while queued.
	f.enqueue(msg("a"), queue.Message{ID: "a", Body: []byte("second body")})
	f.enqueue(queue.Message{ID: "a", Body: []byte("third body")})
	d := f.receiveOne(long)
	checkDelivery(t, d, "a", 1)
	f.expectNone("duplicate of a queued ID", quiet)

	// Again while it is leased: still a no-op, so after the Ack it is gone.
	f.enqueue(msg("a"))
	f.ack(d)
	f.expectNone("duplicate enqueued while leased, after Ack", quiet)
	f.expectStats("after Ack", queue.Stats{})

	// Once acked, the ID may be enqueued afresh.
	f.enqueue(msg("a"))
	d = f.receiveOne(long)
	checkDelivery(t, d, "a", 1)

	// A duplicate of a naked (delayed) message does not bring it forward.
	if err := d.Nak(f.ctx, time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	f.enqueue(msg("a"))
	f.expectNone("duplicate of a delayed message", quiet)
	f.expectStats("one delayed message", queue.Stats{Delayed: 1})
}

func testMessageDelay(t *testing.T, f *fixture) {
	const delay = 500 * time.Millisecond
	start := time.Now()
	f.enqueue(
		queue.Message{ID: "later", Body: []byte("body of later"), Delay: delay},
		msg("now"),
		queue.Message{ID: "much-later", Body: []byte("body of much-later"), Delay: time.Hour},
	)
	checkDelivery(t, f.receiveOne(long), "now", 1)
	d := f.receiveOne(long)
	if el := time.Since(start); el < delay {
		t.Fatalf("delayed message delivered after %v, before its %v delay", el, delay)
	}
	checkDelivery(t, d, "later", 1)
	f.expectNone("a message delayed by an hour", quiet)
	f.expectStats("two leased, one delayed", queue.Stats{Delayed: 1, InFlight: 2})
}

func testStats(t *testing.T, f *fixture) {
	f.expectStats("empty", queue.Stats{})
	for i := range 3 {
		f.enqueue(msg(fmt.Sprintf("ready-%d", i)))
	}
	f.enqueue(queue.Message{ID: "delayed-0", Delay: time.Hour}, queue.Message{ID: "delayed-1", Delay: time.Hour})
	f.expectStats("3 ready, 2 delayed", queue.Stats{Ready: 3, Delayed: 2})
	ds := f.receive(2, long)
	for _, d := range ds {
		if d.Message().ID[:5] != "ready" {
			t.Fatalf("received delayed message %s", d.Message().ID)
		}
	}
	f.expectStats("2 leased", queue.Stats{Ready: 1, Delayed: 2, InFlight: 2})
	if err := ds[0].Term(f.ctx, "test"); err != nil {
		t.Fatalf("Term: %v", err)
	}
	f.expectStats("1 termed", queue.Stats{Ready: 1, Delayed: 2, InFlight: 1, Dead: 1})
	if err := ds[1].Nak(f.ctx, time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	f.expectStats("1 naked", queue.Stats{Ready: 1, Delayed: 3, Dead: 1})
	f.reopen(0)
	f.expectStats("after reopen", queue.Stats{Ready: 1, Delayed: 3, Dead: 1})
}

func testConcurrentReceivers(t *testing.T, f *fixture) {
	const n, receivers = 2000, 8
	for i := 0; i < n; i += 100 {
		batch := make([]queue.Message, 0, 100)
		for j := i; j < i+100; j++ {
			batch = append(batch, msg(fmt.Sprintf("m%05d", j)))
		}
		f.enqueue(batch...)
	}
	var (
		mu        sync.Mutex
		delivered = map[string]int{}
		acked     atomic.Int64
		wg        sync.WaitGroup
		errs      = make(chan error, receivers)
	)
	ctx, cancel := context.WithTimeout(f.ctx, 60*time.Second)
	defer cancel()
	for range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for acked.Load() < n {
				rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				ds, err := f.q.Receive(rctx, 16, long)
				rcancel()
				if err != nil {
					if ctx.Err() != nil {
						errs <- fmt.Errorf("gave up with %d of %d acked: %w", acked.Load(), n, ctx.Err())
						return
					}
					if errors.Is(err, context.DeadlineExceeded) {
						continue
					}
					errs <- err
					return
				}
				for _, d := range ds {
					m := d.Message()
					mu.Lock()
					delivered[m.ID]++
					mu.Unlock()
					if string(m.Body) != "body of "+m.ID {
						errs <- fmt.Errorf("%s delivered with body %q", m.ID, m.Body)
						return
					}
					if err := d.Ack(ctx); err != nil {
						errs <- fmt.Errorf("Ack(%s): %w", m.ID, err)
						return
					}
					acked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(delivered) != n {
		t.Fatalf("%d distinct messages delivered, want %d", len(delivered), n)
	}
	for id, c := range delivered {
		if c != 1 {
			t.Fatalf("%s delivered %d times while its lease held", id, c)
		}
	}
	f.expectStats("all acked", queue.Stats{})
	f.expectNone("all acked", quiet)
}

func testReopen(t *testing.T, f *fixture) {
	f.enqueue(msg("acked"), msg("leased"), msg("naked"), msg("waiting"))
	f.enqueue(queue.Message{ID: "delayed", Body: []byte("body of delayed"), Delay: time.Hour})
	f.enqueue(msg("backoff"))
	ds := f.receive(5, long)
	byID := map[string]queue.Delivery{}
	for _, d := range ds {
		byID[d.Message().ID] = d
	}
	var missing []string
	for _, id := range []string{"acked", "leased", "naked", "waiting", "backoff"} {
		if byID[id] == nil {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("received %v; missing %v", ids(ds), missing)
	}
	f.ack(byID["acked"])
	if err := byID["naked"].Nak(f.ctx, 0); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	if err := byID["backoff"].Nak(f.ctx, time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	// "leased" and "waiting" stay leased (never acked) across the reopen.
	f.reopen(0)

	got := f.receive(3, long)
	if fmt.Sprint(ids(got)) != "[leased naked waiting]" {
		t.Fatalf("after reopen received %v, want [leased naked waiting]", ids(got))
	}
	for _, d := range got {
		id := d.Message().ID
		if string(d.Message().Body) != "body of "+id {
			t.Fatalf("%s after reopen has body %q", id, d.Message().Body)
		}
		switch id {
		case "naked":
			// The Nak's attempt count is durable.
			if d.Attempt() < 2 {
				t.Fatalf("naked message after reopen has Attempt %d, want at least 2", d.Attempt())
			}
		default:
			if d.Attempt() < 1 {
				t.Fatalf("%s after reopen has Attempt %d", id, d.Attempt())
			}
		}
	}
	f.expectNone("delayed and backed-off messages after reopen", quiet)
	f.expectStats("after reopen", queue.Stats{Delayed: 2, InFlight: 3})
	// Deliveries made before the reopen are void.
	if err := byID["leased"].Ack(f.ctx); err == nil {
		t.Fatalf("Ack of a delivery from before the reopen succeeded")
	}
	for _, d := range got {
		f.ack(d)
	}
	f.expectStats("after acking", queue.Stats{Delayed: 2})
}

func testLeaseLost(t *testing.T, f *fixture) {
	f.enqueue(msg("a"), msg("b"), msg("c"))
	ds := f.receive(3, long)
	byID := map[string]queue.Delivery{}
	for _, d := range ds {
		byID[d.Message().ID] = d
	}
	a, b, c := byID["a"], byID["b"], byID["c"]
	f.ack(a)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, queue.ErrLeaseLost) {
			t.Fatalf("%s = %v, want ErrLeaseLost", what, err)
		}
	}
	check("second Ack", a.Ack(f.ctx))
	check("Nak after Ack", a.Nak(f.ctx, 0))
	check("InProgress after Ack", a.InProgress(f.ctx, long))
	check("Term after Ack", a.Term(f.ctx, "late"))

	if err := b.Nak(f.ctx, time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	check("Ack after Nak", b.Ack(f.ctx))
	check("second Nak", b.Nak(f.ctx, 0))
	check("Term after Nak", b.Term(f.ctx, "late"))

	if err := c.Term(f.ctx, "done"); err != nil {
		t.Fatalf("Term: %v", err)
	}
	check("Nak after Term", c.Nak(f.ctx, 0))
	check("InProgress after Term", c.InProgress(f.ctx, long))
	// None of the refused calls changed anything.
	f.expectStats("after refused calls", queue.Stats{Delayed: 1, Dead: 1})
	f.expectNone("after refused calls", quiet)
}

func testClose(t *testing.T, f *fixture) {
	q := f.q
	f.q = nil
	done := make(chan error, 1)
	go func() {
		_, err := q.Receive(context.Background(), 1, long)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, queue.ErrClosed) {
			t.Fatalf("Receive blocked during Close = %v, want ErrClosed", err)
		}
	case <-time.After(within):
		t.Fatalf("Close did not unblock Receive within %v", within)
	}
	if _, err := q.Receive(f.ctx, 1, long); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Receive after Close = %v, want ErrClosed", err)
	}
	if err := q.Enqueue(f.ctx, msg("x")); err == nil {
		t.Fatalf("Enqueue after Close succeeded")
	}
	// Nothing enqueued after Close shows up.
	f.open(0)
	f.expectStats("after Close", queue.Stats{})
}

// testAckLazy checks the portable queue.AckLazy, which uses
// driver.LazyAcker when the driver's deliveries have it and Ack when they
// do not: the message is gone at once, and stays gone after a synced write
// and a clean reopen.
func testAckLazy(t *testing.T, f *fixture) {
	f.enqueue(msg("lazy-1"), msg("lazy-2"))
	d := f.receiveOne(time.Minute)
	kept := "lazy-2" // the message not acked
	if d.Message().ID == kept {
		kept = "lazy-1"
	}
	if _, ok := d.(driver.LazyAcker); !ok {
		t.Log("the driver's deliveries have no lazy ack (optional): checking queue.AckLazy's fallback to Ack")
	}
	if err := queue.AckLazy(f.ctx, d); err != nil {
		t.Fatalf("AckLazy: %v", err)
	}
	f.expectStats("after AckLazy", queue.Stats{Ready: 1})
	if err := queue.AckLazy(f.ctx, d); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("second AckLazy = %v, want ErrLeaseLost", err)
	}
	f.enqueue(msg("lazy-3")) // a synced write
	f.reopen(0)
	f.expectStats("after reopen", queue.Stats{Ready: 2})
	got := ids(f.receive(2, time.Minute))
	sort.Strings(got)
	if want := kept + ",lazy-3"; strings.Join(got, ",") != want {
		t.Fatalf("after reopen delivered %v, want %s and lazy-3 (%s was acked)", got, kept, d.Message().ID)
	}
}
