package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/enginetest"
	"github.com/arrhq/arr/internal/pgtest"
	"github.com/arrhq/arr/operation"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/queue/queuetest"
)

// ---- conformance ----

// storeHarness opens the store and the queue by URL, as arr's
// configuration does; they share one DB.
type storeHarness struct {
	url string
	r   enginetest.Reopener
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	return h.r.Store(ctx, h.url)
}

func (h *storeHarness) OpenAtomic(ctx context.Context) (engine.Atomic, qdriver.Queue, error) {
	return h.r.Atomic(ctx)
}

func (h *storeHarness) Close() { h.r.Close() } // pgtest drops the schema

func TestStoreConformance(t *testing.T) {
	opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
		return &storeHarness{url: pgtest.URL(t)}, nil
	})
}

type queueHarness struct {
	url string
	r   enginetest.Reopener
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	return h.r.Queue(ctx, fmt.Sprintf("%s&maxDeliveries=%d", h.url, maxDeliveries))
}

func (h *queueHarness) Close() { h.r.Close() }

func TestQueueConformance(t *testing.T) {
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		return &queueHarness{url: pgtest.URL(t)}, nil
	})
}

// ---- helpers ----

func openT(t *testing.T, url string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testOp() *operation.Operation {
	now := time.Now().UTC()
	return &operation.Operation{ID: opstoretest.NewID(), Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
}

func expectWake(t *testing.T, what string, ch <-chan struct{}, within time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("%s: no notification within %v", what, within)
	}
}

// ---- URL ----

func TestParseURL(t *testing.T) {
	u, _ := url.Parse("postgresql://u:pw@h:5433/db?sslmode=disable&schema=s1&maxDeliveries=4&defaultLease=10s&pollInterval=250ms&pool_max_conns=3")
	c, err := parseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if c.schema != "s1" || c.maxDeliveries != 4 || c.defaultLease != 10*time.Second || c.pollInterval != 250*time.Millisecond {
		t.Fatalf("parsed %+v", c)
	}
	if c.connString != "postgres://u:pw@h:5433/db?pool_max_conns=3&sslmode=disable" {
		t.Fatalf("connString = %q: arr's parameters must be stripped", c.connString)
	}
	u2, _ := url.Parse("postgres://u:pw@h:5433/db?pool_max_conns=3&maxDeliveries=9&schema=s1&sslmode=disable")
	c2, _ := parseURL(u2)
	if c2.key != c.key {
		t.Fatalf("the same database and schema with other queue parameters gave keys %q and %q", c.key, c2.key)
	}
	u3, _ := url.Parse("postgres://h/db")
	if c3, _ := parseURL(u3); c3.schema != DefaultSchema || c3.maxDeliveries != 0 || c3.defaultLease != DefaultLease {
		t.Fatalf("defaults: %+v", c3)
	}
	for _, bad := range []string{"schema=", "maxDeliveries=-1", "maxDeliveries=x", "defaultLease=0s", "pollInterval=nope", "schema=" + strings.Repeat("x", 64)} {
		u, _ := url.Parse("postgres://h/db?" + bad)
		if _, err := parseURL(u); err == nil {
			t.Errorf("parseURL(%s) succeeded", bad)
		}
	}
	if got := channelName(strings.Repeat("y", 63), "queue"); len(got) > 63 {
		t.Fatalf("channel name %q is longer than 63 bytes", got)
	}
}

// ---- sharing, migrations ----

func TestURLSharesOneDB(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	se, err := engine.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	st, err := se.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := engine.Open(ctx, strings.Replace(u, "postgres://", "postgresql://", 1)+"&maxDeliveries=3")
	if err != nil {
		t.Fatal(err)
	}
	q, err := qe.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sdb, qdb := st.Driver().(*Store).db, q.Driver().(*Queue).db
	if sdb != qdb {
		t.Fatalf("a store and a queue opened on one URL use two pools")
	}
	if got := q.Driver().(*Queue).maxDeliveries; got != 3 {
		t.Fatalf("maxDeliveries = %d, want 3", got)
	}
	op := testOp()
	if _, created, err := se.Atomic().SubmitAtomic(ctx, op, nil, queue.Message{ID: op.ID, Body: []byte("b")}); err != nil || !created {
		t.Fatalf("SubmitAtomic = %v, %v", created, err)
	}
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	// The queue keeps the DB open.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ds, err := q.Receive(rctx, 1, time.Minute)
	if err != nil || len(ds) != 1 || ds[0].Message().ID != op.ID {
		t.Fatalf("Receive after the store closed = %v, %v", ds, err)
	}
	if err := qe.Close(); err != nil {
		t.Fatal(err)
	}
	registry.mu.Lock()
	_, still := registry.dbs[sdb.cfg.key]
	registry.mu.Unlock()
	if still || !sdb.isClosed() {
		t.Fatalf("the DB outlived its last handle")
	}
}

func TestConcurrentMigrations(t *testing.T) {
	u := pgtest.URL(t)
	const n = 8
	var wg sync.WaitGroup
	dbs := make([]*DB, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dbs[i], errs[i] = Open(ctx, u)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer dbs[i].Close()
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var count, latest int
	if err := dbs[0].pool.QueryRow(context.Background(),
		"SELECT count(*), max(version) FROM "+dbs[0].ident+".arr_migrations").Scan(&count, &latest); err != nil {
		t.Fatal(err)
	}
	if count != len(ms) || latest != ms[len(ms)-1].version {
		t.Fatalf("arr_migrations has %d rows up to %d, want %d up to %d", count, latest, len(ms), ms[len(ms)-1].version)
	}
	// Every DB works.
	for i, db := range dbs {
		s := db.Store()
		if _, _, err := s.Create(context.Background(), testOp(), nil); err != nil {
			t.Fatalf("Create through DB %d: %v", i, err)
		}
		s.Close()
	}
	// A schema at a migration this code does not know is refused.
	if _, err := dbs[0].pool.Exec(context.Background(), "INSERT INTO "+dbs[0].ident+".arr_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(context.Background(), u); err == nil {
		db.Close()
		t.Fatalf("Open of a schema from a newer arr succeeded")
	}
}

// ---- cross-process behaviour (two DBs: two pools, two listeners) ----

func TestWatchAcrossDBs(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	a, b := openT(t, u).Store(), openT(t, u).Store()
	defer a.Close()
	defer b.Close()
	if a.db == b.db {
		t.Fatal("Open shared a DB")
	}
	op := testOp()
	ch, stop, err := a.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stored, _, err := b.Create(ctx, op, nil)
	if err != nil {
		t.Fatal(err)
	}
	expectWake(t, "creation in another DB", ch, 5*time.Second)
	stored.Message = "hello"
	if err := b.Update(ctx, stored); err != nil {
		t.Fatal(err)
	}
	expectWake(t, "update in another DB", ch, 5*time.Second)
	if got, err := a.Get(ctx, op.ID); err != nil || got.Message != "hello" {
		t.Fatalf("Get through the other DB = %v, %v", got, err)
	}

	// A Receive blocked in one DB is woken by an Enqueue in the other.
	qa, qb := a.db.Queue(), b.db.Queue()
	defer qa.Close()
	defer qb.Close()
	got := make(chan error, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		ds, err := qa.Receive(rctx, 1, time.Minute)
		if err == nil && (len(ds) != 1 || ds[0].Message().ID != "x") {
			err = fmt.Errorf("received %d deliveries", len(ds))
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := qb.Enqueue(ctx, qdriver.Message{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// Well under the fallback poll: woken by the NOTIFY.
	if el := time.Since(start); el > DefaultPollInterval/2 {
		t.Fatalf("Receive woke %v after the Enqueue in another DB", el)
	}
}

func TestListenerReconnectWakesWatchers(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	s := openT(t, u).Store()
	defer s.Close()
	op, _, err := s.Create(ctx, testOp(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, stop, err := s.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	pid := s.db.lis.backendPID()
	if pid == 0 {
		t.Fatal("no listener backend")
	}
	var ok bool
	if err := s.db.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminating the listener's backend: %v, %v", ok, err)
	}
	// Woken on reconnect, with no change: the watcher reads again.
	expectWake(t, "listener reconnect", ch, 10*time.Second)
	if s.db.lis.backendPID() == pid {
		t.Fatal("listener did not reconnect")
	}
	// And notifications flow again.
	op.Message = "after reconnect"
	if err := s.Update(ctx, op); err != nil {
		t.Fatal(err)
	}
	expectWake(t, "update after reconnect", ch, 5*time.Second)
}

// TestKilledWorkerRedelivered: a worker process dies holding a lease (its
// pool closes without settling or releasing); another process gets the
// message once the lease ends, and not before.
func TestKilledWorkerRedelivered(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	dead := openT(t, u)
	qd := dead.Queue()
	if err := qd.Enqueue(ctx, qdriver.Message{ID: "job", Body: []byte("work")}); err != nil {
		t.Fatal(err)
	}
	const lease = 1500 * time.Millisecond
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ds, err := qd.Receive(rctx, 1, lease)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %v, %v", ds, err)
	}
	leasedAt := time.Now()
	// kill -9: connections drop, nothing is settled or released.
	dead.lis.stop()
	dead.pool.Close()

	live := openT(t, u).Queue()
	defer live.Close()
	rctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := live.Receive(rctx, 1, time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("Receive in the surviving process = %v, %v", got, err)
	}
	if el := time.Since(leasedAt); el < lease-50*time.Millisecond {
		t.Fatalf("redelivered %v after the lease began, before the %v lease ended", el, lease)
	} else if el > lease+3*time.Second {
		t.Fatalf("redelivered only %v after the lease began (lease %v)", el, lease)
	}
	if d := got[0]; d.Message().ID != "job" || string(d.Message().Body) != "work" || d.Attempt() != 2 {
		t.Fatalf("redelivered %s %q attempt %d", d.Message().ID, d.Message().Body, d.Attempt())
	}
	if err := got[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

// ---- SubmitTx ----

func TestSubmitTx(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	db := openT(t, u)
	s, q := db.Store(), db.Queue()
	defer s.Close()
	defer q.Close()
	if _, err := db.Pool().Exec(ctx, "CREATE TABLE "+db.ident+".orders (id text PRIMARY KEY, op text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	submit := func(commit bool) *operation.Operation {
		t.Helper()
		op := testOp()
		op.IdempotencyKey = "order-" + op.ID
		ch, stop, err := s.Watch(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		tx, err := db.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO "+db.ident+".orders (id, op) VALUES ($1, $2)", "order-"+op.ID, op.ID); err != nil {
			t.Fatal(err)
		}
		stored, created, err := s.SubmitTx(ctx, tx, op, &operation.Request{Method: "POST", Path: "/v1/orders", Body: []byte("o")},
			qdriver.Message{ID: op.ID, Body: []byte("msg " + op.ID)})
		if err != nil || !created || stored.Version != 1 {
			t.Fatalf("SubmitTx = %v, %v, %v", stored, created, err)
		}
		// Inside the transaction, the key is held.
		dup := testOp()
		dup.IdempotencyKey = op.IdempotencyKey
		if held, created, err := s.SubmitTx(ctx, tx, dup, nil, qdriver.Message{ID: dup.ID}); err != nil || created || held.ID != op.ID {
			t.Fatalf("second SubmitTx with the key in the same tx = %v, %v, %v", held, created, err)
		}
		// Nothing is visible outside it yet, and no one is woken.
		if _, err := s.Get(ctx, op.ID); !errors.Is(err, opdriver.ErrNotFound) {
			t.Fatalf("Get before commit = %v, want ErrNotFound", err)
		}
		select {
		case <-ch:
			t.Fatalf("watcher woken before commit")
		case <-time.After(200 * time.Millisecond):
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			expectWake(t, "commit of SubmitTx", ch, 5*time.Second)
		} else {
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
				t.Fatalf("watcher woken by a rolled-back SubmitTx")
			case <-time.After(300 * time.Millisecond):
			}
		}
		return op
	}

	rolled := submit(false)
	if _, err := s.Get(ctx, rolled.ID); !errors.Is(err, opdriver.ErrNotFound) {
		t.Fatalf("Get after rollback = %v, want ErrNotFound", err)
	}
	if _, err := s.GetRequest(ctx, rolled.ID); !errors.Is(err, opdriver.ErrNotFound) {
		t.Fatalf("GetRequest after rollback = %v, want ErrNotFound", err)
	}
	var orders int
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM "+db.ident+".orders").Scan(&orders); err != nil || orders != 0 {
		t.Fatalf("orders after rollback = %d, %v", orders, err)
	}
	if st, err := q.Stats(ctx); err != nil || st != (qdriver.Stats{}) {
		t.Fatalf("queue after rollback = %+v, %v", st, err)
	}
	// The key is free after the rollback.
	again := testOp()
	again.IdempotencyKey = rolled.IdempotencyKey
	if _, created, err := s.Create(ctx, again, nil); err != nil || !created {
		t.Fatalf("Create with the key of a rolled-back SubmitTx = %v, %v", created, err)
	}

	// A blocked Receive gets the committed message.
	recv := make(chan []qdriver.Delivery, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		ds, _ := q.Receive(rctx, 10, time.Minute)
		recv <- ds
	}()
	committed := submit(true)
	committedAt := time.Now()
	ds := <-recv
	if el := time.Since(committedAt); el > DefaultPollInterval/2 {
		t.Fatalf("Receive woke %v after the commit: not by its NOTIFY", el)
	}
	if len(ds) != 1 || ds[0].Message().ID != committed.ID || string(ds[0].Message().Body) != "msg "+committed.ID {
		t.Fatalf("received %d deliveries after the commit, want %s", len(ds), committed.ID)
	}
	if err := ds[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, committed.ID)
	if err != nil || got.IdempotencyKey != committed.IdempotencyKey {
		t.Fatalf("Get after commit = %v, %v", got, err)
	}
	if req, err := s.GetRequest(ctx, committed.ID); err != nil || string(req.Body) != "o" {
		t.Fatalf("GetRequest after commit = %v, %v", req, err)
	}
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM "+db.ident+".orders").Scan(&orders); err != nil || orders != 1 {
		t.Fatalf("orders after commit = %d, %v", orders, err)
	}

	// An existing id is ErrExists and leaves the caller's transaction usable.
	err = pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		dup := testOp()
		dup.ID = committed.ID
		if _, _, err := s.SubmitTx(ctx, tx, dup, nil, qdriver.Message{ID: dup.ID}); !errors.Is(err, opdriver.ErrExists) {
			return fmt.Errorf("SubmitTx of an existing id = %v, want ErrExists", err)
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+db.ident+".orders (id, op) VALUES ('after-conflict', 'x')")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// URLs of different schemas are different engines, whose one-step writes
// enqueue on their own schema's queue only.
func TestAtomicStaysInItsSchema(t *testing.T) {
	ctx := context.Background()
	ea, err := engine.Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ea.Close()
	eb, err := engine.Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()
	if ea == eb {
		t.Fatal("two schemas opened one engine")
	}
	op := testOp()
	if _, _, err := ea.Atomic().SubmitAtomic(ctx, op, nil, qdriver.Message{ID: op.ID}); err != nil {
		t.Fatal(err)
	}
	qb, err := eb.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := qb.Stats(ctx); err != nil || st.Ready != 0 {
		t.Fatalf("the other schema's queue: %+v, %v; want empty", st, err)
	}
	qa, err := ea.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := qa.Stats(ctx); err != nil || st.Ready != 1 {
		t.Fatalf("its own schema's queue: %+v, %v; want the message", st, err)
	}
}

// TestOwnerMigration opens a schema that the build before owners made
// (migration 0001 only, operations in it, one of them with an owner in its
// doc, as a build that had Operation.Owner without the column wrote):
// Open adds the owner column and index, keeps that owner, and the owner
// filter and immutability work on the old rows and new ones alike.
func TestOwnerMigration(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	ident := pgx.Identifier{q.Get("schema")}.Sanitize()
	q.Del("schema")
	pu.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ms, err := migrations()
	if err != nil || ms[0].version != 1 {
		t.Fatalf("migrations: %v, %v", ms, err)
	}
	owned, plain := opstoretest.NewID(), opstoretest.NewID()
	for _, sql := range []string{
		`CREATE TABLE ` + ident + `.arr_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`SET search_path TO ` + ident,
		ms[0].sql,
		`INSERT INTO arr_migrations (version, name) VALUES (1, 'init')`,
		`INSERT INTO arr_operations (id, version, status, doc) VALUES
			('` + owned + `', 3, 'running', '{"id":"` + owned + `","route":"echo","status":"running","owner":"alice","tenant":"t1","version":0}'),
			('` + plain + `', 1, 'pending', '{"id":"` + plain + `","route":"echo","status":"pending","version":0}')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	db, err := Open(ctx, u)
	if err != nil {
		t.Fatalf("Open of a schema at migration 1: %v", err)
	}
	defer db.Close()
	s := db.Store()
	defer s.Close()
	get := func(id string) *operation.Operation {
		t.Helper()
		op, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	if op := get(owned); op.Owner != "alice" || op.Tenant != "t1" || op.Version != 3 {
		t.Fatalf("migrated operation: owner %q tenant %q version %d; want alice, t1, 3", op.Owner, op.Tenant, op.Version)
	}
	if op := get(plain); op.Owner != "" {
		t.Fatalf("migrated operation without an owner has %q", op.Owner)
	}
	fresh := testOp()
	fresh.Owner = "alice"
	if _, _, err := s.Create(ctx, fresh, nil); err != nil {
		t.Fatal(err)
	}
	list := func(owner string) []string {
		t.Helper()
		ops, _, err := s.List(ctx, opdriver.ListOptions{Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, op := range ops {
			ids = append(ids, op.ID)
		}
		return ids
	}
	if got := list("alice"); len(got) != 2 || got[0] != owned || got[1] != fresh.ID {
		t.Fatalf("alice's operations after the migration = %v, want %s and %s", got, owned, fresh.ID)
	}
	// An update of a migrated row keeps its owner; the owner is no longer
	// in doc.
	op := get(owned)
	op.Owner = "mallory"
	if err := s.Update(ctx, op); err != nil {
		t.Fatal(err)
	}
	if got := get(owned); got.Owner != "alice" {
		t.Fatalf("owner after an update = %q, want alice", got.Owner)
	}
	var inDoc *string
	if err := conn.QueryRow(ctx, "SELECT doc->>'owner' FROM arr_operations WHERE id = $1", owned).Scan(&inDoc); err != nil || inDoc != nil {
		t.Fatalf("doc's owner after an update = %v, %v; want none (the column holds it)", inDoc, err)
	}
	if got := list("mallory"); len(got) != 0 {
		t.Fatalf("mallory's operations = %v, want none", got)
	}
	// The List query of an owner uses the index (on a table this small
	// the planner may prefer a scan; forbid it to check the index serves).
	var plan string
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN SELECT id FROM arr_operations WHERE owner = $1 AND id > '' ORDER BY id LIMIT 11", []byte("alice"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan = strings.Join(lines, "\n")
	if !strings.Contains(plan, "arr_operations_owner_id") {
		t.Fatalf("an owner's List plan does not use the owner index: %s", plan)
	}
}

// BenchmarkListOwner: a page of one owner's operations among 100 and
// 10,000 of other owners' (see opstoretest.BenchmarkListOwner).
func BenchmarkListOwner(b *testing.B) {
	opstoretest.BenchmarkListOwner(b, func(b *testing.B) opdriver.Store {
		db, err := Open(context.Background(), pgtest.URL(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db.Store()
	})
}

// TestCallbackDueMigration opens a schema that the build before the
// outbox index made (migrations 0001 and 0002, operations in it, one of
// them owing a callback in its doc, as a build that had
// Operation.CallbackDueAt without the column wrote): Open adds the
// callback_due column and index, indexes that operation, and every write
// keeps the old rows and new ones in the index alike.
func TestCallbackDueMigration(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	ident := pgx.Identifier{q.Get("schema")}.Sanitize()
	q.Del("schema")
	pu.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ms, err := migrations()
	if err != nil || len(ms) < 3 || ms[0].version != 1 || ms[1].version != 2 || ms[2].version != 3 {
		t.Fatalf("migrations: %v, %v", ms, err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	owing, plain := opstoretest.NewID(), opstoretest.NewID()
	due := t0.Add(-time.Minute).Add(123456 * time.Nanosecond) // below the microsecond
	owingDoc := `{"id":"` + owing + `","route":"echo","status":"succeeded","version":0,` +
		`"callbacks":[{"id":"msg_1","url":"https://h.example/","event":"succeeded","secret":"route:echo","createdAt":"` +
		t0.Add(-2*time.Minute).Format(time.RFC3339Nano) + `","state":"pending","attempts":0,"nextAt":"` + due.Format(time.RFC3339Nano) + `"}],` +
		`"callbackDueAt":"` + due.Format(time.RFC3339Nano) + `"}`
	for _, sql := range []string{
		`CREATE TABLE ` + ident + `.arr_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`SET search_path TO ` + ident,
		ms[0].sql,
		ms[1].sql,
		`INSERT INTO arr_migrations (version, name) VALUES (1, 'init'), (2, 'owner')`,
		`INSERT INTO arr_operations (id, version, status, doc) VALUES
			('` + owing + `', 2, 'succeeded', '` + owingDoc + `'),
			('` + plain + `', 1, 'pending', '{"id":"` + plain + `","route":"echo","status":"pending","version":0}')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	db, err := Open(ctx, u)
	if err != nil {
		t.Fatalf("Open of a schema at migration 2: %v", err)
	}
	defer db.Close()
	s := db.Store()
	defer s.Close()
	dueIDs := func(at time.Time) []string {
		t.Helper()
		ops, err := s.DueCallbacks(ctx, at, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, op := range ops {
			ids = append(ids, op.ID)
		}
		return ids
	}
	var latest int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM arr_migrations").Scan(&latest); err != nil || latest != ms[len(ms)-1].version {
		t.Fatalf("arr_migrations after Open: latest %d, %v; want %d", latest, err, ms[len(ms)-1].version)
	}
	if got := dueIDs(t0); len(got) != 1 || got[0] != owing {
		t.Fatalf("due after the migration = %v, want %s", got, owing)
	}
	if got := dueIDs(due.Add(-time.Nanosecond)); len(got) != 0 {
		t.Fatalf("due a nanosecond before the migrated row's time = %v, want none", got)
	}
	op, err := s.Get(ctx, owing)
	if err != nil {
		t.Fatal(err)
	}
	if !op.CallbackDueAt.Equal(due) || len(op.Callbacks) != 1 || op.Version != 2 {
		t.Fatalf("migrated operation: due %s, callbacks %+v, version %d", op.CallbackDueAt, op.Callbacks, op.Version)
	}
	// The old rows follow the writes: the owing one delivers, the plain
	// one comes to owe one.
	op.Callbacks[0].State, op.Callbacks[0].NextAt, op.CallbackDueAt = operation.CallbackDelivered, time.Time{}, time.Time{}
	if err := s.Update(ctx, op); err != nil {
		t.Fatal(err)
	}
	p, err := s.Get(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	p.CallbackDueAt = t0.Add(-time.Second)
	if err := s.UpdateLazy(ctx, p); err != nil {
		t.Fatal(err)
	}
	fresh := testOp()
	fresh.CallbackDueAt = t0.Add(-2 * time.Second)
	if _, _, err := s.Create(ctx, fresh, nil); err != nil {
		t.Fatal(err)
	}
	if got := dueIDs(t0); len(got) != 2 || got[0] != fresh.ID || got[1] != plain {
		t.Fatalf("due after the writes = %v, want %s then %s", got, fresh.ID, plain)
	}
	var nulls int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM arr_operations WHERE id = $1 AND callback_due IS NULL", owing).Scan(&nulls); err != nil || nulls != 1 {
		t.Fatalf("callback_due of a delivered operation: %d NULL rows, %v; want NULL", nulls, err)
	}
	// DueCallbacks' query uses the index (forbidding the scan a table
	// this small may get, to check the index serves).
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN "+db.sql.dueCallbacks, pgx.NamedArgs{"now": t0, "limit": 10})
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "arr_operations_callback_due") {
		t.Fatalf("DueCallbacks' plan does not use the callback_due index: %s", plan)
	}
}

// TestDueCallbacksBelowTheMicrosecond: the column holds microseconds, the
// operations nanoseconds; an operation is never returned before its exact
// CallbackDueAt, operations due within one microsecond come in the order
// of their exact times, and one not yet due within the microsecond of now
// takes no place in the limit from one due at that microsecond.
func TestDueCallbacksBelowTheMicrosecond(t *testing.T) {
	ctx := context.Background()
	db := openT(t, pgtest.URL(t))
	s := db.Store()
	defer s.Close()
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
	late, early, whole := testOp(), testOp(), testOp()
	late.CallbackDueAt = base.Add(700 * time.Nanosecond)
	early.CallbackDueAt = base.Add(300 * time.Nanosecond)
	whole.CallbackDueAt = base
	create := func(op *operation.Operation) {
		t.Helper()
		if _, _, err := s.Create(ctx, op, nil); err != nil {
			t.Fatal(err)
		}
	}
	// At base + 500ns, with a limit of 1: whole is due and late (created
	// first, in the same microsecond) is not; late must not take the page.
	create(late)
	create(whole)
	if ops, err := s.DueCallbacks(ctx, base.Add(500*time.Nanosecond), 1); err != nil || len(ops) != 1 || ops[0].ID != whole.ID {
		t.Fatalf("DueCallbacks(limit 1) = %v, %v; want %s", ops, err, whole.ID)
	}
	create(early)
	for _, c := range []struct {
		at    time.Time
		want  []string
		maybe bool // want, or nothing: due less than a microsecond ago
	}{
		{base.Add(-time.Nanosecond), nil, false},
		{base.Add(500 * time.Nanosecond), []string{whole.ID, early.ID}, true},
		{base.Add(time.Microsecond), []string{whole.ID, early.ID, late.ID}, false},
	} {
		ops, err := s.DueCallbacks(ctx, c.at, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, op := range ops {
			if op.CallbackDueAt.After(c.at) {
				t.Fatalf("DueCallbacks(%s) returned %s due at %s", c.at, op.ID, op.CallbackDueAt)
			}
			got = append(got, op.ID)
		}
		if !slices.Equal(got, c.want) && !(c.maybe && slices.Equal(got, c.want[:len(c.want)-1])) {
			t.Fatalf("DueCallbacks(%s) = %v, want %v", c.at, got, c.want)
		}
	}
}
