package arr_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// budgetCore is a core over the mem engine e with the given budgets.
func budgetCore(t *testing.T, e *mem.Engine, total, perTenant int64) (*arr.Client, *opstore.Store) {
	t.Helper()
	st := opstore.New(e.Store())
	c, err := arr.New(arr.Config{Store: st, Queue: queue.New(e.Queue(mem.QueueOptions{})), Results: resultstore.New(e.Results()),
		Routes:         []arr.Route{{Pattern: "POST /v1/echo", Name: "echo", Handler: arr.Echo}},
		MaxStoredBytes: total, MaxTenantStoredBytes: perTenant,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CountStoredBytes(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, st
}

func asTenant(principal, tenant string) context.Context {
	return arr.WithCaller(context.Background(), arr.Caller{Principal: principal, Tenant: tenant})
}

func echoRequest(body string) *operation.Request {
	return &operation.Request{Method: "POST", Path: "/v1/echo", Header: http.Header{"Content-Type": {"text/plain"}},
		Body: []byte(body), Host: "arr.example", RemoteAddr: "192.0.2.1:5555"}
}

func wantStored(t *testing.T, c *arr.Client, tenant string, total, ofTenant int64) {
	t.Helper()
	gt, gn, ok := c.StoredBytes(tenant)
	if !ok || gt != total || gn != ofTenant {
		t.Fatalf("stored bytes: total %d, tenant %q %d (counted %v); want %d and %d", gt, tenant, gn, ok, total, ofTenant)
	}
}

// The count follows submits (the request), results (their bytes) and the
// janitor's deletions, ignores a replayed submit, and a count from the
// store (a restarted process's) finds the same numbers.
func TestStoredBytesAccounting(t *testing.T) {
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	c, _ := budgetCore(t, e, 1<<20, 1<<20)
	ctx := asTenant("alice", "a")
	req := echoRequest(strings.Repeat("x", 1000))
	n := arr.RequestBytes(req)
	if n < 1000 {
		t.Fatalf("RequestBytes = %d, under the body's size", n)
	}
	op, _, err := c.Submit(ctx, arr.Submission{Route: "echo", Request: req, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	wantStored(t, c, "a", n, n)
	if _, created, err := c.Submit(ctx, arr.Submission{Route: "echo", Request: echoRequest(strings.Repeat("x", 1000)), IdempotencyKey: "k1"}); err != nil || created {
		t.Fatalf("replay: created %v, %v", created, err)
	}
	wantStored(t, c, "a", n, n)
	run(t, c, op.ID) // a 4-byte result
	wantStored(t, c, "a", n+4, n+4)
	_, _, err = c.Submit(asTenant("bob", "b"), arr.Submission{Route: "echo", Request: echoRequest("yy")})
	if err != nil {
		t.Fatal(err)
	}
	m := arr.RequestBytes(echoRequest("yy"))
	wantStored(t, c, "b", n+4+m, m)

	// A restarted process counts the same from the store.
	c2, _ := budgetCore(t, e, 1<<20, 1<<20)
	wantStored(t, c2, "a", n+4+m, n+4)

	// Deleted by the janitor: the finished operation's bytes are freed;
	// the pending one's stay.
	c.Expire(context.Background(), time.Now().Add(48*time.Hour))
	wantStored(t, c, "a", m, 0)
	wantStored(t, c, "b", m, m)
	if err := c.CountStoredBytes(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantStored(t, c, "b", m, m)
}

// An operation stored before arr recorded its request's size is sized by
// reading its request.
func TestStoredBytesCountsOlderOperations(t *testing.T) {
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	st := opstore.New(e.Store())
	req := echoRequest("old body")
	now := time.Now().UTC()
	if _, _, err := st.Create(context.Background(), &operation.Operation{ID: "01900000-0000-7000-8000-000000000001", Route: "echo",
		Status: operation.Pending, CreatedAt: now, UpdatedAt: now, Owner: "carol", Tenant: "c"}, req); err != nil {
		t.Fatal(err)
	}
	c, _ := budgetCore(t, e, 1<<20, 0)
	wantStored(t, c, "c", arr.RequestBytes(req), arr.RequestBytes(req))
}

// Over its tenant's budget a submit is refused with StorageTenantBudget
// and stores nothing, while another tenant still submits; over the total,
// StorageBudget for everyone.
func TestStoredBytesBudgets(t *testing.T) {
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	body := strings.Repeat("z", 4000)
	n := arr.RequestBytes(echoRequest(body))
	c, st := budgetCore(t, e, 5*n, 2*n)
	submit := func(ctx context.Context) error {
		_, _, err := c.Submit(ctx, arr.Submission{Route: "echo", Request: echoRequest(body)})
		return err
	}
	alice, bob, carol := asTenant("alice", "a"), asTenant("bob", "b"), asTenant("carol", "c")
	for range 2 {
		if err := submit(alice); err != nil {
			t.Fatal(err)
		}
	}
	var se *arr.StorageError
	if err := submit(alice); !errors.As(err, &se) || se.Reason != arr.StorageTenantBudget || se.RetryAfter <= 0 {
		t.Fatalf("alice over her tenant's budget: %v, want a StorageError %s with RetryAfter", err, arr.StorageTenantBudget)
	}
	for range 2 {
		if err := submit(bob); err != nil {
			t.Fatalf("bob, whose tenant has room: %v", err)
		}
	}
	if err := submit(carol); err != nil {
		t.Fatal(err)
	}
	if err := submit(carol); !errors.As(err, &se) || se.Reason != arr.StorageBudget {
		t.Fatalf("over the total: %v, want a StorageError %s", err, arr.StorageBudget)
	}
	ops, _, err := st.List(context.Background(), opstore.ListOptions{Limit: 100})
	if err != nil || len(ops) != 5 {
		t.Fatalf("%d operations stored (%v), want 5: a refused submit stores nothing", len(ops), err)
	}
	wantStored(t, c, "a", 5*n, 2*n)
}

// Submits made while a count walks the store are neither lost nor counted
// twice: after it, the count is what a count of the quiet store finds.
func TestStoredBytesCountWhileSubmitting(t *testing.T) {
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	c, _ := budgetCore(t, e, 1<<40, 0)
	ctx := asTenant("alice", "a")
	submit := func(i int) error {
		_, _, err := c.Submit(ctx, arr.Submission{Route: "echo", Request: echoRequest(strings.Repeat("q", i%97))})
		return err
	}
	for i := range 2500 { // three pages of a count
		if err := submit(i); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 300 {
				if err := submit(g*1000 + i); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 3 {
		if err := c.CountStoredBytes(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	got, _, _ := c.StoredBytes("a")
	c2, _ := budgetCore(t, e, 1<<40, 0)
	want, _, _ := c2.StoredBytes("a")
	if got != want {
		t.Fatalf("after counts during submits: %d bytes, a quiet count finds %d", got, want)
	}
}
