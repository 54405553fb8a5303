package arr_test

import (
	"context"
	"errors"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/fileresult"
)

// Every call a principal makes is scoped to its own operations: another's
// is not found (never forbidden), its listing holds only its own, and an
// idempotency key is its own. An admin and the program itself (a context
// without a caller) see every operation.
func TestCallerScope(t *testing.T) {
	r := newRig(t)
	bg := context.Background()
	alice := arr.WithCaller(bg, arr.Caller{Principal: "alice", Tenant: "acme"})
	bob := arr.WithCaller(bg, arr.Caller{Principal: "bob"})
	admin := arr.WithCaller(bg, arr.Caller{Principal: "root", Admin: true})
	anon := arr.WithCaller(bg, arr.Caller{Principal: arr.Anonymous})

	submit := func(ctx context.Context, key, body string) *operation.Operation {
		t.Helper()
		op, _, err := r.c.Submit(ctx, arr.Submission{Route: "echo", IdempotencyKey: key,
			Request: &operation.Request{Body: []byte(body)}})
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	a := submit(alice, "k-1", "alice's")
	if a.Owner != "alice" || a.Tenant != "acme" {
		t.Fatalf("owner %q tenant %q, want alice acme", a.Owner, a.Tenant)
	}
	// The same key is bob's own: a new operation, not alice's replayed.
	b := submit(bob, "k-1", "bob's")
	if b.ID == a.ID || b.Owner != "bob" || b.Tenant != "bob" {
		t.Fatalf("bob's submit with alice's key: %+v (alice's is %s)", b, a.ID)
	}
	if again := submit(alice, "k-1", "alice's"); again.ID != a.ID {
		t.Fatalf("alice's replay is %s, want %s", again.ID, a.ID)
	}
	prog := submit(bg, "", "the program's")
	if prog.Owner != "" {
		t.Fatalf("an operation submitted without a caller has owner %q", prog.Owner)
	}

	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, opstore.ErrNotFound) {
			t.Errorf("%s: err %v, want not found", what, err)
		}
	}
	_, err := r.c.Get(bob, a.ID)
	notFound("bob gets alice's", err)
	_, err = r.c.Cancel(bob, a.ID)
	notFound("bob cancels alice's", err)
	_, err = r.c.Retry(bob, a.ID)
	notFound("bob retries alice's", err)
	_, _, err = r.c.Watch(bob, a.ID)
	notFound("bob watches alice's", err)
	_, err = r.c.WaitFor(bob, a.ID, time.Second, arr.Terminal)
	notFound("bob waits for alice's", err)
	_, err = r.c.Get(alice, prog.ID)
	notFound("alice gets the program's", err)
	if op, err := r.c.Get(bg, a.ID); err != nil || op.Status != operation.Pending {
		t.Fatalf("alice's operation after bob's calls: %+v, %v", op, err)
	}

	// What bob could not do, alice and the admin can.
	if _, err := r.c.Get(alice, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Get(admin, b.ID); err != nil {
		t.Fatal(err)
	}
	// An operation without an owner is Anonymous's (stored before owners
	// were recorded, or submitted by the program).
	if _, err := r.c.Get(anon, prog.ID); err != nil {
		t.Fatal(err)
	}
	_, stop, err := r.c.Watch(alice, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := r.c.Retry(alice, a.ID); err != nil { // pending: queued again
		t.Fatal(err)
	}
	if op, err := r.c.Cancel(admin, a.ID); err != nil || op.Status != operation.Canceled {
		t.Fatalf("admin cancels alice's: %+v, %v", op, err)
	}
	if op, err := r.c.Cancel(bob, b.ID); err != nil || op.Status != operation.Canceled {
		t.Fatalf("bob cancels his own: %+v, %v", op, err)
	}

	ids := func(ctx context.Context, opts arr.ListOptions) []string {
		t.Helper()
		ops, _, err := r.c.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, op := range ops {
			s = append(s, op.ID)
		}
		return s
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s lists %v, want %v", what, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s lists %v, want %v", what, got, want)
				return
			}
		}
	}
	same("alice", ids(alice, arr.ListOptions{}), a.ID)
	same("bob asking for alice's", ids(bob, arr.ListOptions{Owner: "alice"}), b.ID)
	same("the admin", ids(admin, arr.ListOptions{}), a.ID, b.ID, prog.ID)
	same("the admin asking for bob's", ids(admin, arr.ListOptions{Owner: "bob"}), b.ID)
}

// A principal or tenant that could not be stored safely is refused.
func TestCallerValid(t *testing.T) {
	for _, c := range []arr.Caller{{}, {Principal: "a\nb"}, {Principal: "a", Tenant: "\x00"}, {Principal: string([]byte{0xff})}} {
		if c.Valid() == nil {
			t.Errorf("%+v is valid", c)
		}
	}
	if err := (arr.Caller{Principal: "alice@example.com", Tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47"}).Valid(); err != nil {
		t.Error(err)
	}
	r := newRig(t)
	ctx := arr.WithCaller(context.Background(), arr.Caller{Principal: "a\x1fb"})
	if _, _, err := r.c.Submit(ctx, arr.Submission{Route: "echo"}); !errors.Is(err, arr.ErrBadPrincipal) {
		t.Fatalf("submit by a bad principal: %v", err)
	}
}

// A route with Callers takes submissions from those principals, the
// principals of those tenants, admins and the program; from no one else.
func TestRouteCallers(t *testing.T) {
	r := newRig(t)
	rs, err := fileresult.Open(t.TempDir(), fileresult.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	c, err := arr.New(arr.Config{Store: r.store, Queue: queue.New(r.q), Results: resultstore.New(rs),
		Routes: []arr.Route{{Pattern: "/v1/reports", Handler: arr.Echo, Callers: []string{"alice", "tenant:acme"}}}})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	for _, tc := range []struct {
		ctx  context.Context
		want error
	}{
		{arr.WithCaller(bg, arr.Caller{Principal: "alice"}), nil},
		{arr.WithCaller(bg, arr.Caller{Principal: "carol", Tenant: "acme"}), nil},
		{arr.WithCaller(bg, arr.Caller{Principal: "root", Admin: true}), nil},
		{bg, nil},
		{arr.WithCaller(bg, arr.Caller{Principal: "bob"}), arr.ErrRouteForbidden},
		{arr.WithCaller(bg, arr.Caller{Principal: "acme", Tenant: "other"}), arr.ErrRouteForbidden},
		{arr.WithCaller(bg, arr.Caller{Principal: arr.Anonymous}), arr.ErrRouteForbidden},
	} {
		c0, _ := arr.CallerFrom(tc.ctx)
		_, _, err := c.Submit(tc.ctx, arr.Submission{Route: "post-v1-reports"})
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%+v submits: %v, want %v", c0, err, tc.want)
		}
	}
}
