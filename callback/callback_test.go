package callback_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/callback"
	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/webhook"
)

// received is what a test receiver got.
type received struct {
	mu     sync.Mutex
	events []webhook.Event
	ids    []string
	times  []time.Time
	bad    int // requests whose signature did not verify
}

// receiver is a callback target on 127.0.0.1 that verifies each request
// with secret and answers with answer(n) for its n-th request (from 1).
func receiver(t *testing.T, secret func() []byte, answer func(n int, w http.ResponseWriter)) (*httptest.Server, *received) {
	t.Helper()
	got := &received{}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret(), r.Header, body, time.Now(), 0); err != nil {
			got.mu.Lock()
			got.bad++
			got.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil || r.Header.Get("Content-Type") != webhook.ContentType {
			t.Errorf("callback body %q (%s): %v", body, r.Header.Get("Content-Type"), err)
		}
		got.mu.Lock()
		got.events = append(got.events, ev)
		got.ids = append(got.ids, r.Header.Get("webhook-id"))
		got.times = append(got.times, time.Now())
		got.mu.Unlock()
		answer(int(n.Add(1)), w)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func (g *received) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.events)
}

type rig struct {
	c       *arr.Client
	st      *opstore.Store
	secrets *callback.Secrets
	reg     *prometheus.Registry
}

// newRig is a core over the mem engine whose "hooks" route calls target
// back, and a dispatcher running with a fast backoff; allow exempts the
// test receivers on 127.0.0.1 (sender is nil for the default one).
func newRig(t *testing.T, target string, allow string, cfg callback.Config) *rig {
	t.Helper()
	e := mem.New()
	t.Cleanup(func() { e.Close() })
	st := opstore.New(e.Store())
	c, err := arr.New(arr.Config{Store: st, Queue: queue.New(e.Queue(mem.QueueOptions{})), Results: resultstore.New(e.Results()),
		Routes: []arr.Route{{Pattern: "POST /v1/hooks", Name: "hooks", Handler: arr.Echo,
			Callbacks: []arr.CallbackTarget{{URL: target}}}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := callback.NewSecrets(context.Background(), urlsign.NewMemKeys())
	if err != nil {
		t.Fatal(err)
	}
	al, err := webhook.ParseAllowList(allow)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Client, cfg.Secrets, cfg.Allow, cfg.Registerer = c, secrets, al, reg
	cfg.Render = func(_ context.Context, op *operation.Operation) ([]byte, error) { return json.Marshal(op) }
	cfg.Source = "https://arr.example"
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = webhook.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	}
	cfg.Poll = 20 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := callback.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &rig{c: c, st: st, secrets: secrets, reg: reg}
}

func (r *rig) secret() []byte {
	raw, err := webhook.ParseSecret(r.secrets.For(context.Background(), arr.RouteSecretScope("hooks"))[0].Value)
	if err != nil {
		panic(err)
	}
	return raw
}

// finish submits an operation to hooks and runs it to success.
func (r *rig) finish(t *testing.T) *operation.Operation {
	t.Helper()
	ctx := context.Background()
	op, _, err := r.c.Submit(ctx, arr.Submission{Route: "hooks", Request: &operation.Request{Body: []byte("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := r.c.StartAttempt(ctx, op.ID, false)
	if err != nil || a == nil {
		t.Fatalf("StartAttempt: %v", err)
	}
	defer a.Close()
	res, err := a.StoreResult(ctx, &arr.Result{Body: []byte("done")})
	if err != nil {
		t.Fatal(err)
	}
	a.Succeed(ctx, res)
	return op
}

// waitFor polls the operation until its first callback satisfies ok.
func (r *rig) waitFor(t *testing.T, id string, what string, ok func(operation.Callback) bool) operation.Callback {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		op, err := r.st.Get(context.Background(), id)
		if err == nil && len(op.Callbacks) > 0 && ok(op.Callbacks[0]) {
			return op.Callbacks[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for the callback to be %s: %+v", what, op.Callbacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A target that answers 503 with Retry-After: 1 gets the same event
// again, under the same id, no sooner than a second later, signed each
// time; the operation then shows it delivered.
func TestDeliversSignedAndRetriesUnderTheSameID(t *testing.T) {
	var r *rig
	srv, got := receiver(t, func() []byte { return r.secret() }, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r = newRig(t, srv.URL+"/hook?token=x", srv.Listener.Addr().String(), callback.Config{})
	op := r.finish(t)
	cb := r.waitFor(t, op.ID, "delivered", func(c operation.Callback) bool { return c.State == operation.CallbackDelivered })
	if cb.Attempts != 2 || cb.LastStatus != http.StatusNoContent || cb.DeliveredAt.IsZero() {
		t.Fatalf("delivered callback %+v: want 2 attempts, 204", cb)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.events) != 2 || got.bad != 0 {
		t.Fatalf("receiver got %d events, %d unverified; want 2, 0", len(got.events), got.bad)
	}
	if got.ids[0] != cb.ID || got.ids[1] != cb.ID || got.events[1].ID != cb.ID {
		t.Fatalf("webhook-ids %v, event id %s; want %s each time", got.ids, got.events[1].ID, cb.ID)
	}
	if gap := got.times[1].Sub(got.times[0]); gap < time.Second {
		t.Fatalf("the retry came %s after a Retry-After: 1", gap)
	}
	ev := got.events[1]
	if ev.Type != "arr.operation.succeeded" || ev.Subject != op.ID || ev.Source != "https://arr.example" || ev.SpecVersion != "1.0" {
		t.Fatalf("event %+v", ev)
	}
	var data operation.Operation
	if err := json.Unmarshal(ev.Data, &data); err != nil || data.ID != op.ID || data.Status != operation.Succeeded {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	if n := counterValue(t, r.reg, "arr_callback_attempts_total", "retried"); n != 1 {
		t.Fatalf("retried attempts counted %v, want 1", n)
	}
}

// counterValue is the value of the counter name{outcome}.
func counterValue(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// 410 Gone stops the callback for good after one attempt.
func TestGoneStops(t *testing.T) {
	var r *rig
	srv, got := receiver(t, func() []byte { return r.secret() }, func(int, http.ResponseWriter) {})
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.mu.Lock()
		got.events = append(got.events, webhook.Event{})
		got.mu.Unlock()
		w.WriteHeader(http.StatusGone)
	})
	r = newRig(t, srv.URL, srv.Listener.Addr().String(), callback.Config{})
	op := r.finish(t)
	cb := r.waitFor(t, op.ID, "failed", func(c operation.Callback) bool { return c.State == operation.CallbackFailed })
	time.Sleep(300 * time.Millisecond) // more than the backoff: no second attempt comes
	if cb.Attempts != 1 || cb.LastStatus != http.StatusGone || got.count() != 1 {
		t.Fatalf("after 410: %+v, %d requests; want one attempt, failed", cb, got.count())
	}
}

// A target on loopback that the allow-list does not exempt is refused
// without a request, and fails at once.
func TestPrivateTargetRefused(t *testing.T) {
	var r *rig
	srv, got := receiver(t, func() []byte { return r.secret() }, func(_ int, w http.ResponseWriter) { w.WriteHeader(200) })
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	r = newRig(t, "http://localhost:"+port+"/hook", "*", callback.Config{})
	op := r.finish(t)
	cb := r.waitFor(t, op.ID, "failed", func(c operation.Callback) bool { return c.State == operation.CallbackFailed })
	if got.count() != 0 || cb.LastError == "" {
		t.Fatalf("a refused target got %d requests; callback %+v", got.count(), cb)
	}
	if n := counterValue(t, r.reg, "arr_callback_attempts_total", "refused"); n != 1 {
		t.Fatalf("refused attempts counted %v, want 1", n)
	}
}

// A callback not delivered within MaxAge of its event fails.
func TestMaxAgeGivesUp(t *testing.T) {
	var r *rig
	srv, _ := receiver(t, func() []byte { return r.secret() }, func(_ int, w http.ResponseWriter) { w.WriteHeader(500) })
	r = newRig(t, srv.URL, srv.Listener.Addr().String(), callback.Config{MaxAge: 300 * time.Millisecond})
	op := r.finish(t)
	cb := r.waitFor(t, op.ID, "failed", func(c operation.Callback) bool { return c.State == operation.CallbackFailed })
	if cb.Attempts < 2 || cb.LastStatus != 500 {
		t.Fatalf("given up after %d attempts (%+v); want several 500s first", cb.Attempts, cb)
	}
}

// No more attempts than MaxPerDestination are in flight to one target,
// and every callback is delivered.
func TestPerDestinationBound(t *testing.T) {
	var r *rig
	var inFlight, peak atomic.Int64
	srv, got := receiver(t, func() []byte { return r.secret() }, func(_ int, w http.ResponseWriter) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(200)
	})
	r = newRig(t, srv.URL, srv.Listener.Addr().String(), callback.Config{MaxPerDestination: 2})
	var ids []string
	for range 12 {
		ids = append(ids, r.finish(t).ID)
	}
	for _, id := range ids {
		r.waitFor(t, id, "delivered", func(c operation.Callback) bool { return c.State == operation.CallbackDelivered })
	}
	if p := peak.Load(); p > 2 || p < 1 || got.count() != 12 {
		t.Fatalf("peak in flight %d (bound 2), %d delivered of 12", p, got.count())
	}
}
