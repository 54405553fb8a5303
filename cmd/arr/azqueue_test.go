package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/arrhq/arr/azurequeue"
	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/queue/driver"
)

// TestServeOnAzureQueue runs `arr serve` with its queue on Azurite's
// queue and table services (-queue azqueue://…), keyless: the process gets
// its tokens from a managed identity endpoint, as on Azure Container Apps.
// Every operation submitted succeeds with its own result, and the queue
// ends empty.
func TestServeOnAzureQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	srv := azuritetest.Start(t)
	env, tokens := srv.IdentityEndpoint(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name, table := "arrserve-"+hex.EncodeToString(b), "arrserve"+hex.EncodeToString(b)
	co := srv.ClientOptions()
	cred := azuritetest.Credential()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, q := range []string{name, name + "-poison"} {
			if c, err := azqueue.NewQueueClient(srv.QueueURL()+"/"+q, cred, &azqueue.ClientOptions{ClientOptions: co}); err == nil {
				_, _ = c.Delete(ctx, nil)
			}
		}
		if c, err := aztables.NewClient(srv.TableURL()+"/"+table, cred, &aztables.ClientOptions{ClientOptions: co}); err == nil {
			_, _ = c.Delete(ctx, nil)
		}
	})
	queueURL := "azqueue://" + name + "?" + url.Values{
		"endpoint": {srv.QueueURL()}, "table_endpoint": {srv.TableURL()}, "table": {table},
	}.Encode()
	p := startProc(t, "serve", freeAddr(t), t.TempDir(), env, "-queue", queueURL, "-lease", "5s")
	defer p.stop(t)

	hc := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + p.addr
	const n = 20
	ids := make([]string, n)
	var retried atomic.Int64
	for i := range n {
		id, err := submitRetrying(hc, base+"/v1/echo", fmt.Sprintf(`{"n":%d}`, i), fmt.Sprintf("azq-%d", i), &retried)
		if err != nil {
			t.Fatalf("submission %d: %v\n%s", i, err, tail(p.log.String(), 3000))
		}
		ids[i] = id
	}
	deadline := time.Now().Add(time.Minute)
	for i, id := range ids {
		waitResult(t, hc, base, i, id, fmt.Sprintf(`{"n":%d}`, i), deadline)
	}
	if tokens() == 0 {
		t.Fatalf("arr asked no token of the managed identity endpoint")
	}

	// The queue ends empty (the worker acks after the result is stored).
	q, err := azurequeue.Open(context.Background(), azurequeue.Config{
		Queue: name, QueueEndpoint: srv.QueueURL(), TableEndpoint: srv.TableURL(), Table: table,
	}, &azurequeue.Options{Credential: cred, ClientOptions: &co})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for {
		st, err := q.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st == (driver.Stats{}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue Stats = %+v after every operation succeeded, want empty", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
