package opstoretest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// owners are the owners the owner tests spread operations over: one that
// is a prefix of another (an index keyed by a bare prefix would mix them),
// none, and one with the bytes that key, subject and SQL encodings must
// escape.
var owners = []string{"alice", "al", "bob", "", "carol. *>\x00é/=\\'%_"}

// expectOwnerList checks that List of owner's operations (with status,
// when not nil), paged by several limits, returns exactly want, in order,
// each operation whole and owned by owner.
func (f *fixture) expectOwnerList(what, owner string, status []operation.Status, want []string) {
	f.t.Helper()
	want = sorted(want...)
	for _, limit := range []int{0, 1, 2, 3, 7, 100} {
		got := f.listAll(opstore.ListOptions{Owner: owner, Status: status, Limit: limit})
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			f.t.Fatalf("%s: List(owner %q, status %v, limit %d) =\n%v\nwant\n%v", what, owner, status, limit, got, want)
		}
	}
	ops, next, err := f.s.List(f.ctx, opstore.ListOptions{Owner: owner, Status: status, Limit: max(len(want), 1)})
	if err != nil {
		f.t.Fatalf("%s: List(owner %q): %v", what, owner, err)
	}
	// A page that holds exactly the owner's remaining operations is the
	// last one.
	if next != "" {
		f.t.Fatalf("%s: List(owner %q, limit %d) with %d operations returned cursor %q, want \"\"", what, owner, max(len(want), 1), len(want), next)
	}
	for _, op := range ops {
		if op.Owner != owner {
			f.t.Fatalf("%s: List(owner %q) returned %s owned by %q", what, owner, op.ID, op.Owner)
		}
		if len(status) > 0 && !slices.Contains(status, op.Status) {
			f.t.Fatalf("%s: List(owner %q, status %v) returned %s in status %s", what, owner, status, op.ID, op.Status)
		}
		assertSameOp(f.t, what+": List entry against Get", f.get(op.ID), op)
	}
}

func testListOwner(t *testing.T, f *fixture) {
	byOwner := map[string][]string{}
	var all []string
	for i := range 41 {
		op := newOp()
		op.Owner = owners[i%len(owners)]
		if op.Owner != "" {
			op.Tenant = "tenant of " + op.Owner
		}
		stored := f.create(op, nil)
		if stored.Owner != op.Owner || stored.Tenant != op.Tenant {
			t.Fatalf("Create returned owner %q tenant %q, want %q %q", stored.Owner, stored.Tenant, op.Owner, op.Tenant)
		}
		byOwner[op.Owner] = append(byOwner[op.Owner], op.ID)
		all = append(all, op.ID)
	}
	sort.Strings(all)
	for _, o := range owners {
		if o == "" {
			continue
		}
		f.expectOwnerList("List by owner", o, nil, byOwner[o])
		if g := f.get(byOwner[o][0]); g.Owner != o || g.Tenant != "tenant of "+o {
			t.Fatalf("Get = owner %q tenant %q, want %q and its tenant", g.Owner, g.Tenant, o)
		}
	}
	// An empty Owner is no filter.
	if got := f.listAll(opstore.ListOptions{}); !slices.Equal(got, all) {
		t.Fatalf("List without an owner = %v, want every operation %v", got, all)
	}
	// Owners nobody has, among them a prefix and an extension of a stored
	// one: nothing, and no cursor.
	for _, o := range []string{"nobody", "alic", "alice2", "carol", "carol. *>"} {
		ops, next, err := f.s.List(f.ctx, opstore.ListOptions{Owner: o})
		if err != nil || len(ops) != 0 || next != "" {
			t.Fatalf("List(owner %q) = %v, %q, %v; want nothing", o, opIDs(ops), next, err)
		}
	}
	// A cursor that is another owner's id (the API's cursors are ids)
	// resumes at this owner's next operation after it.
	bob := byOwner["bob"]
	for _, after := range []string{byOwner["alice"][3], bob[2], all[0], all[len(all)-1]} {
		var want []string
		for _, id := range bob {
			if id > after {
				want = append(want, id)
			}
		}
		got := f.listAll(opstore.ListOptions{Owner: "bob", After: after, Limit: 2})
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("List(owner bob, after %s) = %v, want %v", after, got, want)
		}
	}
	// The index survives a reopen.
	f.reopen()
	f.expectOwnerList("List by owner after reopen", "alice", nil, byOwner["alice"])
	f.expectOwnerList("List by owner after reopen", owners[4], nil, byOwner[owners[4]])
}

func testListOwnerStatus(t *testing.T, f *fixture) {
	type key struct {
		owner string
		st    operation.Status
	}
	ids := map[key][]string{}
	statuses := []operation.Status{operation.Pending, operation.Running, operation.Succeeded}
	for i := range 24 {
		op := newOp()
		op.Owner = []string{"alice", "bob"}[i%2]
		f.create(op, nil)
		st := statuses[(i/2)%3]
		if st != operation.Pending {
			f.setStatus(op.ID, st)
		}
		ids[key{op.Owner, st}] = append(ids[key{op.Owner, st}], op.ID)
	}
	for _, o := range []string{"alice", "bob"} {
		for _, st := range statuses {
			f.expectOwnerList("List by owner and status", o, []operation.Status{st}, ids[key{o, st}])
		}
		f.expectOwnerList("List by owner, two statuses", o, []operation.Status{operation.Succeeded, operation.Pending},
			append(slices.Clone(ids[key{o, operation.Pending}]), ids[key{o, operation.Succeeded}]...))
		f.expectOwnerList("List by owner, a status nobody is in", o, []operation.Status{operation.Failed}, nil)
	}
	// The combined filter follows status changes.
	moved := ids[key{"alice", operation.Running}][0]
	f.setStatus(moved, operation.Failed)
	f.expectOwnerList("List by owner after a status change", "alice", []operation.Status{operation.Failed}, []string{moved})
	f.expectOwnerList("List by owner after a status change", "bob", []operation.Status{operation.Failed}, nil)
	f.expectOwnerList("List by owner after a status change", "alice", []operation.Status{operation.Running},
		ids[key{"alice", operation.Running}][1:])
}

// testOwnerNeverChanges checks that the owner a Create stored is kept by
// every later write: Update, the portable transitions and, when the driver
// has it, TransitionOp. An operation created without an owner cannot be
// given one.
func testOwnerNeverChanges(t *testing.T, f *fixture) {
	a := newOp()
	a.Owner = "alice"
	f.create(a, nil)
	none := f.create(newOp(), nil)

	check := func(what string) {
		t.Helper()
		if got := f.get(a.ID); got.Owner != "alice" {
			t.Fatalf("%s: Owner = %q, want alice (kept from Create)", what, got.Owner)
		}
		if got := f.get(none.ID); got.Owner != "" {
			t.Fatalf("%s: Owner of an operation created without one = %q, want none", what, got.Owner)
		}
		f.expectOwnerList(what, "alice", nil, []string{a.ID})
		f.expectOwnerList(what, "mallory", nil, nil)
	}

	for _, other := range []string{"mallory", ""} {
		op := f.get(a.ID)
		op.Owner = other
		op.Message = "updated by " + other
		f.update(op)
		if got := f.get(a.ID); got.Message != op.Message {
			t.Fatalf("Update with another owner did not apply the rest: %s", dump(got))
		}
		check("Update with owner " + fmt.Sprintf("%q", other))
	}
	op := f.get(none.ID)
	op.Owner = "mallory"
	f.update(op)
	check("Update giving an unowned operation an owner")

	for _, lazy := range []bool{false, true} {
		transition := f.s.Transition
		if lazy {
			transition = f.s.TransitionLazy
		}
		for _, id := range []string{a.ID, none.ID} {
			want := f.get(id).Owner
			got, err := transition(f.ctx, id, func(o *operation.Operation) error {
				o.Owner = "mallory"
				o.PercentComplete++
				return nil
			})
			if err != nil {
				t.Fatalf("Transition(lazy=%v): %v", lazy, err)
			}
			if got.Owner != want {
				t.Fatalf("Transition(lazy=%v) changing the owner returned Owner %q, want the stored %q", lazy, got.Owner, want)
			}
		}
		check(fmt.Sprintf("Transition(lazy=%v) changing the owner", lazy))
	}
	if tr, ok := f.s.Driver().(driver.Transitioner); ok {
		got, err := tr.TransitionOp(f.ctx, a.ID, func(o *operation.Operation) error { o.Owner = "mallory"; return nil }, false)
		if err != nil || got.Owner != "alice" {
			t.Fatalf("TransitionOp changing the owner = %v, %v; want Owner alice", got, err)
		}
		check("TransitionOp changing the owner")
	}
	f.reopen()
	check("after reopen")
}

// testListOwnerDeleteExpired checks that an operation DeleteExpired
// deletes leaves its owner's listing with it, whatever the listing's
// filters, and that the owner's index keeps working afterwards.
func testListOwnerDeleteExpired(t *testing.T, f *fixture) {
	t0 := now()
	mk := func(owner string, expires, tombstone time.Time) string {
		op := newOp()
		op.Owner = owner
		op.ExpiresAt = expires
		op.TombstoneUntil = tombstone
		return f.create(op, nil).ID
	}
	past, future := t0.Add(-time.Hour), t0.Add(time.Hour)
	a1 := mk("alice", past, t0.Add(2*time.Hour)) // leaves a tombstone
	a2 := mk("alice", time.Time{}, time.Time{})
	b1 := mk("bob", past, time.Time{})
	a3 := mk("alice", past.Add(time.Minute), time.Time{})
	b2 := mk("bob", future, time.Time{})
	a4 := mk("alice", future, time.Time{})
	f.setStatus(a3, operation.Succeeded)
	f.setStatus(a4, operation.Succeeded)

	if n, err := f.deleteExpired(t0, 100); err != nil || n != 3 {
		t.Fatalf("DeleteExpired = %d, %v; want 3", n, err)
	}
	f.expectOwnerList("alice after DeleteExpired", "alice", nil, []string{a2, a4})
	f.expectOwnerList("bob after DeleteExpired", "bob", nil, []string{b2})
	f.expectOwnerList("alice succeeded after DeleteExpired", "alice", []operation.Status{operation.Succeeded}, []string{a4})
	f.expectOwnerList("alice pending after DeleteExpired", "alice", []operation.Status{operation.Pending}, []string{a2})
	for _, id := range []string{a1, b1, a3} {
		if ops, _, err := f.s.List(f.ctx, opstore.ListOptions{Owner: "alice", After: id[:len(id)-1]}); err != nil {
			t.Fatalf("List: %v", err)
		} else if slices.Contains(opIDs(ops), id) {
			t.Fatalf("deleted %s is still listed", id)
		}
	}

	f.reopen()
	f.expectOwnerList("alice after DeleteExpired and reopen", "alice", nil, []string{a2, a4})

	// Everything of bob's expires: bob's listing is empty, with no cursor.
	if n, err := f.deleteExpired(t0.Add(3*time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("second DeleteExpired = %d, %v; want 2 (b2, a4)", n, err)
	}
	f.expectOwnerList("bob after all his operations expired", "bob", nil, nil)
	f.expectOwnerList("alice after the second DeleteExpired", "alice", nil, []string{a2})
	// bob's index works afterwards.
	b3 := mk("bob", time.Time{}, time.Time{})
	f.expectOwnerList("bob's new operation", "bob", nil, []string{b3})
	f.expectGoneOrNotFound(a1)
}

// expectGoneOrNotFound checks that Get of id fails with ErrGone or
// ErrNotFound.
func (f *fixture) expectGoneOrNotFound(id string) {
	f.t.Helper()
	if op, err := f.s.Get(f.ctx, id); !errors.Is(err, opstore.ErrGone) && !errors.Is(err, opstore.ErrNotFound) {
		f.t.Fatalf("Get(%s) = %v, %v; want ErrGone or ErrNotFound", id, op, err)
	}
}

// testListOwnerCreateConflicts checks that a Create that writes nothing
// (an existing id, a held idempotency key) leaves nothing in its owner's
// listing.
func testListOwnerCreateConflicts(t *testing.T, f *fixture) {
	a := newOp()
	a.Owner = "alice"
	a.IdempotencyKey = "alice-key"
	f.create(a, nil)

	dup := newOp()
	dup.ID = a.ID
	dup.Owner = "mallory"
	if _, _, err := f.s.Create(f.ctx, dup, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of alice's id as mallory = %v, want ErrExists", err)
	}
	keyed := newOp()
	keyed.Owner = "mallory"
	keyed.IdempotencyKey = "alice-key"
	got, created, err := f.s.Create(f.ctx, keyed, nil)
	if err != nil || created || got.ID != a.ID || got.Owner != "alice" {
		t.Fatalf("Create with alice's key as mallory = %v, %v, %v; want alice's operation, not created", got, created, err)
	}
	f.expectOwnerList("mallory after refused Creates", "mallory", nil, nil)
	f.expectOwnerList("alice after refused Creates", "alice", nil, []string{a.ID})
	// mallory's index works afterwards.
	m := newOp()
	m.Owner = "mallory"
	f.create(m, nil)
	f.expectOwnerList("mallory's own operation", "mallory", nil, []string{m.ID})
}

// testListOwnerSubmitAtomic checks that the engine's one-step writes index
// the owner as Create does, and keep it.
func testListOwnerSubmitAtomic(t *testing.T, f *fixture) {
	as := f.submitter()
	var alice []string
	for i := range 6 {
		op := newOp()
		op.Owner = []string{"alice", "bob"}[i%2]
		if _, created, err := as.SubmitAtomic(f.ctx, op, nil, qdriver.Message{ID: op.ID, Body: []byte("m")}); err != nil || !created {
			t.Fatalf("SubmitAtomic = %v, %v", created, err)
		}
		if op.Owner == "alice" {
			alice = append(alice, op.ID)
		}
	}
	f.expectOwnerList("alice after SubmitAtomic", "alice", nil, alice)
	got, err := as.TransitionEnqueue(f.ctx, alice[0], func(o *operation.Operation) error {
		o.Owner = "bob"
		o.Status = operation.Running
		return nil
	}, func(o *operation.Operation) qdriver.Message { return qdriver.Message{ID: o.ID, Body: []byte("again")} })
	if err != nil || got.Owner != "alice" {
		t.Fatalf("TransitionEnqueue changing the owner = %v, %v; want Owner alice", got, err)
	}
	f.reopen()
	f.expectOwnerList("alice after TransitionEnqueue and reopen", "alice", nil, alice)
	f.expectOwnerList("alice running", "alice", []operation.Status{operation.Running}, alice[:1])
	if ids := f.listAll(opstore.ListOptions{Owner: "bob"}); len(ids) != 3 {
		t.Fatalf("bob's operations = %v, want 3", ids)
	}
}

// BenchmarkListOwner measures List of one owner's page of 10 operations in
// a store that also holds others operations of other owners (ten each,
// their ids interleaved with the owner's), for others = 100 and 10,000.
// A driver that indexes owners shows about the same time per op for both.
// Each runs the owner's List (owner) and, over the same data, the first
// page without a filter (unfiltered), which is a page's cost on the
// drivers that walk ids in order: the difference between the two store
// sizes that unfiltered shows is the store's own, not the index's.
// open returns a driver over fresh, empty data; the benchmark closes it.
func BenchmarkListOwner(b *testing.B, open func(b *testing.B) driver.Store) {
	for _, others := range []int{100, 10000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			ctx := context.Background()
			s := opstore.New(open(b))
			defer s.Close()
			// Ids in creation order: the owner's 10 spread among the
			// others.
			var ops []*operation.Operation
			for i := range others + 10 {
				op := newOp()
				op.Owner = fmt.Sprintf("owner-%d", i/10)
				if i%((others+10)/10) == 0 {
					op.Owner = "target"
				}
				ops = append(ops, op)
			}
			work := make(chan *operation.Operation)
			var wg sync.WaitGroup
			errs := make(chan error, 1)
			for range 16 {
				wg.Go(func() {
					for op := range work {
						if _, _, err := s.Create(ctx, op, newRequest([]byte("x"))); err != nil {
							select {
							case errs <- err:
							default:
							}
						}
					}
				})
			}
			for _, op := range ops {
				work <- op
			}
			close(work)
			wg.Wait()
			select {
			case err := <-errs:
				b.Fatalf("Create: %v", err)
			default:
			}
			// The owner's page, and for comparison the first page of
			// everyone's (which costs a page on every driver that walks ids
			// in order) over the same data.
			for _, bench := range []struct {
				name string
				opts opstore.ListOptions
			}{
				{"owner", opstore.ListOptions{Owner: "target", Limit: 10}},
				{"unfiltered", opstore.ListOptions{Limit: 10}},
			} {
				b.Run(bench.name, func(b *testing.B) {
					for b.Loop() {
						page, _, err := s.List(ctx, bench.opts)
						if err != nil || len(page) != 10 {
							b.Fatalf("List = %d operations, %v; want 10", len(page), err)
						}
					}
				})
			}
		})
	}
}
