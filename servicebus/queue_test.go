package servicebus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/arrhq/arr/queue/driver"
)

// open makes a Queue over a fake whose locks last lock.
func open(t *testing.T, lock time.Duration, maxDeliveries int) (*Queue, *fake) {
	t.Helper()
	f := newFake(lock)
	q := newQueue(Config{Namespace: "ns.servicebus.windows.net", Queue: "q", MaxDeliveries: maxDeliveries}, lock, f, f, f, nil)
	t.Cleanup(func() { _ = q.Close() })
	return q, f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func receiveOne(t *testing.T, q *Queue, lease time.Duration) driver.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	ds, err := q.Receive(ctx, 1, lease)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %d deliveries, %v", len(ds), err)
	}
	return ds[0]
}

func enqueue(t *testing.T, q *Queue, msgs ...driver.Message) {
	t.Helper()
	if err := q.Enqueue(ctxT(t), msgs...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestEnqueueMapsMessages(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	before := time.Now()
	enqueue(t, q,
		driver.Message{ID: "a", Body: []byte("first")},
		driver.Message{ID: "a", Body: []byte("second")}, // same ID in one call: the first wins
		driver.Message{ID: "later", Body: []byte("x"), Delay: time.Hour},
		driver.Message{ID: "later2", Delay: time.Hour},
		driver.Message{ID: "soon", Delay: time.Minute},
	)
	var sends, scheds []call
	for _, c := range f.log() {
		switch c.op {
		case "send":
			sends = append(sends, c)
		case "schedule":
			scheds = append(scheds, c)
		}
	}
	if len(sends) != 1 || sends[0].messageID != "a" || sends[0].id != "a" || sends[0].attempts != nil {
		t.Fatalf("sends = %+v, want one of a with MessageID a and no attempts", sends)
	}
	if len(scheds) != 3 {
		t.Fatalf("schedules = %+v, want 3", scheds)
	}
	for _, c := range scheds {
		want := time.Hour
		if c.id == "soon" {
			want = time.Minute
		}
		if c.messageID != c.id || c.at.Before(before.Add(want)) || c.at.After(time.Now().Add(want)) {
			t.Fatalf("scheduled %+v, want MessageID %s at now+%v", c, c.id, want)
		}
	}
	d := receiveOne(t, q, time.Minute)
	if m := d.Message(); m.ID != "a" || string(m.Body) != "first" || d.Attempt() != 1 {
		t.Fatalf("delivered %s %q attempt %d, want a \"first\" 1", m.ID, m.Body, d.Attempt())
	}

	for _, bad := range []driver.Message{{ID: ""}, {ID: strings.Repeat("x", MaxIDLen+1)}} {
		if err := q.Enqueue(ctxT(t), bad); err == nil {
			t.Fatalf("Enqueue of ID %q succeeded", bad.ID)
		}
	}
}

func TestAttemptAndIDFromProperties(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	for _, tc := range []struct {
		props    map[string]any
		count    uint32 // DeliveryCount before this receive
		id       string
		attempts int
	}{
		{map[string]any{propID: "op-1", propAttempts: int64(4)}, 0, "op-1", 5},
		{map[string]any{propID: "op-2", propAttempts: int32(2)}, 2, "op-2", 5},
		{map[string]any{propID: "op-3", propAttempts: "7"}, 0, "op-3", 8},
		{nil, 1, "plain", 2}, // a message another sender sent: its MessageID
	} {
		f.put(&azservicebus.ReceivedMessage{MessageID: tc.id + "#9", ApplicationProperties: tc.props, DeliveryCount: tc.count})
		if tc.props == nil {
			f.mu.Lock()
			f.ready[len(f.ready)-1].MessageID = tc.id
			f.mu.Unlock()
		}
		d := receiveOne(t, q, time.Minute)
		if d.Message().ID != tc.id || d.Attempt() != tc.attempts {
			t.Fatalf("delivered %s attempt %d, want %s attempt %d", d.Message().ID, d.Attempt(), tc.id, tc.attempts)
		}
	}
}

// Nak with a delay schedules the copy, then completes the original: never
// the other way round.
func TestNakDelaySchedulesThenCompletes(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a", Body: []byte("b")})
	d := receiveOne(t, q, time.Minute)
	seq := *d.(*delivery).m.SequenceNumber
	nakAt := time.Now()
	if err := d.Nak(ctxT(t), time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	ops := f.ops("a")
	if got := strings.Join(ops, ","); got != "send,receive,schedule,complete" {
		t.Fatalf("calls = %s, want send,receive,schedule,complete", got)
	}
	var sc call
	for _, c := range f.log() {
		if c.op == "schedule" {
			sc = c
		}
	}
	if want := fmt.Sprintf("a#%d", seq); sc.messageID != want {
		t.Fatalf("copy MessageID %q, want %q (not the ID: duplicate detection would drop it)", sc.messageID, want)
	}
	if sc.attempts != int64(1) {
		t.Fatalf("copy carries attempts %v, want 1", sc.attempts)
	}
	if sc.at.Before(nakAt.Add(time.Hour)) {
		t.Fatalf("copy scheduled at %v, before the Nak's delay", sc.at)
	}
	if err := d.Ack(ctxT(t)); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Ack after Nak = %v, want ErrLeaseLost", err)
	}

	// The copy, once due, is attempt 2 of a.
	f.put(&azservicebus.ReceivedMessage{MessageID: sc.messageID, Body: []byte("b"),
		ApplicationProperties: map[string]any{propID: "a", propAttempts: sc.attempts}})
	d2 := receiveOne(t, q, time.Minute)
	if d2.Message().ID != "a" || d2.Attempt() != 2 || string(d2.Message().Body) != "b" {
		t.Fatalf("copy delivered as %s attempt %d body %q, want a 2 \"b\"", d2.Message().ID, d2.Attempt(), d2.Message().Body)
	}
}

// A failed schedule completes nothing: the message stays leased, and a
// retried Nak does it all.
func TestNakDelayScheduleFailureLosesNothing(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	f.failNext("schedule", sbErr(azservicebus.CodeConnectionLost))
	err := d.Nak(ctxT(t), time.Hour)
	if err == nil || !IsRetryable(err) {
		t.Fatalf("Nak with the schedule failing = %v, want a retryable error", err)
	}
	if n := f.count("complete"); n != 0 {
		t.Fatalf("%d completes after a failed schedule", n)
	}
	if err := d.Nak(ctxT(t), time.Hour); err != nil {
		t.Fatalf("retried Nak: %v", err)
	}
	if got := strings.Join(f.ops("a"), ","); got != "send,receive,schedule,schedule,complete" {
		t.Fatalf("calls = %s", got)
	}
}

// A completion that fails after the schedule leaves the original locked:
// a duplicate, not a loss; the error says whether to retry.
func TestNakDelayCompleteFailure(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	f.failNext("complete", sbErr(azservicebus.CodeLockLost))
	if err := d.Nak(ctxT(t), time.Hour); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Nak whose completion lost the lock = %v, want ErrLeaseLost", err)
	}
	if got := strings.Join(f.ops("a"), ","); got != "send,receive,schedule,complete" {
		t.Fatalf("calls = %s", got)
	}
}

func TestNakWithoutDelayAbandons(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	if err := d.Nak(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	d2 := receiveOne(t, q, time.Minute)
	if d2.Attempt() != 2 {
		t.Fatalf("after Nak(0) attempt %d, want 2", d2.Attempt())
	}
	if got := strings.Join(f.ops("a"), ","); got != "send,receive,abandon,receive" {
		t.Fatalf("calls = %s", got)
	}
}

func TestAckLockLostIsLeaseLost(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	f.failNext("complete", sbErr(azservicebus.CodeLockLost))
	err := d.Ack(ctxT(t))
	if !errors.Is(err, driver.ErrLeaseLost) || IsRetryable(err) {
		t.Fatalf("Ack with the lock lost = %v (retryable %v), want ErrLeaseLost, not retryable", err, IsRetryable(err))
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != azservicebus.CodeLockLost || e.Op != "complete" || e.ID != "a" {
		t.Fatalf("error %#v, want *Error complete a locklost", err)
	}
	n := len(f.log())
	if err := d.Ack(ctxT(t)); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("second Ack = %v, want ErrLeaseLost", err)
	}
	if len(f.log()) != n {
		t.Fatalf("a refused Ack called Service Bus")
	}
}

// An Ack that fails for a connection keeps the lease, so that it can be
// retried.
func TestAckRetryable(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	f.failNext("complete", sbErr(azservicebus.CodeTimeout))
	if err := d.Ack(ctxT(t)); !IsRetryable(err) || errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Ack timing out = %v, want retryable", err)
	}
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatalf("retried Ack: %v", err)
	}
	if got := strings.Join(f.ops("a"), ","); got != "send,receive,complete,complete" {
		t.Fatalf("calls = %s", got)
	}
}

func TestTermDeadLettersWithReason(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	if err := d.Term(ctxT(t), "poison"); err != nil {
		t.Fatal(err)
	}
	l := f.log()
	if c := l[len(l)-1]; c.op != "dead-letter" || c.reason != "poison" || c.id != "a" {
		t.Fatalf("last call %+v, want dead-letter of a for poison", c)
	}
	if err := d.InProgress(ctxT(t), time.Minute); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("InProgress after Term = %v", err)
	}
}

// The keeper renews the lock before it ends, for as long as the lease
// lasts, and stops on Ack.
func TestKeeperRenewsUntilAck(t *testing.T) {
	const lock = 400 * time.Millisecond
	q, f := open(t, lock, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	waitFor(t, "three renewals", func() bool { return f.count("renew") >= 3 })
	for _, c := range f.log() {
		if c.op == "renew" && !c.when.Before(c.lockedTil) {
			t.Fatalf("renewed at %v, after the lock ended at %v", c.when, c.lockedTil)
		}
	}
	if n := f.count("abandon"); n != 0 {
		t.Fatalf("%d abandons during the lease", n)
	}
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n := f.count("renew")
	time.Sleep(3 * lock)
	if m := f.count("renew"); m != n {
		t.Fatalf("%d renewals after Ack", m-n)
	}
}

// A lease shorter than the lock ends with an abandon, no renewal; the
// expired delivery cannot settle.
func TestLeaseEndAbandons(t *testing.T) {
	const lease = 100 * time.Millisecond
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	start := time.Now()
	d := receiveOne(t, q, lease)
	waitFor(t, "the abandon at the lease end", func() bool { return f.count("abandon") == 1 })
	for _, c := range f.log() {
		if c.op == "abandon" && c.when.Sub(start) < lease {
			t.Fatalf("abandoned %v after the receive, before the %v lease ended", c.when.Sub(start), lease)
		}
	}
	if n := f.count("renew"); n != 0 {
		t.Fatalf("%d renewals of a lease shorter than the lock", n)
	}
	if err := d.Ack(ctxT(t)); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Ack after the lease ended = %v, want ErrLeaseLost", err)
	}
	if d2 := receiveOne(t, q, time.Minute); d2.Attempt() != 2 {
		t.Fatalf("redelivered with attempt %d, want 2", d2.Attempt())
	}
}

// A lease longer than the lock: renewed while it lasts, abandoned when it
// ends.
func TestLongLeaseRenewedThenAbandoned(t *testing.T) {
	const lock, lease = 100 * time.Millisecond, 500 * time.Millisecond
	q, f := open(t, lock, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	start := time.Now()
	receiveOne(t, q, lease)
	waitFor(t, "the abandon at the lease end", func() bool { return f.count("abandon") == 1 })
	if el := time.Since(start); el < lease {
		t.Fatalf("abandoned after %v, before the lease ended", el)
	}
	if n := f.count("renew"); n < 3 {
		t.Fatalf("%d renewals over a lease of %v with a %v lock, want at least 3", n, lease, lock)
	}
}

func TestInProgressRenewsAndExtends(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, 500*time.Millisecond)
	if err := d.InProgress(ctxT(t), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := f.count("renew"); n != 1 {
		t.Fatalf("InProgress made %d renewals, want 1", n)
	}
	time.Sleep(800 * time.Millisecond) // past the first lease
	if n := f.count("abandon"); n != 0 {
		t.Fatalf("abandoned after InProgress extended the lease")
	}
	f.failNext("renew", sbErr(azservicebus.CodeLockLost))
	if err := d.InProgress(ctxT(t), time.Minute); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("InProgress with the lock lost = %v, want ErrLeaseLost", err)
	}
	if err := d.Ack(ctxT(t)); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Ack after the lock was lost = %v, want ErrLeaseLost", err)
	}
}

// A renewal that fails for a connection is tried again well before the
// lock ends.
func TestKeeperRetriesFailedRenewal(t *testing.T) {
	const lock = 800 * time.Millisecond
	q, f := open(t, lock, 0)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	f.failNext("renew", sbErr(azservicebus.CodeConnectionLost))
	waitFor(t, "a renewal after the failed one", func() bool { return f.count("renew") >= 2 })
	var rs []call
	for _, c := range f.log() {
		if c.op == "renew" {
			rs = append(rs, c)
		}
	}
	if !rs[1].when.Before(rs[0].lockedTil) {
		t.Fatalf("retried the renewal at %v, after the lock ended at %v", rs[1].when, rs[0].lockedTil)
	}
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestMaxDeliveries(t *testing.T) {
	// On a Nak at the last allowed delivery: dead-lettered.
	q, f := open(t, time.Minute, 2)
	enqueue(t, q, driver.Message{ID: "a"})
	d := receiveOne(t, q, time.Minute)
	if err := d.Nak(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	d = receiveOne(t, q, time.Minute)
	if err := d.Nak(ctxT(t), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.ops("a"), ","); got != "send,receive,abandon,receive,dead-letter" {
		t.Fatalf("calls = %s", got)
	}

	// At the lease end of the last allowed delivery: dead-lettered.
	enqueue(t, q, driver.Message{ID: "b"})
	d = receiveOne(t, q, time.Minute)
	if err := d.Nak(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	receiveOne(t, q, 50*time.Millisecond)
	waitFor(t, "the dead letter at the lease end", func() bool { return len(f.ops("b")) == 5 })
	if got := strings.Join(f.ops("b"), ","); got != "send,receive,abandon,receive,dead-letter" {
		t.Fatalf("calls = %s", got)
	}

	// Received beyond the limit (its holders died): dead-lettered, not
	// delivered.
	f.put(&azservicebus.ReceivedMessage{MessageID: "c", ApplicationProperties: map[string]any{propID: "c"}, DeliveryCount: 2})
	enqueue(t, q, driver.Message{ID: "d"})
	if d := receiveOne(t, q, time.Minute); d.Message().ID != "d" {
		t.Fatalf("delivered %s, want d", d.Message().ID)
	}
	for _, c := range f.log() {
		if c.id == "c" && c.op == "dead-letter" && c.reason == reasonMaxDeliveries {
			return
		}
	}
	t.Fatalf("c, received a third time with MaxDeliveries 2, was not dead-lettered: %v", f.ops("c"))
}

func TestStatsMapping(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	enqueue(t, q, driver.Message{ID: "a"}, driver.Message{ID: "b"})
	ds, err := q.Receive(ctxT(t), 2, time.Minute)
	if err != nil || len(ds) != 2 {
		t.Fatal(len(ds), err)
	}
	f.mu.Lock()
	f.counts = counts{Active: 5, Scheduled: 2, DeadLetter: 1}
	f.mu.Unlock()
	s, err := q.Stats(ctxT(t))
	if want := (driver.Stats{Ready: 3, Delayed: 2, InFlight: 2, Dead: 1}); err != nil || s != want {
		t.Fatalf("Stats = %+v, %v; want %+v", s, err, want)
	}
	if err := ds[0].Ack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Counts that lag (the acked message still active) never make
	// InFlight exceed Active nor Ready negative.
	f.mu.Lock()
	f.counts = counts{Active: 0}
	f.mu.Unlock()
	if s, _ := q.Stats(ctxT(t)); s != (driver.Stats{}) {
		t.Fatalf("Stats = %+v with no active messages, want zero", s)
	}
	f.failNext("counts", sbErr(azservicebus.CodeUnauthorizedAccess))
	_, err = q.Stats(ctxT(t))
	var e *Error
	if !errors.As(err, &e) || e.Code != azservicebus.CodeUnauthorizedAccess || IsRetryable(err) {
		t.Fatalf("Stats refused = %v, want an unauthorized *Error, not retryable", err)
	}
}

// Receives take turns on the one receiver link, each under its own
// context.
func TestReceivesTakeTurns(t *testing.T) {
	q, f := open(t, time.Minute, 0)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
			defer cancel()
			ds, err := q.Receive(ctx, 1, time.Minute)
			if err == nil && len(ds) != 1 {
				err = fmt.Errorf("%d deliveries", len(ds))
			}
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 4 {
		enqueue(t, q, driver.Message{ID: fmt.Sprint("m", i)})
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	overlap := f.overlap
	f.mu.Unlock()
	if overlap {
		t.Fatal("two receive calls overlapped on the link")
	}
	// A Receive waiting for its turn ends with its context.
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	if _, err := q.Receive(ctx, 1, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty queue = %v, want DeadlineExceeded", err)
	}
}

func TestCloseGivesBackAndUnblocks(t *testing.T) {
	f := newFake(time.Minute)
	q := newQueue(Config{Queue: "q"}, time.Minute, f, f, f, nil)
	enqueue(t, q, driver.Message{ID: "held"})
	d := receiveOne(t, q, time.Minute)
	done := make(chan error, 1)
	go func() {
		_, err := q.Receive(context.Background(), 1, time.Minute)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, driver.ErrClosed) {
			t.Fatalf("blocked Receive after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}
	if got := strings.Join(f.ops("held"), ","); got != "send,receive,abandon" {
		t.Fatalf("calls = %s, want the held delivery abandoned", got)
	}
	if err := d.Ack(ctxT(t)); !errors.Is(err, driver.ErrLeaseLost) {
		t.Fatalf("Ack after Close = %v, want ErrLeaseLost", err)
	}
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "x"}); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Enqueue after Close = %v", err)
	}
	if _, err := q.Receive(ctxT(t), 1, 0); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Receive after Close = %v", err)
	}
	if n := f.count("close"); n != 2 {
		t.Fatalf("%d closes, want receiver and sender", n)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		leaseLost bool
		retryable bool
	}{
		{sbErr(azservicebus.CodeLockLost), true, false},
		{sbErr(azservicebus.CodeConnectionLost), false, true},
		{sbErr(azservicebus.CodeTimeout), false, true},
		{sbErr(azservicebus.CodeNotFound), false, false},
		{sbErr(azservicebus.CodeUnauthorizedAccess), false, false},
		{sbErr(azservicebus.CodeClosed), false, false},
		{errors.New("other"), false, false},
	} {
		err := classify("complete", "a", tc.err)
		if errors.Is(err, driver.ErrLeaseLost) != tc.leaseLost || IsRetryable(err) != tc.retryable {
			t.Errorf("classify(%v) = %v: lease lost %v, retryable %v; want %v, %v", tc.err, err, errors.Is(err, driver.ErrLeaseLost), IsRetryable(err), tc.leaseLost, tc.retryable)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) does not wrap it", tc.err)
		}
	}
	if err := classify("receive", "", context.Canceled); err != context.Canceled {
		t.Errorf("classify(context.Canceled) = %v", err)
	}
	if classify("x", "", nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}
