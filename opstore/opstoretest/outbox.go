package opstoretest

import (
	"slices"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// withCallback returns op owing one pending callback due at due.
func withCallback(op *operation.Operation, due time.Time) *operation.Operation {
	op.Callbacks = []operation.Callback{{ID: "msg_" + op.ID, URL: "https://hooks.example.com/arr?x=1", Event: "succeeded",
		Secret: "route:echo", CreatedAt: due.Add(-time.Second), State: operation.CallbackPending, NextAt: due}}
	op.CallbackDueAt = due
	return op
}

// due returns the ids DueCallbacks(at, limit) returns, in order, checking
// that each is due and whole (as Get returns it).
func (f *fixture) due(at time.Time, limit int) []string {
	f.t.Helper()
	ops, err := f.s.DueCallbacks(f.ctx, at, limit)
	if err != nil {
		f.t.Fatalf("DueCallbacks(%s, %d): %v", at, limit, err)
	}
	if limit <= 0 && len(ops) > 0 {
		f.t.Fatalf("DueCallbacks(limit %d) returned %d operations, want none", limit, len(ops))
	}
	if len(ops) > max(limit, 0) {
		f.t.Fatalf("DueCallbacks(limit %d) returned %d operations", limit, len(ops))
	}
	var ids []string
	var last time.Time
	for _, op := range ops {
		if op.CallbackDueAt.IsZero() || op.CallbackDueAt.After(at) {
			f.t.Fatalf("DueCallbacks(%s) returned %s due at %s", at, op.ID, op.CallbackDueAt)
		}
		if op.CallbackDueAt.Before(last) {
			f.t.Fatalf("DueCallbacks returned %s (due %s) after one due at %s: want earliest first", op.ID, op.CallbackDueAt, last)
		}
		last = op.CallbackDueAt
		assertSameOp(f.t, "DueCallbacks entry against Get", f.get(op.ID), op)
		ids = append(ids, op.ID)
	}
	return ids
}

func (f *fixture) expectDue(what string, at time.Time, limit int, want ...string) {
	f.t.Helper()
	if got := f.due(at, limit); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		f.t.Fatalf("%s: DueCallbacks(%s, %d) = %v, want %v", what, at, limit, got, want)
	}
}

// testDueCallbacks: the index returns the operations whose callbacks are
// due, earliest first, up to limit, and survives a reopen.
func testDueCallbacks(t *testing.T, f *fixture) {
	t0 := now()
	a := f.create(withCallback(newOp(), t0.Add(-2*time.Minute)), nil)
	b := f.create(withCallback(newOp(), t0.Add(-3*time.Minute)), nil)
	later := f.create(withCallback(newOp(), t0.Add(time.Hour)), nil)
	f.create(newOp(), nil) // owes nothing
	done := newOp()
	done.Callbacks = []operation.Callback{{ID: "msg_done", URL: "https://h.example/", Event: "failed", Secret: "principal:al",
		CreatedAt: t0, State: operation.CallbackDelivered, Attempts: 2, LastStatus: 204, LastAt: t0, DeliveredAt: t0}}
	f.create(done, nil) // delivered: not due

	f.expectDue("two due", t0, 10, b.ID, a.ID)
	f.expectDue("limit 1", t0, 1, b.ID)
	f.expectDue("limit 0", t0, 0)
	f.expectDue("due at its exact time", t0.Add(-3*time.Minute), 10, b.ID)
	f.expectDue("an hour on", t0.Add(2*time.Hour), 10, b.ID, a.ID, later.ID)
	if got := f.get(done.ID); len(got.Callbacks) != 1 || got.Callbacks[0].State != operation.CallbackDelivered {
		t.Fatalf("a delivered callback did not round-trip: %+v", got.Callbacks)
	}
	f.reopen()
	f.expectDue("after reopen", t0.Add(2*time.Hour), 10, b.ID, a.ID, later.ID)
}

// testDueCallbacksFollowsWrites: every kind of write keeps the index
// current, and DeleteExpired removes from it.
func testDueCallbacksFollowsWrites(t *testing.T, f *fixture) {
	t0 := now()
	// Update: owed, rescheduled, delivered.
	op := f.create(newOp(), nil)
	f.expectDue("created owing nothing", t0.Add(time.Hour), 10)
	withCallback(op, t0.Add(-time.Minute))
	f.update(op)
	f.expectDue("Update owes one", t0, 10, op.ID)
	op.Callbacks[0].NextAt = t0.Add(time.Minute)
	op.CallbackDueAt = t0.Add(time.Minute)
	f.update(op)
	f.expectDue("Update reschedules it", t0, 10)
	f.expectDue("rescheduled, a minute on", t0.Add(time.Minute), 10, op.ID)
	op.Callbacks[0].State, op.Callbacks[0].NextAt, op.CallbackDueAt = operation.CallbackDelivered, time.Time{}, time.Time{}
	f.update(op)
	f.expectDue("Update delivers it", t0.Add(time.Hour), 10)

	// Transition and TransitionLazy (the core's writes).
	tr := f.create(newOp(), nil)
	if _, err := f.s.Transition(f.ctx, tr.ID, func(o *operation.Operation) error {
		o.Status = operation.Succeeded
		withCallback(o, t0.Add(-time.Second))
		return nil
	}); err != nil {
		t.Fatalf("Transition: %v", err)
	}
	f.expectDue("Transition owes one", t0, 10, tr.ID)
	if _, err := f.s.TransitionLazy(f.ctx, tr.ID, func(o *operation.Operation) error {
		o.Callbacks[0].Attempts++
		o.Callbacks[0].NextAt = t0.Add(30 * time.Second)
		o.CallbackDueAt = o.Callbacks[0].NextAt
		return nil
	}); err != nil {
		t.Fatalf("TransitionLazy: %v", err)
	}
	f.expectDue("TransitionLazy claims it", t0, 10)
	f.expectDue("claimed, 30 s on", t0.Add(30*time.Second), 10, tr.ID)
	if err := f.s.Sync(f.ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	f.reopen()
	f.expectDue("claimed, after Sync and reopen", t0.Add(30*time.Second), 10, tr.ID)
	// A skipped transition changes nothing.
	if _, err := f.s.Transition(f.ctx, tr.ID, func(o *operation.Operation) error {
		o.CallbackDueAt = time.Time{}
		return opstore.ErrSkip
	}); err == nil {
		t.Fatalf("a skipped Transition returned no error")
	}
	f.expectDue("after a skipped transition", t0.Add(30*time.Second), 10, tr.ID)

	// DeleteExpired removes the operations it deletes.
	exp := newOp()
	exp.Status = operation.Succeeded
	exp.ExpiresAt = t0.Add(-time.Minute)
	f.create(withCallback(exp, t0.Add(-time.Hour)), nil)
	f.expectDue("expired, before DeleteExpired", t0.Add(time.Minute), 10, exp.ID, tr.ID)
	if n, err := f.deleteExpired(t0, 10); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	f.expectDue("after DeleteExpired", t0.Add(time.Minute), 10, tr.ID)

	// The engine's one-step transition with a message, where it has one.
	if _, q, err := f.h.OpenAtomic(f.ctx); err == nil && q != nil {
		_ = q.Close()
		as := f.submitter()
		te := f.create(newOp(), nil)
		if _, err := as.TransitionEnqueue(f.ctx, te.ID, func(o *operation.Operation) error {
			o.Status = operation.Pending
			withCallback(o, t0.Add(-time.Millisecond))
			return nil
		}, func(o *operation.Operation) qdriver.Message { return qdriver.Message{ID: o.ID, Body: []byte("x")} }); err != nil {
			t.Fatalf("TransitionEnqueue: %v", err)
		}
		f.expectDue("TransitionEnqueue owes one", t0, 10, te.ID)
	}
}
