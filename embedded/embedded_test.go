package embedded

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/arrhq/arr/engine"
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

// ---- conformance ----

// storeHarness opens the store with Open and the queue of the same DB.
type storeHarness struct {
	dir string
	db  *DB
	st  *store
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	db, err := Open(h.dir, Options{})
	if err != nil {
		return nil, err
	}
	h.db = db
	h.st = db.Store().(*store)
	return h.st, db.Close() // the store holds the DB open
}

// OpenAtomic: the store is the DB's one-step writer.
func (h *storeHarness) OpenAtomic(ctx context.Context) (engine.Atomic, qdriver.Queue, error) {
	return h.st, h.db.Queue(), nil
}

func (h *storeHarness) Close() {}

func TestStoreConformance(t *testing.T) {
	opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
		return &storeHarness{dir: t.TempDir()}, nil
	})
}

// queueHarness opens the queue by URL, as arr's configuration does.
type queueHarness struct {
	dir string
	r   enginetest.Reopener
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	return h.r.Queue(ctx, fmt.Sprintf("embedded:%s?maxDeliveries=%d", h.dir, maxDeliveries))
}

func (h *queueHarness) Close() { h.r.Close() }

func TestQueueConformance(t *testing.T) {
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		return &queueHarness{dir: t.TempDir()}, nil
	})
}

// ---- helpers ----

func openT(t testing.TB, dir string, opts Options) *DB {
	t.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

func testOp(id string) *operation.Operation {
	now := time.Now().UTC()
	return &operation.Operation{ID: id, Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
}

// ---- URL openers and sharing ----

// openEngineT opens the engine of u, its store and its queue.
func openEngineT(t *testing.T, u string) (*engine.Engine, *opstore.Store, *queue.Queue) {
	t.Helper()
	ctx := context.Background()
	e, err := engine.Open(ctx, u)
	if err != nil {
		t.Fatalf("engine.Open(%q): %v", u, err)
	}
	st, err := e.Store(ctx)
	if err != nil {
		t.Fatalf("Store: %v", err)
	}
	q, err := e.Queue(ctx)
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	return e, st, q
}

func TestURLSharesOneDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	se, st, _ := openEngineT(t, "embedded:"+dir)
	qe, _, q := openEngineT(t, "embedded://"+dir+"?maxDeliveries=3")
	if se == qe {
		t.Fatalf("two URLs opened one engine")
	}
	sdb, qdb := st.Driver().(*store).db, q.Driver().(*queueHandle).db
	if sdb != qdb {
		t.Fatalf("store and queue URLs of one directory opened two DBs")
	}
	if got := sdb.q.maxDeliveries.Load(); got != 3 {
		t.Fatalf("maxDeliveries = %d, want 3 from the URL", got)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatalf("Open of a directory open in this process succeeded")
	}
	if again, err := engine.Open(ctx, "embedded:"+dir); err != nil || again != se {
		t.Fatalf("the same URL opened again = %p, %v; want the open engine %p", again, err, se)
	} else {
		again.Close() // the reference just taken
	}

	// One-step writes go to the DB's one queue, whichever URL opened it.
	op := testOp(opstoretest.NewID())
	if _, created, err := se.Atomic().SubmitAtomic(ctx, op, &operation.Request{Method: "POST"}, qdriver.Message{ID: op.ID}); err != nil || !created {
		t.Fatalf("SubmitAtomic of one URL's engine = %v, %v", created, err)
	}
	if s, err := q.Stats(ctx); err != nil || s.Ready != 1 {
		t.Fatalf("the other URL's queue after SubmitAtomic: %+v, %v; want the message", s, err)
	}

	// Closing one keeps the DB open for the other.
	if err := se.Close(); err != nil {
		t.Fatalf("closing the store's engine: %v", err)
	}
	if err := q.Enqueue(ctx, qdriver.Message{ID: "after-store-close"}); err != nil {
		t.Fatalf("Enqueue after the store closed: %v", err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatalf("Open while the queue still holds the DB succeeded")
	}
	if err := qe.Close(); err != nil {
		t.Fatalf("closing the queue's engine: %v", err)
	}
	// Both closed: the DB is closed and the directory free.
	db := openT(t, dir, Options{})
	defer db.Close()
	if _, err := db.Store().Get(ctx, op.ID); err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if s, _ := db.Queue().Stats(ctx); s.Ready != 2 {
		t.Fatalf("Stats after reopen = %+v, want 2 ready", s)
	}
	// A DB opened with Open is shared with URL openers too.
	e2, _, q2 := openEngineT(t, "embedded:"+dir)
	if q2.Driver().(*queueHandle).db != db {
		t.Fatalf("URL opener did not share the DB opened with Open")
	}
	e2.Close()
}

func TestURLErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, u := range []string{
		"embedded:" + dir + "?bogus=1",
		"embedded:" + dir + "?maxDeliveries=-1",
		"embedded:" + dir + "?maxDeliveries=x",
		"embedded:" + dir + "?defaultLease=0s",
		"embedded:",
	} {
		if e, err := engine.Open(ctx, u); err == nil {
			e.Close()
			t.Errorf("engine.Open(%q) succeeded", u)
		}
	}
	e, err := engine.Open(ctx, "embedded:"+dir+"?cacheSize=1048576")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if o, err := engine.Open(ctx, "embedded:"+dir+"?cacheSize=2097152"); err == nil {
		o.Close()
		t.Errorf("engine.Open with a cacheSize different from the open DB's succeeded")
	}
	o, err := engine.Open(ctx, "embedded:"+dir+"?cacheSize=1048576&maxDeliveries=0")
	if err != nil {
		t.Fatalf("engine.Open with the same cacheSize: %v", err)
	}
	o.Close()
}

func TestClosedHandles(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	s, q := db.Store(), db.Queue()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, testOp("a"), nil); err != nil {
		t.Fatalf("Create with the DB's own reference closed: %v", err)
	}
	s.Close()
	s.Close()
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a closed store = %v, want ErrClosed", err)
	}
	q.Close()
	if err := q.Enqueue(ctx, qdriver.Message{ID: "x"}); !errors.Is(err, qdriver.ErrClosed) {
		t.Fatalf("Enqueue on a closed queue = %v, want ErrClosed", err)
	}
	// All references gone: new handles are closed.
	if _, err := db.Store().Get(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a store of a closed DB = %v, want ErrClosed", err)
	}
	if _, err := db.Queue().Receive(ctx, 1, time.Second); !errors.Is(err, qdriver.ErrClosed) {
		t.Fatalf("Receive on a queue of a closed DB = %v, want ErrClosed", err)
	}
}

// ---- queue design properties ----

// TestReceiveSkipsTombstones checks that Receive does not walk the
// tombstones that acked entries leave: its scan starts at the watermark.
func TestReceiveSkipsTombstones(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	q := db.Queue()
	defer q.Close()
	const n = 2000
	for i := 0; i < n; i += 500 {
		var msgs []qdriver.Message
		for j := i; j < i+500; j++ {
			msgs = append(msgs, qdriver.Message{ID: fmt.Sprintf("m%05d", j), Body: []byte("x")})
		}
		if err := q.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	for acked := 0; acked < n; {
		ds, err := q.Receive(ctx, 250, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Ack(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		acked += len(ds)
	}
	empty := func() int {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if ds, err := q.Receive(rctx, 1, time.Minute); len(ds) > 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive on an empty queue = %d, %v", len(ds), err)
		}
		db.q.mu.Lock()
		defer db.q.mu.Unlock()
		return db.q.lastScanSteps
	}
	if steps := empty(); steps > 10 {
		t.Fatalf("Receive on an empty queue stepped %d times over internal keys; want a handful (the watermark skips %d acked entries)", steps, n)
	}
	// The check is meaningful: a scan from the start walks the tombstones.
	db.q.mu.Lock()
	db.q.watermark = []byte{pQueue}
	db.q.mu.Unlock()
	if steps := empty(); steps < n {
		t.Fatalf("a scan from the start stepped only %d times; the test cannot tell", steps)
	}
}

// TestWatermarkBelowLeases: when the watermark falls below leased entries
// (an Enqueue or Nak at a ready time below it, after a clock step), the
// scan passes over them without delivering them twice.
func TestWatermarkBelowLeases(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	q := db.Queue()
	defer q.Close()
	if err := q.Enqueue(ctx, qdriver.Message{ID: "a"}, qdriver.Message{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 2, time.Minute)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Receive = %d, %v", len(ds), err)
	}
	db.q.mu.Lock()
	db.q.lowerWatermark([]byte{pQueue})
	db.q.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if ds, err := q.Receive(rctx, 2, time.Minute); len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive with the watermark below two leased entries = %d deliveries, %v", len(ds), err)
	}
}

// TestWaiterWokenByLeaseExpiry: a Receive that went to sleep before another
// Receive took a lease is woken when that lease expires (the worker that
// held it died), and gets the message again.
func TestWaiterWokenByLeaseExpiry(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	q := db.Queue()
	defer q.Close()
	type result struct {
		ds  []qdriver.Delivery
		err error
	}
	receive := func(lease time.Duration) chan result {
		c := make(chan result, 1)
		go func() {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ds, err := q.Receive(rctx, 1, lease)
			c <- result{ds, err}
		}()
		return c
	}
	first := receive(300 * time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	second := receive(time.Minute)
	time.Sleep(50 * time.Millisecond)
	if err := q.Enqueue(ctx, qdriver.Message{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	r := <-first // the oldest waiter takes it, and its worker dies
	if r.err != nil || len(r.ds) != 1 {
		t.Fatalf("first Receive = %d, %v", len(r.ds), r.err)
	}
	start := time.Now()
	select {
	case r := <-second:
		if r.err != nil || len(r.ds) != 1 || r.ds[0].Attempt() != 2 {
			t.Fatalf("second Receive = %d, %v", len(r.ds), r.err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("redelivered %v after the lease was taken", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("a Receive waiting since before the lease was taken was not woken when it expired")
	}
}

// TestReceiveWakesPromptly checks the in-process signalling: a blocked
// Receive returns soon after an Enqueue, and a delayed message soon after
// its delay, with no polling interval in between.
func TestReceiveWakesPromptly(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	q := db.Queue()
	defer q.Close()
	var lags []time.Duration
	for i := range 15 {
		got := make(chan time.Time, 1)
		go func() {
			ds, err := q.Receive(ctx, 1, time.Minute)
			if err != nil || len(ds) != 1 {
				t.Errorf("Receive = %d, %v", len(ds), err)
			} else {
				_ = ds[0].Ack(ctx)
			}
			got <- time.Now()
		}()
		time.Sleep(20 * time.Millisecond)
		if err := q.Enqueue(ctx, qdriver.Message{ID: fmt.Sprint("w", i)}); err != nil {
			t.Fatal(err)
		}
		enqueued := time.Now()
		lags = append(lags, (<-got).Sub(enqueued))
	}
	slices.Sort(lags)
	if med := lags[len(lags)/2]; med > 50*time.Millisecond {
		t.Fatalf("median wake-up after Enqueue = %v (all: %v); want milliseconds", med, lags)
	}
	// A delayed message: woken by a timer, close to its time.
	const delay = 300 * time.Millisecond
	start := time.Now()
	if err := q.Enqueue(ctx, qdriver.Message{ID: "delayed", Delay: delay}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %d, %v", len(ds), err)
	}
	if el := time.Since(start); el < delay || el > delay+time.Second {
		t.Fatalf("delayed message delivered after %v, want just over %v", el, delay)
	}
}

func TestDeadLettersListed(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{MaxDeliveries: 1})
	defer db.Close()
	q := db.Queue()
	defer q.Close()
	if err := q.Enqueue(ctx, qdriver.Message{ID: "a", Body: []byte("A")}, qdriver.Message{ID: "b", Body: []byte("B")}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 2, time.Minute)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Receive = %d, %v", len(ds), err)
	}
	for _, d := range ds {
		if d.Message().ID == "a" {
			err = d.Term(ctx, "bad input")
		} else {
			err = d.Nak(ctx, 0) // the only delivery allowed: dead
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dls, err := db.DeadLetters("", 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("DeadLetters = %v, %v", dls, err)
	}
	if dls[0].ID != "a" || string(dls[0].Body) != "A" || dls[0].Reason != "bad input" || dls[0].Deliveries != 1 {
		t.Fatalf("dead letter a = %+v", dls[0])
	}
	if dls[1].ID != "b" || !strings.Contains(dls[1].Reason, "MaxDeliveries") {
		t.Fatalf("dead letter b = %+v", dls[1])
	}
	// Enqueuing a dead id again revives it.
	if err := q.Enqueue(ctx, qdriver.Message{ID: "a", Body: []byte("A2")}); err != nil {
		t.Fatal(err)
	}
	if s, _ := q.Stats(ctx); s.Dead != 1 || s.Ready != 1 {
		t.Fatalf("Stats after reviving = %+v", s)
	}
	if dls, _ := db.DeadLetters("", 10); len(dls) != 1 || dls[0].ID != "b" {
		t.Fatalf("DeadLetters after reviving = %+v", dls)
	}
}

// TestLargeQueue: a million pending messages open fast and in little
// memory, and are served from the front without loading the rest.
func TestLargeQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	n := 1_000_000
	if raceEnabled {
		n = 100_000 // the race detector makes Pebble ~10x slower
	}
	dir := t.TempDir()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	db := openT(t, dir, Options{})
	// Write the entries directly, as Enqueue would, without its per-message
	// checks and fsyncs: this test is about reading them back.
	base := nanos(time.Now().Add(-time.Hour))
	b := db.pdb.NewBatch()
	body := []byte("a small message body")
	for i := range n {
		id := fmt.Sprintf("msg-%08d", i)
		readyAt := base + uint64(i)
		_ = b.Set(queueKey(readyAt, id), encodeEntry(0, body), nil)
		_ = b.Set(msgKey(id), encodeReadyAt(readyAt), nil)
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			b = db.pdb.NewBatch()
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	start := time.Now()
	db = openT(t, dir, Options{})
	openTime := time.Since(start)
	defer db.Close()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d pending messages: open %v, Go heap %+.1f MiB over the test's start, process RSS %s",
		n, openTime, float64(heap)/(1<<20), rss())
	// The bound is the store's without the race detector; with it (a
	// tenth of the messages, each read ~10x slower, and other packages'
	// tests sharing the 2 CPUs) it only catches a pathological open.
	limit := 5 * time.Second
	if raceEnabled {
		limit = 20 * time.Second
	}
	if openTime > limit {
		t.Errorf("open took %v, want well under %v", openTime, limit)
	}
	if heap > 96<<20 {
		t.Errorf("heap grew %.1f MiB on open; want it independent of the queue length", float64(heap)/(1<<20))
	}
	ctx := context.Background()
	q := db.Queue()
	defer q.Close()
	s, err := q.Stats(ctx)
	if err != nil || s.Ready != int64(n) {
		t.Fatalf("Stats = %+v, %v; want %d ready", s, err, n)
	}
	start = time.Now()
	ds, err := q.Receive(ctx, 10, time.Minute)
	if err != nil || len(ds) != 10 || ds[0].Message().ID != "msg-00000000" {
		t.Fatalf("Receive = %d, %v", len(ds), err)
	}
	t.Logf("first Receive of 10: %v", time.Since(start))
	for _, d := range ds {
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(db.q.leases) != 0 {
		t.Fatalf("%d leases held after acking everything received", len(db.q.leases))
	}
}

// rss returns the process's resident set size, from /proc.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	return "?"
}

// ---- crash safety ----

const crashEnv = "ARR_EMBEDDED_CRASH_CHILD_DIR"

// TestCrashChild is the child of TestCrashLosesNothing: it submits in a
// loop from several goroutines and prints the id of each acknowledged
// submit, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrashLosesNothing")
	}
	db, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s := db.Store().(*store)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	body := make([]byte, 1024)
	for range 16 {
		go func() {
			for {
				op := testOp(opstoretest.NewID())
				op.IdempotencyKey = "k-" + op.ID
				_, _, err := s.SubmitAtomic(context.Background(), op, &operation.Request{Method: "POST", Body: body}, qdriver.Message{ID: op.ID, Body: []byte(op.ID)})
				mu.Lock()
				if err != nil {
					fmt.Fprintln(out, "ERR", err)
				} else {
					fmt.Fprintln(out, "ACK", op.ID)
				}
				out.Flush() // acknowledged to the parent only once the write returned
				mu.Unlock()
			}
		}()
	}
	select {}
}

func TestCrashLosesNothing(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	for round := range 2 { // the second round crashes a reopened database
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]bool{}
		sc := bufio.NewScanner(stdout)
		killAt := 300 + 200*round
		deadline := time.Now().Add(30 * time.Second)
		killed := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ACK "):
				acked[strings.TrimPrefix(line, "ACK ")] = true
			case strings.HasPrefix(line, "ERR "):
				t.Errorf("child: %s", line)
			}
			if !killed && (len(acked) >= killAt || time.Now().After(deadline)) {
				_ = cmd.Process.Signal(syscall.SIGKILL) // mid-write: submits are in flight
				killed = true
			}
		}
		_ = cmd.Wait()
		if len(acked) < killAt {
			t.Fatalf("child acknowledged only %d submits", len(acked))
		}

		db := openT(t, dir, Options{})
		s, q := db.Store(), db.Queue()
		ctx := context.Background()
		var stored []string
		for after := ""; ; {
			ops, next, err := s.List(ctx, opdriver.ListOptions{After: after, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range ops {
				stored = append(stored, op.ID)
			}
			if next == "" {
				break
			}
			after = next
		}
		queued := map[string]bool{}
		for {
			rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			ds, err := q.Receive(rctx, 500, time.Minute)
			cancel()
			if err != nil {
				break
			}
			for _, d := range ds {
				queued[d.Message().ID] = true
				if string(d.Message().Body) != d.Message().ID {
					t.Fatalf("message %s has body %q", d.Message().ID, d.Message().Body)
				}
			}
		}
		storedSet := map[string]bool{}
		for _, id := range stored {
			storedSet[id] = true
		}
		var lost []string
		for id := range acked {
			if !storedSet[id] || !queued[id] {
				lost = append(lost, id)
				continue
			}
			if req, err := s.GetRequest(ctx, id); err != nil || len(req.Body) != 1024 {
				t.Errorf("request of acknowledged %s: %v", id, err)
			}
			dup := testOp(opstoretest.NewID())
			dup.IdempotencyKey = "k-" + id
			if got, created, err := s.Create(ctx, dup, nil); err != nil || created || got.ID != id {
				t.Errorf("idempotency key of acknowledged %s not held after the crash: %v %v", id, created, err)
				break
			}
		}
		sort.Strings(lost)
		if len(lost) > 0 {
			t.Fatalf("round %d: %d of %d acknowledged submits lost after kill -9 (first %s)", round, len(lost), len(acked), lost[0])
		}
		// Atomicity: every stored operation has its message and vice versa.
		for _, id := range stored {
			if !queued[id] {
				t.Fatalf("operation %s stored without its queue message", id)
			}
		}
		if len(queued) != len(stored) {
			t.Fatalf("%d messages for %d operations", len(queued), len(stored))
		}
		t.Logf("round %d: %d acknowledged before kill -9, %d stored after, none lost", round, len(acked), len(stored))
		q.Close()
		s.Close()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- misc ----

func TestKeysOrder(t *testing.T) {
	// Queue keys sort by ready time, then id.
	a, b := queueKey(1, "zzz"), queueKey(2, "aaa")
	if string(a) >= string(b) {
		t.Fatal("queue keys do not sort by ready time")
	}
	if got := prefixEnd([]byte{'s', 0xff}); string(got) != "t" {
		t.Fatalf("prefixEnd = %q", got)
	}
	if nanos(time.Unix(-5, 0)) != 0 {
		t.Fatal("times before 1970 must clamp to 0")
	}
	// Request records round-trip, including empty ones.
	for _, r := range []*operation.Request{{}, {Method: "GET", Header: map[string][]string{"A": {""}}, Body: []byte{0}},
		{Method: "POST", Path: "/p", RawQuery: "q", Host: "h.example", RemoteAddr: "[2001:db8::1]:443", TLS: true, Body: []byte("b")}} {
		rec := encodeRequest(r)
		if rec[0] != reqRecordV2 {
			t.Fatalf("request record version %d, want %d", rec[0], reqRecordV2)
		}
		got, err := decodeRequest(rec)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("request round trip of %+v = %+v, %v", r, got, err)
		}
		for i := 1; i < len(rec)-len(r.Body); i++ {
			if _, err := decodeRequest(rec[:i]); err == nil {
				t.Fatalf("request record of %+v truncated to %d bytes decoded", r, i)
			}
		}
	}
	if _, err := decodeRequest([]byte{reqRecordV1, 5, 'a'}); err == nil {
		t.Fatal("truncated request decoded")
	}
	// v1 request records (as written before host, remote address and TLS)
	// are still read.
	v1, _ := hex.DecodeString("0104504f5354022f7003613d3101014101016278797a")
	got, err := decodeRequest(v1)
	want := &operation.Request{Method: "POST", Path: "/p", RawQuery: "a=1", Header: http.Header{"A": {"b"}}, Body: []byte("xyz")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 request record = %+v, %v; want %+v", got, err, want)
	}
	// A TLS byte other than 0 or 1 is corrupt.
	bad := encodeRequest(&operation.Request{Method: "GET", TLS: true})
	bad[len(bad)-2] = 7 // the TLS byte, before the header count (0)
	if _, err := decodeRequest(bad); err == nil {
		t.Fatal("request record with TLS byte 7 decoded")
	}
}

// The existence reads skipped for ids above the key ceiling must still
// catch duplicates: of ids below it, of the highest id itself, and after a
// reopen (the ceiling is loaded from disk, not assumed empty).
func TestKeyCeilingStillFindsDuplicates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openT(t, dir, Options{})
	st, q := db.Store(), db.Queue()
	sub := st.(engine.Atomic)
	for _, id := range []string{"m", "b", "z"} {
		if _, created, err := sub.SubmitAtomic(ctx, testOp(id), nil, qdriver.Message{ID: id}); err != nil || !created {
			t.Fatalf("SubmitAtomic(%s) = %v, %v", id, created, err)
		}
	}
	check := func(when string) {
		t.Helper()
		for _, id := range []string{"b", "m", "z"} {
			if _, _, err := sub.SubmitAtomic(ctx, testOp(id), nil, qdriver.Message{ID: id}); !errors.Is(err, opdriver.ErrExists) {
				t.Errorf("%s: SubmitAtomic of existing %s = %v, want ErrExists", when, id, err)
			}
		}
		st, err := q.Stats(ctx)
		if err != nil || st.Ready != 3 {
			t.Errorf("%s: Stats = %+v, %v; want 3 ready (no message enqueued twice)", when, st, err)
		}
	}
	check("open")
	st.Close()
	q.Close()
	db.Close()
	db = openT(t, dir, Options{})
	defer db.Close()
	st, q = db.Store(), db.Queue()
	defer st.Close()
	defer q.Close()
	sub = st.(engine.Atomic)
	check("reopened")
	// A message enqueued on its own above the ceiling is still deduplicated.
	if err := q.Enqueue(ctx, qdriver.Message{ID: "zz"}, qdriver.Message{ID: "zz"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, qdriver.Message{ID: "zz"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := q.Stats(ctx); s.Ready != 4 {
		t.Errorf("after enqueuing zz twice: %d ready, want 4", s.Ready)
	}
}

// The embedded result store (bytes in the DB) passes the result store
// conformance suite.
func TestResultsConformance(t *testing.T) {
	resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
		Open: func(t *testing.T) rdriver.Store {
			e, err := engine.Open(context.Background(), "embedded:"+filepath.Join(t.TempDir(), "db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			st, err := e.Results(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return st.Driver()
		},
	})
}

// The signer of the embedded results (URLs signed and served as the file
// store's) passes the signer conformance suite.
func TestSignerConformance(t *testing.T) {
	signtest.RunConformanceTests(t, signtest.Harness{
		Open: func(t *testing.T) (*resultstore.Store, *urlsign.Signer) {
			e := enginetest.Open(t, "embedded:"+filepath.Join(t.TempDir(), "db"))
			sg, err := e.Signer(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, err := e.Results(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return st, sg
		},
	})
}

// Results share the DB with the operations store and the queue, survive a
// reopen, and the signing keyring lands beside the DB directory.
func TestResultsShareTheDB(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	dir := filepath.Join(data, "db")
	se, st, _ := openEngineT(t, "embedded:"+dir)
	re, err := engine.Open(ctx, "embedded:"+dir+"?prefix=/r/")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := re.Results(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Driver().(*store).db != rs.Driver().(*Results).db {
		t.Fatal("the result store opened a second DB")
	}
	sg, err := re.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, urlsign.DefaultKeyFileName)); err != nil {
		t.Fatalf("keyring not beside the DB: %v", err)
	}
	a, err := rs.Put(ctx, "k1", strings.NewReader("hello"), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	u, err := sg.SignedURL(ctx, "k1", time.Now().Add(time.Minute))
	if err != nil || !strings.HasPrefix(u, "/r/k1?") {
		t.Fatalf("SignedURL = %q, %v", u, err)
	}
	re.Close()
	se.Close()
	re, err = engine.Open(ctx, "embedded:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if rs, err = re.Results(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Open(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	if string(b) != "hello" || r.Attributes().ETag != a.ETag || r.Attributes().ContentType != "text/plain" {
		t.Fatalf("after reopen: %q %+v, want hello %+v", b, r.Attributes(), a)
	}
	be, err := engine.Open(ctx, "embedded:"+dir+"?maxURLLifetime=x")
	if err == nil {
		_, err = be.Signer(ctx)
		be.Close()
	}
	if err == nil {
		t.Fatal("a bad maxURLLifetime was accepted")
	}
}

// Lazy writes (the worker's running state, its acks after a durable
// terminal state, results made durable by the operation's success) are
// visible at once and are made durable by the next synced write; the
// engine says that results share the operations' log.
func TestLazyWritesVisibleAndSyncedByNextWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, st, q := openEngineT(t, "embedded:"+dir)
	rs, err := e.Results(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Atomic().SubmitAtomic(ctx, testOp("a"), nil, queue.Message{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %v, %v", ds, err)
	}
	op, err := st.TransitionLazy(ctx, "a", func(op *operation.Operation) error { op.Status = operation.Running; return nil })
	if err != nil || op.Version != 2 {
		t.Fatalf("TransitionLazy = %+v, %v", op, err)
	}
	if got, _ := st.Get(ctx, "a"); got.Status != operation.Running {
		t.Fatalf("lazy update not visible: %s", got.Status)
	}
	if !e.Caps().ResultsInLog {
		t.Fatal("the embedded engine does not say its results share the operations' log")
	}
	if _, err := rs.PutLazy(ctx, "a", strings.NewReader("result"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Transition(ctx, "a", func(op *operation.Operation) error { op.Status = operation.Succeeded; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := queue.AckLazy(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	if s, _ := q.Stats(ctx); s.Ready+s.InFlight+s.Delayed != 0 {
		t.Fatalf("after AckLazy: %+v", s)
	}
	e.Close()
	e, st, _ = openEngineT(t, "embedded:"+dir)
	defer e.Close()
	if rs, err = e.Results(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, "a"); got.Status != operation.Succeeded || got.Version != 3 {
		t.Fatalf("after reopen: %+v", got)
	}
	r, err := rs.Open(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "result" {
		t.Fatalf("result after reopen: %q", b)
	}
}

// Reads through the operation cache are monotonic: once any reader has seen
// a version, no later read (by anyone) returns an older one, while writers
// keep changing the operation and the cache evicts.
func TestOpCacheReadsAreMonotonic(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	st := opstore.New(db.Store())
	defer st.Close()
	const ids = 4
	for i := range ids {
		if _, _, err := st.Create(ctx, testOp(fmt.Sprint("op", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	var seen [ids]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range ids {
		wg.Go(func() {
			id := fmt.Sprint("op", w)
			for range 300 {
				if _, err := st.TransitionLazy(ctx, id, func(op *operation.Operation) error { op.PercentComplete = (op.PercentComplete + 1) % 100; return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := i % ids
				floor := seen[k].Load()
				op, err := st.Get(ctx, fmt.Sprint("op", k))
				if err != nil {
					t.Error(err)
					return
				}
				if op.Version < floor {
					t.Errorf("read version %d of op%d after version %d was seen", op.Version, k, floor)
					return
				}
				for v := seen[k].Load(); op.Version > v && !seen[k].CompareAndSwap(v, op.Version); v = seen[k].Load() {
				}
			}
		})
	}
	// Evict while it runs: fill the cache with other operations.
	for i := range opCacheSize + 100 {
		if _, _, err := st.Create(ctx, testOp(fmt.Sprint("filler", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	for k := range ids {
		if op, err := st.Get(ctx, fmt.Sprint("op", k)); err != nil || op.Version != 301 {
			t.Fatalf("op%d at the end: %+v, %v; want version 301", k, op, err)
		}
	}
}

// Operation records round-trip through the v2 encoding with every field,
// v1 (JSON) records are still read, and truncated records are refused.
func TestOpRecordEncoding(t *testing.T) {
	now := time.Unix(1763700000, 123456789).UTC()
	full := &operation.Operation{
		ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Route: "echo", Status: operation.Failed,
		CreatedAt: now, UpdatedAt: now.Add(time.Second), PercentComplete: 42, Message: "half way",
		Attempts: 3, Error: &operation.Problem{Type: "urn:x", Title: "T", Status: 500, Detail: "d", Instance: "/i"},
		Result:         &operation.Result{Key: "k", ContentType: "text/plain", Size: 1 << 40, ETag: `"e"`},
		IdempotencyKey: "key-1", RequestHash: "abc", ExpiresAt: now.Add(time.Hour),
		Meta: map[string]string{"RequestGUID": "g", "empty": ""}, Version: 7,
	}
	withExt := full.Clone()
	withExt.Failures, withExt.Interruptions = 2, 1
	withExt.History = []operation.Attempt{
		{Number: 1, EndedAt: now.Add(-time.Minute), Outcome: operation.OutcomeInterrupted},
		{Number: 2, StartedAt: now.Add(-time.Second), EndedAt: now, Outcome: operation.OutcomeFailed,
			Error: &operation.Problem{Type: "urn:y", Title: "U", Status: 502, Extensions: map[string]any{"upstreamStatus": 503.0, "list": []any{"a", 1.5}}}},
	}
	withExt.TombstoneUntil = now.Add(48 * time.Hour)
	withExt.Result.StatusCode, withExt.Result.Header = 201, http.Header{"Location": {"/x"}, "Empty": {}}
	withExt.Error.Extensions = map[string]any{"n": 1.0, "obj": map[string]any{"k": "v"}, "null": nil}
	// Only one ext field each, and ext fields of an absent Error or Result
	// (ignored).
	onlyTomb := &operation.Operation{ID: "t", Status: operation.Succeeded, TombstoneUntil: now}
	onlyHist := &operation.Operation{ID: "h", Status: operation.Running, History: []operation.Attempt{{Number: 1, Outcome: operation.OutcomeFailed}}}
	onlyStatus := &operation.Operation{ID: "s", Status: operation.Succeeded, Result: &operation.Result{Key: "k", StatusCode: 204}}
	// Owner and tenant (a v3 record), each alone too.
	owned := withExt.Clone()
	owned.Owner, owned.Tenant = "alice\x00é", "tenant-a"
	onlyOwner := &operation.Operation{ID: "o", Status: operation.Pending, Owner: "bob"}
	onlyTenant := &operation.Operation{ID: "n", Status: operation.Pending, Tenant: "t"}
	// The callback outbox (the v4 record's callbacks part), with every Callback field, and each of
	// its three fields alone.
	called := owned.Clone()
	called.CallbackURL = "https://hooks.example.com/arr?tag=a%20b"
	called.Callbacks = []operation.Callback{
		{ID: "msg_1", URL: called.CallbackURL, Event: "failed", Secret: "principal:alice", CreatedAt: now.Add(-time.Minute),
			State: operation.CallbackPending, Attempts: 3, NextAt: now.Add(time.Minute), LastStatus: 503, LastError: "503", LastAt: now},
		{ID: "msg_2", URL: "https://r.example/", Event: "failed", Secret: "route:echo", CreatedAt: now,
			State: operation.CallbackDelivered, Attempts: 1, LastStatus: 204, LastAt: now, DeliveredAt: now, RedeliveredAt: now.Add(-time.Second)},
	}
	called.CallbackDueAt = now.Add(time.Minute)
	onlyURL := &operation.Operation{ID: "u", Status: operation.Pending, CallbackURL: "https://h.example/"}
	onlyCallbacks := &operation.Operation{ID: "c", Status: operation.Succeeded, Callbacks: []operation.Callback{{ID: "m", State: operation.CallbackFailed}}}
	onlyDue := &operation.Operation{ID: "d", Status: operation.Succeeded, CallbackDueAt: now}
	for _, op := range []*operation.Operation{full, withExt, onlyTomb, onlyHist, onlyStatus, owned, onlyOwner, onlyTenant, called, onlyURL, onlyCallbacks, onlyDue, {ID: "x", Route: "r", Status: operation.Pending}, {ID: "y", Version: -1, PercentComplete: -5}} {
		rec, err := encodeOp(op)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeOp(rec)
		if err != nil {
			t.Fatalf("decode %s: %v", op.ID, err)
		}
		if !reflect.DeepEqual(got, op) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, op)
		}
		for i := range len(rec) - 1 {
			if _, err := decodeOp(rec[:i]); err == nil {
				t.Fatalf("a record of %s truncated to %d bytes decoded", op.ID, i)
			}
		}
	}
	// A record without the fields of the ext part is byte for byte what
	// it was before they existed (captured from that build; one Meta entry,
	// for a deterministic order).
	old := full.Clone()
	old.Meta = map[string]string{"RequestGUID": "g"}
	rec, err := encodeOp(old)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "022430313933613162322d633364342d376535662d386139622d306331643265336634613562046563686f066661696c656407aab4b8dbc7f3f5f930aadc8e95cff3f5f930540868616c6620776179060575726e3a780154e8070164022f69016b0a746578742f706c61696e80808080804003226522056b65792d3103616263aab4fde68dc5f7f930010b526571756573744755494401670e"
	if h := hex.EncodeToString(rec); h != golden {
		t.Fatalf("record without ext fields changed:\n got %s\nwant %s", h, golden)
	}
	// With them: the same bytes with the ext flag, then the ext part.
	ext := old.Clone()
	ext.Failures = 1
	rec2, err := encodeOp(ext)
	if err != nil {
		t.Fatal(err)
	}
	flagAt := 1 + 1 + len(old.ID) + 1 + len(old.Route) + 1 + len(old.Status)
	if rec2[flagAt] != rec[flagAt]|opHasExt || !bytes.Equal(rec2[:flagAt], rec[:flagAt]) || !bytes.Equal(rec2[flagAt+1:len(rec)], rec[flagAt+1:]) {
		t.Fatalf("record with ext:\n%x\nis not the record without it with the flag set, then more:\n%x", rec2, rec)
	}
	if j := rec2[len(rec)+1:]; int(rec2[len(rec)]) != len(j) || string(j) != `{"failures":1}` {
		t.Fatalf("ext part = %q (length %d), want {\"failures\":1}", j, rec2[len(rec)])
	}
	// With an owner: a v3 record, the v2 one with owner and tenant after
	// the request hash.
	own := old.Clone()
	own.Owner = "alice"
	rec3, err := encodeOp(own)
	if err != nil {
		t.Fatal(err)
	}
	hashEnd := bytes.Index(rec, []byte("\x03abc")) + 4
	want3 := append(append(append([]byte{opRecordV3}, rec[1:hashEnd]...), "\x05alice\x00"...), rec[hashEnd:]...)
	if !bytes.Equal(rec3, want3) {
		t.Fatalf("record with an owner:\n%x\nwant\n%x", rec3, want3)
	}
	// The outbox's times come back in UTC, the same instants.
	east := time.FixedZone("UTC+5", 5*3600)
	zoned := &operation.Operation{ID: "z", Status: operation.Succeeded, CallbackDueAt: now.In(east),
		Callbacks: []operation.Callback{{ID: "m", CreatedAt: now.In(east), NextAt: now.Add(time.Second).In(east),
			LastAt: now.In(east), DeliveredAt: now.In(east), State: operation.CallbackPending}}}
	zrec, err := encodeOp(zoned)
	if err != nil {
		t.Fatal(err)
	}
	zgot, err := decodeOp(zrec)
	if err != nil {
		t.Fatal(err)
	}
	zc := zgot.Callbacks[0]
	for i, tm := range []time.Time{zgot.CallbackDueAt, zc.CreatedAt, zc.NextAt, zc.LastAt, zc.DeliveredAt} {
		if tm.Location() != time.UTC {
			t.Fatalf("outbox time %d came back in %s, want UTC", i, tm.Location())
		}
	}
	if !zgot.CallbackDueAt.Equal(now) || !zc.NextAt.Equal(now.Add(time.Second)) {
		t.Fatalf("outbox times moved: due %s, next %s", zgot.CallbackDueAt, zc.NextAt)
	}
	// A corrupt ext part is refused.
	bad := append(bytes.Clone(rec2[:len(rec)]), 2, '{', '[')
	if _, err := decodeOp(bad); err == nil {
		t.Fatal("record with a corrupt ext part decoded")
	}

	v1 := append([]byte{opRecordV1}, `{"id":"v1","route":"echo","status":"succeeded","createdAt":"2026-11-21T10:00:00.5Z","updatedAt":"2026-11-21T10:00:01Z","percentComplete":100,"attempts":1,"version":3}`...)
	got, err := decodeOp(v1)
	if err != nil || got.ID != "v1" || got.Status != operation.Succeeded || got.Version != 3 || got.CreatedAt.Nanosecond() != 5e8 {
		t.Fatalf("v1 record: %+v, %v", got, err)
	}
}

// The operation cache stays bounded however ids come and go.
func TestOpCacheBounded(t *testing.T) {
	var c opCache
	for i := range 5 * opCacheSize {
		id := fmt.Sprint("id", i%(2*opCacheSize))
		c.put(&operation.Operation{ID: id, Version: int64(i)}, 100)
		if i%3 == 0 {
			c.del(fmt.Sprint("id", (i/3)%(2*opCacheSize)))
		}
		if len(c.m) > opCacheSize || c.n != len(c.m) {
			t.Fatalf("after %d puts the cache holds %d entries in %d ring slots", i+1, len(c.m), c.n)
		}
	}
	last := &operation.Operation{ID: "last", Version: 9}
	c.put(last, 100)
	if got, ok := c.get("last"); !ok || got.Version != 9 || got == last {
		t.Fatalf("get of the newest entry = %v, %v (want a copy of version 9)", got, ok)
	}
}

// The operation cache is bounded by bytes: large records evict older
// ones, a record over a 64th of the bound is not cached, and the count
// of bytes stays exact through puts, re-puts and deletions.
func TestOpCacheBoundedByBytes(t *testing.T) {
	const maxBytes = 1 << 20
	c := opCache{maxBytes: maxBytes}
	const rec = 10 << 10 // each entry: 10 KiB + the overhead
	for i := range 1000 {
		id := fmt.Sprint("id", i%300)
		c.put(&operation.Operation{ID: id, Version: int64(i)}, rec)
		if i%7 == 0 {
			c.del(fmt.Sprint("id", (i/7)%300))
		}
		var sum int64
		for _, e := range c.m {
			sum += e.size
		}
		if sum != c.bytes || c.bytes > maxBytes || c.n != len(c.m) {
			t.Fatalf("after %d puts: %d bytes counted, %d held, bound %d; %d ids in %d slots", i+1, c.bytes, sum, maxBytes, len(c.m), c.n)
		}
	}
	if max := maxBytes / (rec + opEntryOverhead); len(c.m) > max {
		t.Errorf("%d entries of %d bytes held under a bound of %d bytes", len(c.m), rec, maxBytes)
	}
	if _, ok := c.get("id99"); !ok {
		t.Error("the newest entry is not cached")
	}
	c.put(&operation.Operation{ID: "huge"}, maxBytes/64)
	if _, ok := c.get("huge"); ok {
		t.Error("a record over a 64th of the bound was cached")
	}
	// A record that grows too large replaces its cached smaller version.
	c.put(&operation.Operation{ID: "id99", Version: 1e6}, maxBytes)
	if op, ok := c.get("id99"); ok {
		t.Errorf("an operation whose record became too large still reads version %d from the cache", op.Version)
	}
}

// countPrefix counts the keys under prefix p.
func countPrefix(t *testing.T, db *DB, p byte) int {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return n
}

// A tombstone is two small keys, written with the deletion and removed by
// the purge; one whose time has passed answers ErrNotFound before it is
// purged, and a Create of its id removes it.
func TestTombstoneKeys(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	defer db.Close()
	st := db.Store()
	defer st.Close()
	keys := func(want int) {
		t.Helper()
		if g, x := countPrefix(t, db, pGone), countPrefix(t, db, pGoneAt); g != want || x != want {
			t.Fatalf("%d g and %d t keys, want %d of each", g, x, want)
		}
	}
	now := time.Now().UTC()
	op := testOp(opstoretest.NewID())
	op.ExpiresAt, op.TombstoneUntil = now.Add(-time.Minute), now.Add(200*time.Millisecond)
	if _, _, err := st.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	if del, err := st.DeleteExpired(ctx, now, 10); err != nil || len(del) != 1 {
		t.Fatalf("DeleteExpired = %d, %v", len(del), err)
	}
	keys(1)
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, opdriver.ErrGone) {
		t.Fatalf("Get = %v, want ErrGone", err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := st.Get(ctx, op.ID); !errors.Is(err, opdriver.ErrNotFound) {
		t.Fatalf("Get after the tombstone's time, before its purge = %v, want ErrNotFound", err)
	}
	keys(1)
	again := testOp(op.ID)
	if _, created, err := st.Create(ctx, again, nil); err != nil || !created {
		t.Fatalf("Create over a tombstone whose time passed = %v, %v", created, err)
	}
	keys(0)

	// Deleted again, with a tombstone; purged once its time has passed.
	again = testOp(op.ID)
	again.Version = 1
	again.ExpiresAt, again.TombstoneUntil = now.Add(-time.Minute), now.Add(time.Hour)
	if err := st.Update(ctx, again); err != nil {
		t.Fatal(err)
	}
	ch, stop, _ := st.Watch(ctx, op.ID)
	defer stop()
	if del, err := st.DeleteExpired(ctx, now, 10); err != nil || len(del) != 1 {
		t.Fatalf("DeleteExpired = %d, %v", len(del), err)
	}
	<-ch
	keys(1)
	if _, err := st.GetRequest(ctx, op.ID); !errors.Is(err, opdriver.ErrGone) {
		t.Fatalf("GetRequest = %v, want ErrGone", err)
	}
	if del, err := st.DeleteExpired(ctx, now.Add(2*time.Hour), 10); err != nil || len(del) != 0 {
		t.Fatalf("DeleteExpired later = %d, %v", len(del), err)
	}
	keys(0)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("the purge of a tombstone did not wake its watcher")
	}
}

// The owner index holds one entry per stored operation with an owner:
// Create writes it, updates leave it, DeleteExpired deletes it.
func TestOwnerIndexEntries(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	s := opstore.New(db.Store())
	defer s.Close()
	count := func() int {
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pOwner}, UpperBound: []byte{pOwner + 1}})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		return n
	}
	t0 := time.Now()
	var ids []string
	for i := range 12 {
		op := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending, Owner: []string{"alice", "bob", ""}[i%3]}
		if i%2 == 0 {
			op.ExpiresAt = t0.Add(-time.Minute)
		}
		if _, _, err := s.Create(ctx, op, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.ID)
	}
	if n := count(); n != 8 {
		t.Fatalf("%d owner index entries, want 8 (the operations with an owner)", n)
	}
	for _, id := range ids {
		if _, err := s.Transition(ctx, id, func(o *operation.Operation) error { o.Owner = "mallory"; o.Status = operation.Running; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 8 {
		t.Fatalf("after updates, %d owner index entries, want 8", n)
	}
	if ops, err := s.DeleteExpired(ctx, t0, 100); err != nil || len(ops) != 6 {
		t.Fatalf("DeleteExpired = %d, %v; want 6", len(ops), err)
	}
	if n := count(); n != 4 {
		t.Fatalf("after DeleteExpired, %d owner index entries, want 4", n)
	}
}

// dueEntries returns the ids of the callback index entries, in key order,
// failing unless each entry's time is its operation's CallbackDueAt.
func dueEntries(t *testing.T, db *DB) []string {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pDue}, UpperBound: []byte{pDue + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var ids []string
	for ok := it.First(); ok; ok = it.Next() {
		ts, id, ok := splitTimeKey(it.Key())
		if !ok {
			t.Fatalf("malformed callback index key %x", it.Key())
		}
		op, err := getOp(db.pdb, string(id))
		if err != nil {
			t.Fatalf("callback index names %s: %v", id, err)
		}
		if op.CallbackDueAt.IsZero() || nanos(op.CallbackDueAt) != ts {
			t.Fatalf("callback index entry of %s at %d, its CallbackDueAt is %s", id, ts, op.CallbackDueAt)
		}
		ids = append(ids, string(id))
	}
	return ids
}

// The callback index holds exactly one entry per stored operation with a
// CallbackDueAt, at that time: every write moves it in the operation's
// batch, and DeleteExpired deletes it. An entry its operation no longer
// matches (a build without the index could leave one) is skipped.
func TestCallbackIndexEntries(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), Options{})
	s := opstore.New(db.Store())
	defer s.Close()
	t0 := time.Now().UTC()
	expect := func(what string, want ...string) {
		t.Helper()
		if got := dueEntries(t, db); !slices.Equal(got, want) {
			t.Fatalf("%s: callback index entries %v, want %v", what, got, want)
		}
	}
	a := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending, CallbackDueAt: t0.Add(time.Minute), ExpiresAt: t0.Add(-time.Second)}
	b := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending}
	for _, op := range []*operation.Operation{a, b} {
		if _, _, err := s.Create(ctx, op, nil); err != nil {
			t.Fatal(err)
		}
	}
	expect("after Create", a.ID)
	// Moved before a's: the order is by time, not id.
	if _, err := s.Transition(ctx, b.ID, func(o *operation.Operation) error { o.CallbackDueAt = t0; return nil }); err != nil {
		t.Fatal(err)
	}
	expect("after Transition owes one", b.ID, a.ID)
	if _, err := s.TransitionLazy(ctx, b.ID, func(o *operation.Operation) error { o.CallbackDueAt = t0.Add(time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	expect("after TransitionLazy moves it", a.ID, b.ID)
	// A write that leaves the time alone leaves the entry alone.
	if _, err := s.Transition(ctx, b.ID, func(o *operation.Operation) error { o.Message = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	expect("after a Transition of something else", a.ID, b.ID)
	if _, err := s.Transition(ctx, b.ID, func(o *operation.Operation) error { o.CallbackDueAt = time.Time{}; return nil }); err != nil {
		t.Fatal(err)
	}
	expect("after Transition clears it", a.ID)
	if ops, err := s.DeleteExpired(ctx, t0, 10); err != nil || len(ops) != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", len(ops), err)
	}
	expect("after DeleteExpired")

	// Stale entries: one naming no operation, one at a time its operation
	// no longer has. Neither is returned; the operation is, at its time.
	c := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending, CallbackDueAt: t0.Add(-time.Minute)}
	if _, _, err := s.Create(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(dueKey(t0.Add(-time.Hour), "gone"), nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(dueKey(t0.Add(-2*time.Minute), c.ID), nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ops, err := s.DueCallbacks(ctx, t0, 10)
	if err != nil || len(ops) != 1 || ops[0].ID != c.ID {
		t.Fatalf("DueCallbacks over stale entries = %v, %v; want only %s", ops, err, c.ID)
	}
}
