package arr_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
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

// hostPolicy lets requests name targets on one host.
type hostPolicy string

func (h hostPolicy) Names(u *url.URL) bool { return u.Host == string(h) }

// newCallbackCore is a core over the mem engine whose "hooks" route calls
// back to a route target and takes requested targets on
// requested.example.
func newCallbackCore(t *testing.T, every bool, maxCallbacks int) (*arr.Client, *opstore.Store) {
	t.Helper()
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	st := opstore.New(e.Store())
	c, err := arr.New(arr.Config{Store: st, Queue: queue.New(e.Queue(mem.QueueOptions{})), Results: resultstore.New(e.Results()),
		Routes: []arr.Route{
			{Pattern: "POST /v1/hooks", Name: "hooks", Handler: arr.Echo, CallbackEvery: every,
				Callbacks: []arr.CallbackTarget{{URL: "https://route.example/hook", Every: every}}},
			{Pattern: "POST /v1/plain", Name: "plain", Handler: arr.Echo},
		},
		CallbackRequests: hostPolicy("requested.example"),
		MaxCallbacks:     maxCallbacks,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

// run runs one attempt of id to success.
func run(t *testing.T, c *arr.Client, id string) {
	t.Helper()
	ctx := context.Background()
	a, _, err := c.StartAttempt(ctx, id, false)
	if err != nil || a == nil {
		t.Fatalf("StartAttempt = %v, %v", a, err)
	}
	defer a.Close()
	res, err := a.StoreResult(ctx, &arr.Result{Body: []byte("done"), ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Succeed(ctx, res); d.Outcome != "succeeded" {
		t.Fatalf("Succeed = %+v", d)
	}
}

func TestSubmitChecksTheCallbackURL(t *testing.T) {
	c, _ := newCallbackCore(t, false, 0)
	ctx := arr.WithCaller(context.Background(), arr.Caller{Principal: "alice"})
	for _, tc := range []struct {
		url  string
		want error
	}{
		{"https://other.example/x", arr.ErrCallbackNotAllowed},
		{"ftp://requested.example/x", arr.ErrBadCallbackURL},
		{"/relative", arr.ErrBadCallbackURL},
		{"https://user:pw@requested.example/x", arr.ErrBadCallbackURL},
		{"https://requested.example/x#frag", arr.ErrBadCallbackURL},
		{"https://requested.example/" + strings.Repeat("a", arr.MaxCallbackURLBytes), arr.ErrBadCallbackURL},
	} {
		if _, _, err := c.Submit(ctx, arr.Submission{Route: "hooks", CallbackURL: tc.url}); !errors.Is(err, tc.want) {
			t.Errorf("Submit with callback %.60q = %v, want %v", tc.url, err, tc.want)
		}
	}
	op, _, err := c.Submit(ctx, arr.Submission{Route: "hooks", CallbackURL: "https://requested.example/x?a=1"})
	if err != nil || op.CallbackURL != "https://requested.example/x?a=1" {
		t.Fatalf("Submit with an allowed callback = %+v, %v", op, err)
	}
	// The callback URL is part of the idempotency fingerprint.
	sub := arr.Submission{Route: "hooks", IdempotencyKey: "k", CallbackURL: "https://requested.example/a"}
	if _, _, err := c.Submit(ctx, sub); err != nil {
		t.Fatal(err)
	}
	sub.CallbackURL = "https://requested.example/b"
	if _, _, err := c.Submit(ctx, sub); !errors.Is(err, arr.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, another callback URL = %v, want ErrIdempotencyKeyReused", err)
	}
}

// The transition that finishes an operation writes its callbacks with it;
// a dispatcher claims, and records, each attempt.
func TestFinishingOwesCallbacks(t *testing.T) {
	c, st := newCallbackCore(t, false, 0)
	ctx := arr.WithCaller(context.Background(), arr.Caller{Principal: "alice"})
	op, _, err := c.Submit(ctx, arr.Submission{Route: "hooks", CallbackURL: "https://requested.example/cb"})
	if err != nil {
		t.Fatal(err)
	}
	if len(op.Callbacks) != 0 || !op.CallbackDueAt.IsZero() {
		t.Fatalf("a pending operation owes %+v", op.Callbacks)
	}
	run(t, c, op.ID)
	select {
	case <-c.CallbackWake():
	default:
		t.Fatal("finishing with a callback owed did not wake the dispatcher")
	}
	done, err := st.Get(context.Background(), op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(done.Callbacks) != 2 {
		t.Fatalf("callbacks after success = %+v, want the route's and the request's", done.Callbacks)
	}
	scopes := map[string]string{}
	for _, cb := range done.Callbacks {
		if cb.State != operation.CallbackPending || cb.Event != "succeeded" || !strings.HasPrefix(cb.ID, "msg_") || cb.NextAt.IsZero() {
			t.Fatalf("callback %+v: want pending, succeeded, a msg_ id, due", cb)
		}
		scopes[cb.URL] = cb.Secret
	}
	if scopes["https://route.example/hook"] != arr.RouteSecretScope("hooks") || scopes["https://requested.example/cb"] != arr.PrincipalSecretScope("alice") {
		t.Fatalf("secret scopes = %v", scopes)
	}
	bg := context.Background()
	due, err := c.DueCallbacks(bg, time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].ID != op.ID {
		t.Fatalf("DueCallbacks = %v, %v; want the operation", due, err)
	}

	// Claim one: it is not due again until the lease ends, and a second
	// claim is refused.
	now := time.Now()
	cbID := done.Callbacks[0].ID
	_, claimed, err := c.ClaimCallback(bg, op.ID, cbID, now, time.Minute)
	if err != nil || claimed.Attempts != 1 {
		t.Fatalf("ClaimCallback = %+v, %v", claimed, err)
	}
	if _, _, err := c.ClaimCallback(bg, op.ID, cbID, now, time.Minute); !errors.Is(err, arr.ErrCallbackNotDue) {
		t.Fatalf("second claim = %v, want ErrCallbackNotDue", err)
	}
	// A retry scheduled, then a stale record (an older claim) ignored.
	next := now.Add(time.Hour)
	if err := c.RecordCallback(bg, op.ID, claimed, now, arr.CallbackResult{Status: 503, Error: "the target answered 503", Next: next}); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Get(bg, op.ID)
	if cb := got.Callbacks[0]; cb.State != operation.CallbackPending || !cb.NextAt.Equal(next) || cb.LastStatus != 503 || cb.LastError == "" {
		t.Fatalf("after a failed attempt: %+v", cb)
	}
	if err := c.RecordCallback(bg, op.ID, claimed, now, arr.CallbackResult{Delivered: true, Status: 200}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(bg, op.ID); got.Callbacks[0].State != operation.CallbackPending {
		t.Fatalf("a stale claim's record changed the callback: %+v", got.Callbacks[0])
	}
	// Both delivered: nothing is due any more.
	for _, id := range []string{got.Callbacks[0].ID, got.Callbacks[1].ID} {
		_, cl, err := c.ClaimCallback(bg, op.ID, id, next, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RecordCallback(bg, op.ID, cl, next, arr.CallbackResult{Delivered: true, Status: 204}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = st.Get(bg, op.ID)
	if !got.CallbackDueAt.IsZero() || got.Callbacks[0].State != operation.CallbackDelivered || got.Callbacks[0].DeliveredAt.IsZero() {
		t.Fatalf("after delivery: due %s, %+v", got.CallbackDueAt, got.Callbacks)
	}
	if due, _ := c.DueCallbacks(bg, time.Now().Add(2*time.Hour), 10); len(due) != 0 {
		t.Fatalf("DueCallbacks after delivery = %v", due)
	}

	// Redelivery: the owner's, not another caller's.
	bob := arr.WithCaller(bg, arr.Caller{Principal: "bob"})
	if _, err := c.RedeliverCallbacks(bob, op.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("another caller's redelivery = %v, want not found", err)
	}
	re, err := c.RedeliverCallbacks(ctx, op.ID)
	if err != nil || re.CallbackDueAt.IsZero() || re.Callbacks[0].State != operation.CallbackPending || re.Callbacks[0].ID != cbID || re.Callbacks[0].RedeliveredAt.IsZero() {
		t.Fatalf("RedeliverCallbacks = %+v, %v; want pending again under the same id", re, err)
	}
}

// A failed attempt that will be retried owes nothing; the final failure
// and a cancel do; a route without callbacks owes none.
func TestFailureAndCancelOweCallbacks(t *testing.T) {
	c, _ := newCallbackCore(t, false, 0)
	bg := context.Background()
	op, _, _ := c.Submit(bg, arr.Submission{Route: "hooks"})
	canceled, err := c.Cancel(bg, op.ID)
	if err != nil || len(canceled.Callbacks) != 1 || canceled.Callbacks[0].Event != "canceled" {
		t.Fatalf("Cancel = %+v, %v; want one canceled callback", canceled, err)
	}
	op, _, _ = c.Submit(bg, arr.Submission{Route: "hooks"})
	for i := range 3 {
		a, _, err := c.StartAttempt(bg, op.ID, false)
		if err != nil || a == nil {
			t.Fatal(err)
		}
		d := a.Fail(bg, errors.New("boom"), false)
		a.Close()
		got, _ := c.Get(bg, op.ID)
		if i < 2 && (d.Outcome != "retried" || len(got.Callbacks) != 0) {
			t.Fatalf("attempt %d: %+v, callbacks %+v; want a retry owing nothing", i+1, d, got.Callbacks)
		}
		if i == 2 && (d.Outcome != "failed" || len(got.Callbacks) != 1 || got.Callbacks[0].Event != "failed") {
			t.Fatalf("final failure: %+v, callbacks %+v", d, got.Callbacks)
		}
	}
	plain, _, _ := c.Submit(bg, arr.Submission{Route: "plain"})
	run(t, c, plain.ID)
	if got, _ := c.Get(bg, plain.ID); len(got.Callbacks) != 0 {
		t.Fatalf("a route without callbacks owes %+v", got.Callbacks)
	}
}

// A route that calls back on every change owes pending, running and the
// terminal state; MaxCallbacks keeps the newest, dropping finished ones
// first.
func TestEveryChangeAndMaxCallbacks(t *testing.T) {
	c, _ := newCallbackCore(t, true, 2)
	bg := context.Background()
	op, _, _ := c.Submit(bg, arr.Submission{Route: "hooks"})
	if len(op.Callbacks) != 1 || op.Callbacks[0].Event != "pending" {
		t.Fatalf("submitted: %+v, want a pending event", op.Callbacks)
	}
	// Deliver the first, so that it is the one trimmed.
	_, cl, err := c.ClaimCallback(bg, op.ID, op.Callbacks[0].ID, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RecordCallback(bg, op.ID, cl, time.Now(), arr.CallbackResult{Delivered: true, Status: 200}); err != nil {
		t.Fatal(err)
	}
	run(t, c, op.ID)
	got, _ := c.Get(bg, op.ID)
	var events []string
	for _, cb := range got.Callbacks {
		events = append(events, cb.Event+"/"+cb.State)
	}
	if strings.Join(events, " ") != "running/pending succeeded/pending" {
		t.Fatalf("events = %v, want running and succeeded pending (the delivered pending one trimmed at 2)", events)
	}
}

// An operation a program submitted without a caller is anonymous's: its
// requested callback is signed with anonymous's secret.
func TestUnownedCallbackIsAnonymous(t *testing.T) {
	c, _ := newCallbackCore(t, false, 0)
	bg := context.Background()
	op, _, err := c.Submit(bg, arr.Submission{Route: "hooks", CallbackURL: "https://requested.example/x"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c, op.ID)
	got, _ := c.Get(bg, op.ID)
	for _, cb := range got.Callbacks {
		if cb.URL == "https://requested.example/x" && cb.Secret != arr.PrincipalSecretScope(arr.Anonymous) {
			t.Fatalf("an unowned operation's callback is signed for %q", cb.Secret)
		}
	}
	if arr.PrincipalSecretScope("") != arr.PrincipalSecretScope(arr.Anonymous) {
		t.Fatal("the scope of no principal is not anonymous's")
	}
}
