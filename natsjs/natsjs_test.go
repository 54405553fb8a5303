package natsjs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/enginetest"
	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/natsjs"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/queue/queuetest"
)

// testAckWait is the queue's default lease and redelivery timeout in
// tests: short, so that the killed-worker test is quick, and long enough
// for the heartbeats (every third of it) on a loaded machine.
const testAckWait = 2 * time.Second

// serverURL is the server the conformance tests use: $ARR_TEST_NATS_URL,
// or nats://127.0.0.1:4222 under CI; without either the test is skipped.
func serverURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("ARR_TEST_NATS_URL"); u != "" {
		return u
	}
	if os.Getenv("CI") == "" {
		t.Skip("set ARR_TEST_NATS_URL (e.g. nats://127.0.0.1:4222) to run against a NATS server")
	}
	return "nats://127.0.0.1:4222"
}

// startCluster starts a 3-node cluster (see natstest.StartCluster for
// when it skips).
func startCluster(t *testing.T) *natstest.Cluster {
	t.Helper()
	return natstest.StartCluster(t, 3)
}

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// withParams adds query parameters to a nats:// URL.
func withParams(base string, kv ...string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	for i := 0; i < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// cleanup deletes everything a prefix's store and queue created.
func cleanup(t testing.TB, base, prefix string) {
	u, _ := url.Parse(base)
	cfg, err := natsjs.ParseURL(u)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	nc, err := nats.Connect(cfg.Servers[0])
	for i := 1; err != nil && i < len(cfg.Servers); i++ {
		nc, err = nats.Connect(cfg.Servers[i])
	}
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{"KV_" + prefix + "_ops", prefix + "_work", prefix + "_delay", prefix + "_dead"} {
		if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: deleting %s: %v", s, err)
		}
	}
}

// storeHarness opens the store by URL, as arr's configuration does: each
// OpenStore closes the URL's engine and opens it afresh.
type storeHarness struct {
	t            testing.TB
	base, prefix string
	replicas     int
	r            enginetest.Reopener
}

func (h *storeHarness) url() string {
	return withParams(h.base, "prefix", h.prefix, "replicas", fmt.Sprint(h.replicas))
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	return h.r.Store(ctx, h.url())
}

// OpenAtomic returns nil, nil, nil: JetStream has no one-step writes of an
// operation and its message (the engine's Atomic is nil).
func (h *storeHarness) OpenAtomic(ctx context.Context) (engine.Atomic, qdriver.Queue, error) {
	return h.r.Atomic(ctx)
}

func (h *storeHarness) Close() {
	h.r.Close()
	cleanup(h.t, h.base, h.prefix)
}

type queueHarness struct {
	t            testing.TB
	base, prefix string
	replicas     int
	r            enginetest.Reopener
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	return h.r.Queue(ctx, withParams(h.base, "prefix", h.prefix, "replicas", fmt.Sprint(h.replicas),
		"ackWait", testAckWait.String(), "maxDeliveries", fmt.Sprint(maxDeliveries)))
}

func (h *queueHarness) Close() {
	h.r.Close()
	cleanup(h.t, h.base, h.prefix)
}

func runStoreSuite(t *testing.T, base string, replicas int) {
	opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
		return &storeHarness{t: t, base: base, prefix: randomPrefix(), replicas: replicas}, nil
	})
}

func runQueueSuite(t *testing.T, base string, replicas int) {
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		return &queueHarness{t: t, base: base, prefix: randomPrefix(), replicas: replicas}, nil
	})
}

func TestStoreConformance(t *testing.T) { runStoreSuite(t, serverURL(t), 1) }
func TestQueueConformance(t *testing.T) { runQueueSuite(t, serverURL(t), 1) }

// TestClusterConformance runs both suites on a 3-node cluster with
// replicas=3.
func TestClusterConformance(t *testing.T) {
	c := startCluster(t)
	t.Run("Store", func(t *testing.T) { runStoreSuite(t, c.URL(), 3) })
	t.Run("Queue", func(t *testing.T) { runQueueSuite(t, c.URL(), 3) })
}

// TestWatchAcrossConnections: a Watch on one connection wakes on an Update
// made through another (as a long-poll on api process A is woken by a
// worker in process B).
func TestWatchAcrossConnections(t *testing.T) {
	base := serverURL(t)
	prefix := randomPrefix()
	t.Cleanup(func() { cleanup(t, base, prefix) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, _ := url.Parse(withParams(base, "prefix", prefix))
	cfg, err := natsjs.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *natsjs.Store {
		nc, err := nats.Connect(cfg.Servers[0])
		if err != nil {
			t.Fatal(err)
		}
		s, err := natsjs.OpenStore(ctx, nc, cfg, nil, nc.Close)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	now := time.Now().UTC()
	op := &operation.Operation{ID: opstoretest.NewID(), Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	if _, _, err := b.Create(ctx, op, nil); err != nil {
		t.Fatal(err)
	}
	ch, stop, err := a.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	got, err := a.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Status = operation.Running
	if err := b.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch on one connection not woken by an Update on another")
	}
	if cur, err := a.Get(ctx, op.ID); err != nil || cur.Status != operation.Running {
		t.Fatalf("Get after the wake = %v, %v", cur, err)
	}
}

// TestKilledWorkerRedelivered: a delivery whose holder's connection dies
// without settling it (a killed worker: no Nak on Close) is delivered
// again after the ack wait.
func TestKilledWorkerRedelivered(t *testing.T) {
	base := serverURL(t)
	prefix := randomPrefix()
	t.Cleanup(func() { cleanup(t, base, prefix) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qurl := withParams(base, "prefix", prefix, "ackWait", testAckWait.String())
	e, err := engine.Open(ctx, qurl)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	q1, err := e.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}

	u, _ := url.Parse(qurl)
	cfg, _ := natsjs.ParseURL(u)
	nc, err := nats.Connect(cfg.Servers[0])
	if err != nil {
		t.Fatal(err)
	}
	worker, err := natsjs.OpenQueue(ctx, nc, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q1.Enqueue(ctx, qdriver.Message{ID: "job", Body: []byte("work")}); err != nil {
		t.Fatal(err)
	}
	ds, err := worker.Receive(ctx, 1, time.Hour)
	if err != nil || len(ds) != 1 || ds[0].Attempt() != 1 {
		t.Fatalf("worker Receive = %d, %v", len(ds), err)
	}
	killed := time.Now()
	nc.Close() // the worker dies: no heartbeat, no Nak
	defer worker.Close()

	rctx, rcancel := context.WithTimeout(ctx, testAckWait+5*time.Second)
	defer rcancel()
	ds, err = q1.Receive(rctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive after the worker died = %d, %v", len(ds), err)
	}
	if el := time.Since(killed); el < testAckWait/2 {
		t.Fatalf("redelivered %v after the kill, before the ack wait %v", el, testAckWait)
	}
	if m := ds[0].Message(); m.ID != "job" || string(m.Body) != "work" || ds[0].Attempt() != 2 {
		t.Fatalf("redelivered %s %q attempt %d; want job, work, 2", m.ID, m.Body, ds[0].Attempt())
	}
	if err := ds[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

// A Create that claimed an idempotency key and then died (or timed out
// with its operation's write still in flight) leaves a claim without an
// operation. A retry with the key must not make a second operation that
// the key does not lead to: after the grace it adopts the claimed id, so
// that the late write and the retry's are the same operation.
func TestDeadClaimAdopted(t *testing.T) {
	base := serverURL(t)
	prefix := randomPrefix()
	defer cleanup(t, base, prefix)
	ctx := context.Background()
	e, err := engine.Open(ctx, withParams(base, "prefix", prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := e.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(base)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, prefix+"_ops")
	if err != nil {
		t.Fatal(err)
	}
	// The dead Create's claim, older than the grace.
	claim := fmt.Sprintf(`{"id":"dead-create-id","at":%q}`, time.Now().Add(-time.Minute).Format(time.RFC3339Nano))
	if _, err := kv.Create(ctx, "k.retry-key", []byte(claim)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	op := &operation.Operation{ID: "retry-id", Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now, IdempotencyKey: "retry-key"}
	stored, created, err := st.Create(ctx, op, &operation.Request{Method: "POST"})
	if err != nil || !created || stored.ID != "dead-create-id" {
		t.Fatalf("Create over a dead claim: %+v created=%v %v, want the claimed id, created", stored, created, err)
	}
	if _, err := st.Get(ctx, "retry-id"); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("the retry's own id was stored too: %v", err)
	}
	// The dead Create's late write of its operation now fails: there is
	// one operation, the one the key leads to.
	if _, err := kv.Create(ctx, "o.dead-create-id", []byte(`{"id":"dead-create-id"}`)); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("the dead Create's late write of its operation: %v, want it refused as existing", err)
	}
	again, created, err := st.Create(ctx, op.Clone(), nil)
	if err != nil || created || again.ID != "dead-create-id" {
		t.Fatalf("replay: %+v created=%v %v, want the adopted operation", again, created, err)
	}
	ops, _, err := st.List(ctx, opstore.ListOptions{})
	if err != nil || len(ops) != 1 {
		t.Fatalf("stored operations: %d %v, want 1", len(ops), err)
	}
}

// Processes of a deployment start together: on a fresh cluster, four
// stores and four queues opened at once (as two apis and two workers do)
// all open, although they race to create the R3 bucket and streams. Each
// opens through an engine of its own, as a process does: the same URL
// would return this process's one engine, which opens each port once, so
// each URL has a fragment of its own (the nats engine reads none).
func TestConcurrentFirstOpen(t *testing.T) {
	c := startCluster(t)
	prefix := randomPrefix()
	defer cleanup(t, c.URL(), prefix)
	u := withParams(c.URL(), "prefix", prefix, "replicas", "3")
	ctx := context.Background()
	errs := make(chan error, 8)
	open := func(process string, port func(*engine.Engine) error) {
		e, err := engine.Open(ctx, u+"#"+process)
		if err == nil {
			err = errors.Join(port(e), e.Close())
		}
		errs <- err
	}
	for i := range 4 {
		go open(fmt.Sprint("store-", i), func(e *engine.Engine) error { _, err := e.Store(ctx); return err })
		go open(fmt.Sprint("queue-", i), func(e *engine.Engine) error { _, err := e.Queue(ctx); return err })
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent first open: %v", err)
		}
	}
}

// TestOwnerIndexEntries checks the owner index keys in the bucket: one per
// stored operation with an owner, the id's own entry for an adopted
// claim, none left by a Create refused as existing, none after
// DeleteExpired deleted the operation.
func TestOwnerIndexEntries(t *testing.T) {
	base := serverURL(t)
	prefix := randomPrefix()
	defer cleanup(t, base, prefix)
	ctx := context.Background()
	e, err := engine.Open(ctx, withParams(base, "prefix", prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := e.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(base)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, prefix+"_ops")
	if err != nil {
		t.Fatal(err)
	}
	entries := func() []string {
		t.Helper()
		kl, err := kv.ListKeysFiltered(ctx, "w.>")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range kl.Keys() {
			keys = append(keys, k)
		}
		return keys
	}
	t0 := time.Now()
	var ids []string
	for i := range 9 {
		op := &operation.Operation{ID: opstoretest.NewID(), Route: "echo", Status: operation.Pending, Owner: []string{"alice", "bob.b *", ""}[i%3]}
		if i%2 == 0 {
			op.ExpiresAt = t0.Add(-time.Minute)
		}
		if _, _, err := st.Create(ctx, op, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.ID)
	}
	if got := entries(); len(got) != 6 {
		t.Fatalf("owner index entries = %v, want 6", got)
	}
	// Another owner's Create of an existing id leaves no entry.
	dup := &operation.Operation{ID: ids[0], Route: "echo", Status: operation.Pending, Owner: "mallory"}
	if _, _, err := st.Create(ctx, dup, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of an existing id = %v, want ErrExists", err)
	}
	if got := entries(); len(got) != 6 {
		t.Fatalf("after a refused Create, owner index entries = %v, want 6", got)
	}
	// Creates of one id by several owners at once: one wins, and the
	// losers (which may have put their entries before their operation
	// write failed) leave none.
	for range 10 {
		id := opstoretest.NewID()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for o := range 4 {
			wg.Go(func() {
				<-start
				op := &operation.Operation{ID: id, Route: "echo", Status: operation.Pending, Owner: fmt.Sprint("racer-", o)}
				if _, _, err := st.Create(ctx, op, nil); err != nil && !errors.Is(err, opstore.ErrExists) {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		ids = append(ids, id)
	}
	if got := entries(); len(got) != 16 {
		t.Fatalf("after racing Creates, owner index entries = %v, want 16 (6 and one per raced id)", got)
	}
	// Updates neither add nor move entries.
	s := opstore.New(st)
	for _, id := range ids {
		if _, err := s.Transition(ctx, id, func(o *operation.Operation) error { o.Owner = "mallory"; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if got := entries(); len(got) != 16 {
		t.Fatalf("after updates, owner index entries = %v, want 16", got)
	}
	// i = 0, 2, 4, 6, 8 expire; of them 0, 4, 6 have an owner.
	if ops, err := s.DeleteExpired(ctx, t0, 100); err != nil || len(ops) != 5 {
		t.Fatalf("DeleteExpired = %d, %v; want 5", len(ops), err)
	}
	if got := entries(); len(got) != 13 {
		t.Fatalf("after DeleteExpired, owner index entries = %v, want 13", got)
	}
}

// BenchmarkListOwner: a page of one owner's operations among 100 and
// 10,000 of other owners' (see opstoretest.BenchmarkListOwner).
func BenchmarkListOwner(b *testing.B) {
	base := os.Getenv("ARR_TEST_NATS_URL")
	if base == "" {
		if os.Getenv("CI") == "" {
			b.Skip("set ARR_TEST_NATS_URL (e.g. nats://127.0.0.1:4222) to run against a NATS server")
		}
		base = "nats://127.0.0.1:4222"
	}
	opstoretest.BenchmarkListOwner(b, func(b *testing.B) opdriver.Store {
		h := &storeHarness{t: b, base: base, prefix: randomPrefix(), replicas: 1}
		b.Cleanup(h.Close)
		st, err := h.OpenStore(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		return st
	})
}
