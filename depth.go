package arr

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// depthTTL is how long a queue depth read from the queue is reused. Reading
// it costs a round trip or more on a shared engine (a count in PostgreSQL,
// stream and consumer info in JetStream), and every submit and every
// status read of a pending operation needs it; the bound it enforces and
// the Retry-After it estimates need not be exact.
const depthTTL = 250 * time.Millisecond

// depthGauge estimates the queue depth: the last depth read from the queue
// plus the operations this process enqueued since, read afresh once it is
// older than depthTTL. Within one process the estimate never lags its own
// submits, so a bound like MaxQueue holds exactly for one api process and
// within depthTTL's worth of other processes' submits for several.
type depthGauge struct {
	read func(context.Context) (int64, error)

	mu    sync.Mutex
	depth int64
	at    time.Time
	added atomic.Int64 // enqueued by this process since at
}

// get returns the estimated depth.
func (g *depthGauge) get(ctx context.Context) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.at.IsZero() && time.Since(g.at) < depthTTL {
		return g.depth + g.added.Load(), nil
	}
	added := g.added.Load()
	d, err := g.read(ctx)
	if err != nil {
		return 0, err
	}
	// Submits that finished during the read may or may not be in d; they
	// are counted once more until the next read rather than not at all.
	g.added.Add(-added)
	g.depth, g.at = d, time.Now()
	return d + g.added.Load(), nil
}

// enqueued counts an operation this process enqueued.
func (g *depthGauge) enqueued() { g.added.Add(1) }
