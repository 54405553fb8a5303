package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/worker"
)

// BenchmarkEchoDrain drains b.N echo operations of one route through a
// pool of 16 over the mem engine, with the default route share (3/4) and
// without one (1): what the share costs a single-route workload.
func BenchmarkEchoDrain(b *testing.B) {
	for _, share := range []float64{1, worker.DefaultRouteShare} {
		b.Run(fmt.Sprintf("share=%g", share), func(b *testing.B) {
			e := mem.New()
			defer e.Close()
			c, err := arr.New(arr.Config{Store: opstore.New(e.Store()), Queue: queue.New(e.Queue(mem.QueueOptions{})),
				Results: resultstore.New(e.Results()), Routes: []arr.Route{{Pattern: "POST /echo", Name: "echo", Handler: arr.Echo}},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, b.N)
			for i := range ids {
				op, _, err := c.Submit(context.Background(), arr.Submission{Route: "echo", Request: &operation.Request{Body: []byte("x")}})
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = op.ID
			}
			p, err := worker.New(worker.Config{Client: c, Concurrency: 16, RouteShare: share,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.ResetTimer()
			go func() { _ = p.Run(ctx); close(done) }()
			for _, id := range ids {
				if _, err := c.Wait(context.Background(), id); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
