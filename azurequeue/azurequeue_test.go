package azurequeue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/queue/queuetest"
)

// env is one fresh queue, poison queue and index table on Azurite, deleted
// when the test ends.
type env struct {
	srv  *azuritetest.Server
	cfg  Config
	opts *Options
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := azuritetest.Start(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	co := srv.ClientOptions()
	e := &env{
		srv: srv,
		cfg: Config{
			Queue: "arrtest-" + hex.EncodeToString(b), QueueEndpoint: srv.QueueURL(), TableEndpoint: srv.TableURL(),
			Table: "arrtest" + hex.EncodeToString(b), Lease: 30 * time.Second,
		},
		opts: &Options{Credential: azuritetest.Credential(), ClientOptions: &co},
	}
	t.Cleanup(e.drop)
	return e
}

// drop deletes the queues and the table.
func (e *env) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{e.cfg.Queue, e.cfg.Queue + poisonSuffix} {
		if c, err := azqueue.NewQueueClient(e.srv.QueueURL()+"/"+q, e.opts.Credential, &azqueue.ClientOptions{ClientOptions: *e.opts.ClientOptions}); err == nil {
			_, _ = c.Delete(ctx, nil)
		}
	}
	if c, err := aztables.NewClient(e.srv.TableURL()+"/"+e.cfg.Table, e.opts.Credential, &aztables.ClientOptions{ClientOptions: *e.opts.ClientOptions}); err == nil {
		_, _ = c.Delete(ctx, nil)
	}
}

func (e *env) open(t testing.TB, maxDeliveries int) *Queue {
	t.Helper()
	cfg := e.cfg
	cfg.MaxDeliveries = maxDeliveries
	q, err := Open(context.Background(), cfg, e.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

type harness struct{ e *env }

func (h harness) OpenQueue(ctx context.Context, maxDeliveries int) (driver.Queue, error) {
	cfg := h.e.cfg
	cfg.MaxDeliveries = maxDeliveries
	return Open(ctx, cfg, h.e.opts)
}

func (h harness) Close() { h.e.drop() }

func TestConformance(t *testing.T) {
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		return harness{newEnv(t)}, nil
	})
}

// ---- helpers of the tests below ----

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func expectStats(t testing.TB, q *Queue, what string, want driver.Stats) {
	t.Helper()
	got, err := q.Stats(ctxT(t))
	if err != nil {
		t.Fatalf("%s: Stats: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s: Stats = %+v, want %+v", what, got, want)
	}
}

// receive waits up to d for one delivery.
func receive(t testing.TB, q *Queue, d time.Duration) driver.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %d deliveries, %v; want 1", len(ds), err)
	}
	return ds[0]
}

// expectNone fails if Receive delivers anything within d.
func expectNone(t testing.TB, q *Queue, what string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ds, err := q.Receive(ctx, 10, time.Minute)
	if len(ds) > 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: Receive = %d deliveries, %v; want none", what, len(ds), err)
	}
}

// visible counts the messages of a queue that Azure shows now.
func visible(t testing.TB, c *azqueue.QueueClient) int {
	t.Helper()
	r, err := c.PeekMessages(ctxT(t), &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr(int32(32))})
	if err != nil {
		t.Fatalf("PeekMessages: %v", err)
	}
	return len(r.Messages)
}

// rawEnqueue writes a message to the queue as Enqueue's first write does,
// without indexing it: what a crash between Enqueue's writes leaves.
func rawEnqueue(t testing.TB, q *Queue, f frame, vis time.Duration) string {
	t.Helper()
	r, err := q.main.EnqueueMessage(ctxT(t), f.encode(), &azqueue.EnqueueMessageOptions{
		TimeToLive: to.Ptr(int32(-1)), VisibilityTimeout: to.Ptr(visibility(vis)),
	})
	if err != nil {
		t.Fatalf("EnqueueMessage: %v", err)
	}
	return *r.Messages[0].MessageID
}

func checkDelivery(t testing.TB, d driver.Delivery, id, body string, attempt int) {
	t.Helper()
	if m := d.Message(); m.ID != id || string(m.Body) != body || d.Attempt() != attempt {
		t.Fatalf("delivered %q (body %q) attempt %d; want %q (body %q) attempt %d", m.ID, m.Body, d.Attempt(), id, body, attempt)
	}
}

// ---- crashes between the two writes ----

// A crash between Enqueue's queue write and its index write leaves an
// unindexed message: the next Receive indexes and delivers it, and from
// then on it is counted and acked like any other.
func TestCrashAfterEnqueueQueueWrite(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	rawEnqueue(t, q, frame{id: "orphan", body: []byte("b")}, 0)
	expectStats(t, q, "unindexed", driver.Stats{}) // the index is the count
	d := receive(t, q, 5*time.Second)
	checkDelivery(t, d, "orphan", "b", 1)
	expectStats(t, q, "indexed by Receive", driver.Stats{InFlight: 1})
	// Indexed, a duplicate enqueue is a no-op again.
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "orphan", Body: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	expectStats(t, q, "acked", driver.Stats{})
	expectNone(t, q, "acked", 300*time.Millisecond)
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

// The caller retries an Enqueue that failed after its queue write: the ID
// is delivered once, the leftover is dropped by the receiver that takes it.
func TestCrashAfterEnqueueQueueWriteThenRetry(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	rawEnqueue(t, q, frame{id: "x", body: []byte("first")}, 0)
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "x", Body: []byte("retried")}); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "retried", driver.Stats{Ready: 1})
	d := receive(t, q, 5*time.Second)
	if d.Message().ID != "x" || d.Attempt() != 1 {
		t.Fatalf("delivered %s attempt %d", d.Message().ID, d.Attempt())
	}
	expectNone(t, q, "the leftover", 500*time.Millisecond)
	expectStats(t, q, "one leased", driver.Stats{InFlight: 1})
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	expectStats(t, q, "acked", driver.Stats{})
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

// A crash between Ack's index delete and its message delete: the message
// comes back when its lease ends and is delivered again (at least once).
func TestCrashInsideAck(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "a", Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	ds, err := q.Receive(ctx, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := ds[0].(*delivery)
	if err := q.remove(ctxT(t), "a", d.etag); err != nil { // Ack's first write only
		t.Fatal(err)
	}
	expectStats(t, q, "unindexed", driver.Stats{})
	d2 := receive(t, q, 5*time.Second)
	checkDelivery(t, d2, "a", "b", 2)
	expectStats(t, q, "delivered again", driver.Stats{InFlight: 1})
	if err := d2.Ack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "acked", driver.Stats{})
}

// A crash inside Term after the index says dead but before the message
// left the queue: the receiver that takes the message drops it.
func TestCrashInsideTerm(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "a", Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	d := receive(t, q, 5*time.Second).(*delivery)
	// Term's first two writes, by hand: a poison copy, the index says dead.
	r, err := q.poison.EnqueueMessage(ctxT(t), d.f.encode(), &azqueue.EnqueueMessageOptions{TimeToLive: to.Ptr(int32(-1))})
	if err != nil {
		t.Fatal(err)
	}
	dead := entry{ID: "a", State: stDead, Msg: *r.Messages[0].MessageID, Pop: *r.Messages[0].PopReceipt, Deliveries: 1}
	if _, err := q.put(ctxT(t), dead, d.etag); err != nil {
		t.Fatal(err)
	}
	if err := d.update(ctxT(t), 0); err != nil { // the lease ends
		t.Fatal(err)
	}
	expectNone(t, q, "a dead letter's leftover", 500*time.Millisecond)
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("the leftover is still in the queue (%d messages)", n)
	}
	expectStats(t, q, "dead", driver.Stats{Dead: 1})
	// Enqueuing the ID revives it, and its poison copy goes.
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "a", Body: []byte("revived")}); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "revived", driver.Stats{Ready: 1})
	if n := visible(t, q.poison); n != 0 {
		t.Fatalf("%d messages left in the poison queue after the revival", n)
	}
	checkDelivery(t, receive(t, q, 5*time.Second), "a", "revived", 1)
}

// A crash inside a revival after its queue write: the Enqueue was not
// acknowledged, the ID stays dead, and the new message is dropped.
func TestCrashInsideRevival(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "a", Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, q, 5*time.Second).Term(ctxT(t), "test"); err != nil {
		t.Fatal(err)
	}
	rawEnqueue(t, q, frame{id: "a", body: []byte("revived")}, 0)
	expectNone(t, q, "an unacknowledged revival", 500*time.Millisecond)
	expectStats(t, q, "still dead", driver.Stats{Dead: 1})
	if n := visible(t, q.poison); n != 1 {
		t.Fatalf("%d messages in the poison queue, want the dead letter", n)
	}
}

// ---- long delays ----

// Azure hides a message for 7 days at most: a longer delay is carried in
// the message, which is hidden again when taken early, and the dequeues
// that were not deliveries do not count as attempts.
func TestDelayBeyondVisibilityCap(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "far", Body: []byte("b"), Delay: 8 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "delayed 8 days", driver.Stats{Delayed: 1})
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("a message delayed 8 days is visible")
	}

	// What the queue holds when those 7 days have passed and a day
	// remains, simulated with a due time 1.5 s away on a visible message.
	due := time.Now().Add(1500 * time.Millisecond)
	f := frame{id: "soon", body: []byte("b"), due: ms(due)}
	msgID := rawEnqueue(t, q, f, 0)
	if _, err := q.add(ctxT(t), entry{ID: "soon", State: stQueued, Msg: msgID, At: ms(due)}); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "two delayed", driver.Stats{Delayed: 2})
	d := receive(t, q, 10*time.Second)
	if time.Now().Before(due) {
		t.Fatalf("delivered before its due time")
	}
	checkDelivery(t, d, "soon", "b", 1) // Azure dequeued it twice

	// Nak beyond the cap: the same.
	if err := d.Nak(ctxT(t), 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	expectStats(t, q, "naked 30 days", driver.Stats{Delayed: 2})
	expectNone(t, q, "naked 30 days", 300*time.Millisecond)
}

// ---- limits ----

func TestMessageTooLarge(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	err := q.Enqueue(ctxT(t), driver.Message{ID: "big", Body: make([]byte, 49<<10)})
	if err == nil || !strings.Contains(err.Error(), "over Azure's limit") {
		t.Fatalf("Enqueue of 49 KiB = %v, want an error naming the limit", err)
	}
	// 48 KiB less the frame fits.
	if err := q.Enqueue(ctxT(t), driver.Message{ID: "fits", Body: make([]byte, 48<<10-16)}); err != nil {
		t.Fatalf("Enqueue of just under 48 KiB: %v", err)
	}
	expectStats(t, q, "one fits", driver.Stats{Ready: 1})
}

// Any ID up to 384 bytes is a message ID (the index keys it by its
// base64url); a longer one is refused before anything is written.
func TestIDs(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	ids := []string{"", "a/b\\c#d?e%f", "ünï\u00a0code", "\x00\x01\x7f", strings.Repeat("x", 384)}
	for _, id := range ids {
		if err := q.Enqueue(ctxT(t), driver.Message{ID: id, Body: []byte(id)}); err != nil {
			t.Fatalf("Enqueue(%q): %v", id, err)
		}
		// A duplicate is a no-op for these IDs too.
		if err := q.Enqueue(ctxT(t), driver.Message{ID: id, Body: []byte("dup")}); err != nil {
			t.Fatalf("Enqueue(%q) again: %v", id, err)
		}
	}
	expectStats(t, q, "enqueued", driver.Stats{Ready: int64(len(ids))})
	got := map[string]bool{}
	for range ids {
		d := receive(t, q, 5*time.Second)
		if string(d.Message().Body) != d.Message().ID {
			t.Fatalf("%q delivered with body %q", d.Message().ID, d.Message().Body)
		}
		got[d.Message().ID] = true
		if err := d.Ack(ctxT(t)); err != nil {
			t.Fatalf("Ack(%q): %v", d.Message().ID, err)
		}
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("%q not delivered (got %d IDs)", id, len(got))
		}
	}
	expectNone(t, q, "all acked", 300*time.Millisecond)
	expectStats(t, q, "all acked", driver.Stats{})

	err := q.Enqueue(ctxT(t), driver.Message{ID: strings.Repeat("x", 385)})
	if err == nil || !strings.Contains(err.Error(), "over the index's limit") {
		t.Fatalf("Enqueue of a 385-byte ID = %v, want an error naming the limit", err)
	}
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("a refused message left %d in the queue", n)
	}
}

// A message arr did not write (another program's, on the same queue) is
// moved to the poison queue as it is, not delivered.
func TestForeignMessage(t *testing.T) {
	e := newEnv(t)
	q := e.open(t, 0)
	if _, err := q.main.EnqueueMessage(ctxT(t), "hello from elsewhere", nil); err != nil {
		t.Fatal(err)
	}
	expectNone(t, q, "a foreign message", 500*time.Millisecond)
	if n := visible(t, q.main); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
	r, err := q.poison.PeekMessages(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 1 || *r.Messages[0].MessageText != "hello from elsewhere" {
		t.Fatalf("poison queue holds %d messages, want the foreign one as it was", len(r.Messages))
	}
	expectStats(t, q, "a foreign message", driver.Stats{}) // not indexed
}
