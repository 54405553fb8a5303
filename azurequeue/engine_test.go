package azurequeue

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/queue"
)

// TestEngine opens the queue by URL, as the arr binary does: keyless,
// through azclient's DefaultAzureCredential (here a managed identity
// endpoint of the App Service kind handing out Azurite's tokens) and
// azclient's HTTP client.
func TestEngine(t *testing.T) {
	e := newEnv(t)
	env, requests := e.srv.IdentityEndpoint(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	u := "azqueue://" + e.cfg.Queue + "?" + url.Values{
		"endpoint": {e.srv.QueueURL()}, "table_endpoint": {e.srv.TableURL()},
		"table": {e.cfg.Table}, "max_deliveries": {"3"}, "lease": {"5s"},
	}.Encode()
	eng, err := engine.Open(ctx, u)
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	defer eng.Close()
	if eng.Caps() != (engine.Caps{}) || eng.Atomic() != nil {
		t.Fatalf("Caps = %+v, Atomic = %v; want none", eng.Caps(), eng.Atomic())
	}
	if _, err := eng.Store(ctx); !errors.Is(err, engine.ErrNoPort) {
		t.Fatalf("Store = %v, want ErrNoPort", err)
	}
	if _, err := eng.Results(ctx); !errors.Is(err, engine.ErrNoPort) {
		t.Fatalf("Results = %v, want ErrNoPort", err)
	}
	q, err := eng.Queue(ctx)
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	if err := q.Enqueue(ctx, queue.Message{ID: "m", Body: []byte("b")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	ds, err := q.Receive(ctx, 1, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %d, %v", len(ds), err)
	}
	if err := ds[0].Ack(ctx); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	// Azurite refuses requests without a bearer token, so the queue's
	// work above took one from the credential. The endpoint is asked at
	// most once: MSAL caches managed identity tokens for the process, so a
	// second run of this test in one process (-count) asks it none.
	if n := requests(); n > 1 {
		t.Fatalf("the managed identity endpoint was asked for %d tokens, want at most 1 (cached)", n)
	}
	if _, err := engine.Open(ctx, "azqueue://work?account=acct1&bogus=1"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("engine.Open with an unknown parameter = %v", err)
	}
}
