package worker_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// shareRig runs a pool of 4 slots over two routes: "slow", whose handlers
// block until the test ends (counting how many run at once), with the
// given Concurrency of its own, and "fast", which echoes.
func shareRig(t *testing.T, slowConcurrency int, share float64) (c *arr.Client, running, peak *atomic.Int64) {
	t.Helper()
	r := newRig(t)
	release := make(chan struct{})
	running, peak = new(atomic.Int64), new(atomic.Int64)
	slow := worker.HandlerFunc(func(ctx context.Context, _ *worker.Task, _ worker.Progress) (*worker.Result, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &worker.Result{}, nil
	})
	c = r.client(t, arr.Config{Routes: []arr.Route{
		{Pattern: "POST /slow", Name: "slow", Handler: slow, Concurrency: slowConcurrency},
		{Pattern: "POST /fast", Name: "fast", Handler: worker.Echo},
	}})
	p, err := worker.New(worker.Config{Client: c, Concurrency: 4, RouteShare: share, ShutdownGrace: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() { close(release); cancel(); <-done })
	return c, running, peak
}

func submitN(t *testing.T, c *arr.Client, route string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		op, _, err := c.Submit(context.Background(), arr.Submission{Route: route, Request: &operation.Request{Body: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.ID)
	}
	return ids
}

// By default no route holds every slot: a route whose handlers block
// holds 3 of 4 (its share, DefaultRouteShare), and another route's
// operations, queued behind a backlog of the blocked route's, still run.
func TestRouteShareLeavesSlotsToOtherRoutes(t *testing.T) {
	c, running, peak := shareRig(t, 0, 0)
	submitN(t, c, "slow", 20)
	waitFor(t, func() bool { return running.Load() == 3 })
	for _, id := range submitN(t, c, "fast", 5) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		op, err := c.Wait(ctx, id)
		cancel()
		if err != nil || op.Status != operation.Succeeded {
			t.Fatalf("fast operation %s: %v, %v; a blocked route starved it", id, op, err)
		}
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("the blocked route ran %d at once, want its share of 3", p)
	}
}

// A route's own Concurrency wins over the default share, and a share of 1
// is no share: the route may then hold every slot.
func TestRouteShareOverridden(t *testing.T) {
	for _, tc := range []struct {
		name        string
		concurrency int
		share       float64
	}{{"own concurrency", 4, 0}, {"share 1", 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c, running, _ := shareRig(t, tc.concurrency, tc.share)
			submitN(t, c, "slow", 8)
			waitFor(t, func() bool { return running.Load() == 4 })
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
