package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/natsjs"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
)

// outboxFixture is a store opened by URL on a fresh prefix, its bucket
// and stream seen directly, for the tests of the callback index entries.
type outboxFixture struct {
	t      *testing.T
	ctx    context.Context
	st     opdriver.Store
	ob     opdriver.Outbox
	kv     jetstream.KeyValue
	stream jetstream.Stream
	prefix string
}

func newOutboxFixture(t *testing.T) *outboxFixture {
	t.Helper()
	base := serverURL(t)
	prefix := randomPrefix()
	t.Cleanup(func() { cleanup(t, base, prefix) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e, err := engine.Open(ctx, withParams(base, "prefix", prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	st, err := e.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ob, ok := st.Driver().(opdriver.Outbox)
	if !ok {
		t.Fatalf("%T does not implement driver.Outbox", st.Driver())
	}
	nc, err := nats.Connect(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, prefix+"_ops")
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "KV_"+prefix+"_ops")
	if err != nil {
		t.Fatal(err)
	}
	return &outboxFixture{t: t, ctx: ctx, st: st.Driver(), ob: ob, kv: kv, stream: stream, prefix: prefix}
}

// entries returns the callback index entries, sorted, checking that the
// stream holds no message (a delete marker) for any other c. subject.
func (f *outboxFixture) entries() []string {
	f.t.Helper()
	kl, err := f.kv.ListKeysFiltered(f.ctx, "c.>")
	if err != nil {
		f.t.Fatal(err)
	}
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	info, err := f.stream.Info(f.ctx, jetstream.WithSubjectFilter("$KV."+f.prefix+"_ops.c.>"))
	if err != nil {
		f.t.Fatal(err)
	}
	if len(info.State.Subjects) != len(keys) {
		f.t.Fatalf("the stream holds %d c. subjects %v, the bucket %d live keys %v: index entries are purged, never left as markers",
			len(info.State.Subjects), info.State.Subjects, len(keys), keys)
	}
	return keys
}

func (f *outboxFixture) expectEntries(what string, want ...string) {
	f.t.Helper()
	for i, id := range want {
		want[i] = "c." + id
	}
	slices.Sort(want)
	if got := f.entries(); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		f.t.Fatalf("%s: index entries %v, want %v", what, got, want)
	}
}

func (f *outboxFixture) due(at time.Time) []string {
	f.t.Helper()
	ops, err := f.ob.DueCallbacks(f.ctx, at, 100)
	if err != nil {
		f.t.Fatalf("DueCallbacks: %v", err)
	}
	var ids []string
	for _, op := range ops {
		ids = append(ids, op.ID)
	}
	return ids
}

func (f *outboxFixture) create(owesAt time.Time) *operation.Operation {
	f.t.Helper()
	now := time.Now().UTC()
	op := &operation.Operation{ID: opstoretest.NewID(), Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	if !owesAt.IsZero() {
		owe(op, owesAt)
	}
	stored, _, err := f.st.Create(f.ctx, op, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return stored
}

func owe(op *operation.Operation, at time.Time) {
	op.Callbacks = []operation.Callback{{ID: "msg_" + op.ID, URL: "https://h.example/", Event: "succeeded", Secret: "route:echo",
		CreatedAt: at, State: operation.CallbackPending, NextAt: at}}
	op.CallbackDueAt = at
}

func settle(op *operation.Operation) {
	for i := range op.Callbacks {
		op.Callbacks[i].State, op.Callbacks[i].NextAt = operation.CallbackDelivered, time.Time{}
	}
	op.CallbackDueAt = time.Time{}
}

// TestCallbackIndexEntries checks the callback index keys in the bucket:
// one per operation that owes, put by Create and by writes that owe,
// purged (no marker left) by a write that settles the last callback and
// by DeleteExpired; a stale entry is removed by DueCallbacks, which
// makes a write in progress that read the operation before it fail (so
// that it puts its entry again); an entry without an operation is kept
// for the grace (a Create in progress), then removed.
func TestCallbackIndexEntries(t *testing.T) {
	f := newOutboxFixture(t)
	ctx := f.ctx
	t0 := time.Now().UTC()
	a := f.create(t0.Add(-time.Minute))
	b := f.create(time.Time{})
	f.expectEntries("after Create", a.ID)

	s := opstore.New(f.st)
	if _, err := s.Transition(ctx, b.ID, func(o *operation.Operation) error { owe(o, t0.Add(-time.Second)); return nil }); err != nil {
		t.Fatal(err)
	}
	f.expectEntries("after a Transition that owes", a.ID, b.ID)
	if got := f.due(t0); !slices.Equal(got, []string{a.ID, b.ID}) {
		t.Fatalf("DueCallbacks = %v, want %v", got, []string{a.ID, b.ID})
	}
	if _, err := s.Transition(ctx, a.ID, func(o *operation.Operation) error { settle(o); return nil }); err != nil {
		t.Fatal(err)
	}
	f.expectEntries("after a Transition that settles", b.ID)

	// A stale entry of an operation that owes nothing (a write that put
	// it and died, or a failed purge): DueCallbacks skips and removes it,
	// leaving the operation as it was.
	before, err := f.st.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(ctx, "c."+a.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.due(t0.Add(time.Hour)); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("DueCallbacks with a stale entry = %v, want [%s]", got, b.ID)
	}
	f.expectEntries("after DueCallbacks removed a stale entry", b.ID)
	if after, err := f.st.Get(ctx, a.ID); err != nil || !opEqual(before, after) {
		t.Fatalf("DueCallbacks changed the operation of a stale entry:\n%+v\n%+v (%v)", before, after, err)
	}

	// A write in progress: it read the operation, then put its entry;
	// DueCallbacks runs before its operation write. That write must fail
	// its revision check (else the operation would owe with no entry).
	e, err := f.kv.Get(ctx, "o."+a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(ctx, "c."+a.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.due(t0)
	f.expectEntries("after DueCallbacks during a write", b.ID)
	owing := before.Clone()
	owing.Version++
	owe(owing, t0)
	ob, _ := json.Marshal(owing)
	if _, err := f.kv.Update(ctx, "o."+a.ID, ob, e.Revision()); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("the write in progress after DueCallbacks removed its entry: %v, want a revision mismatch", err)
	}

	// An entry without an operation (a Create in progress, or one that
	// failed) is kept for the grace, and its operation is found when it
	// is written; after the grace one is removed.
	ghost := opstoretest.NewID()
	if _, err := f.kv.Put(ctx, "c."+ghost, nil); err != nil {
		t.Fatal(err)
	}
	f.due(t0)
	f.expectEntries("an entry without an operation, within the grace", b.ID, ghost)
	now := time.Now().UTC()
	late := &operation.Operation{ID: ghost, Route: "echo", Status: operation.Succeeded, CreatedAt: now, UpdatedAt: now}
	owe(late, t0)
	if _, err := f.kv.Create(ctx, "o."+ghost, mustJSON(t, late)); err != nil {
		t.Fatal(err)
	}
	if got := f.due(t0); !slices.Equal(got, []string{b.ID, ghost}) {
		t.Fatalf("DueCallbacks after the late operation write = %v, want [%s %s]", got, b.ID, ghost)
	}
	dead := opstoretest.NewID()
	if _, err := f.kv.Put(ctx, "c."+dead, nil); err != nil {
		t.Fatal(err)
	}
	restore := natsjs.SetDueGrace(time.Millisecond)
	defer restore()
	time.Sleep(5 * time.Millisecond)
	f.due(t0)
	f.expectEntries("an entry without an operation, after the grace", b.ID, ghost)
	restore()

	// DeleteExpired removes the entry of the operations it deletes.
	exp := f.create(t0.Add(-time.Hour))
	if _, err := s.Transition(ctx, exp.ID, func(o *operation.Operation) error {
		o.Status, o.ExpiresAt = operation.Succeeded, t0.Add(-time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.expectEntries("before DeleteExpired", b.ID, ghost, exp.ID)
	if ops, err := f.st.DeleteExpired(ctx, t0, 10); err != nil || len(ops) != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", len(ops), err)
	}
	f.expectEntries("after DeleteExpired", b.ID, ghost)
}

// TestCallbackIndexConcurrent: writers in two stores (two connections, as
// two processes) make operations owe and settle while DueCallbacks runs
// (and cleans) in a third; afterwards every operation that owes has its
// entry, DueCallbacks returns exactly those, and the stale entries are
// gone. It does not force the narrow interleavings (TestCallbackIndexEntries
// and TestPurgeThrough do, one by one); it checks that they compose.
func TestCallbackIndexConcurrent(t *testing.T) {
	f := newOutboxFixture(t)
	ctx := f.ctx
	base := serverURL(t)
	var stores []opdriver.Store
	for i := range 2 {
		e, err := engine.Open(ctx, withParams(base, "prefix", f.prefix)+fmt.Sprint("#writer-", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		st, err := e.Store(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, st.Driver())
	}
	t0 := time.Now().UTC()
	var ids []string
	for range 8 {
		ids = append(ids, f.create(time.Time{}).ID)
	}
	stop := make(chan struct{})
	var cleaners sync.WaitGroup
	cleaners.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.ob.DueCallbacks(ctx, t0.Add(time.Hour), 100); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var writers sync.WaitGroup
	for w := range 4 {
		s := opstore.New(stores[w%2])
		writers.Go(func() {
			for i := range 60 {
				id := ids[(w*7+i*3)%len(ids)]
				if _, err := s.Transition(ctx, id, func(o *operation.Operation) error {
					if o.CallbackDueAt.IsZero() {
						owe(o, t0.Add(time.Duration(i)*time.Second))
					} else {
						settle(o)
					}
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	cleaners.Wait()
	var owing []string
	for _, id := range ids {
		op, err := f.st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !op.CallbackDueAt.IsZero() {
			owing = append(owing, id)
		}
	}
	got := f.entries()
	for _, id := range owing {
		if !slices.Contains(got, "c."+id) {
			t.Errorf("operation %s owes a callback and has no index entry (entries %v)", id, got)
		}
	}
	due := f.due(t0.Add(time.Hour))
	slices.Sort(due)
	slices.Sort(owing)
	if !slices.Equal(due, owing) {
		t.Fatalf("DueCallbacks = %v, want the owing operations %v", due, owing)
	}
	f.expectEntries("after DueCallbacks cleaned up", owing...)
}

func opEqual(a, b *operation.Operation) bool {
	return string(mustJSON(nil, a)) == string(mustJSON(nil, b))
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		if t != nil {
			t.Fatal(err)
		}
		panic(err)
	}
	return b
}
