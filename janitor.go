package arr

import (
	"context"
	"time"

	"github.com/arrhq/arr/operation"
)

// DefaultJanitorInterval is how often RunJanitor works when given no
// interval.
const DefaultJanitorInterval = time.Minute

// sweepEvery is how many janitor rounds pass between two sweeps, and
// sweepAge how long an operation must have been pending unchanged before
// a sweep re-enqueues it.
const (
	sweepEvery = 10
	sweepAge   = time.Minute
)

// RunJanitor expires operations every interval (<= 0:
// DefaultJanitorInterval) until ctx ends (see Expire) and, on an engine
// without one-step writes, sweeps every sweepEvery rounds (see Sweep).
func (c *Client) RunJanitor(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultJanitorInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			c.Expire(ctx, now)
			if c.atomic == nil && round%sweepEvery == 0 {
				c.Sweep(ctx, now.Add(-sweepAge))
			}
		}
	}
}

// expireBatch is how many operations one store call deletes.
const expireBatch = 1000

// Expire deletes the operations past their retention at now, and then
// their results, and purges tombstones past their time. A crash between
// the two leaves a result without an operation; it is never served again
// (its URLs need the operation) but takes room until removed.
func (c *Client) Expire(ctx context.Context, now time.Time) {
	for ctx.Err() == nil {
		ops, err := c.cfg.Store.DeleteExpired(ctx, now, expireBatch)
		for _, op := range ops {
			if c.budgeted() {
				c.stored.add(op.ID, op.Tenant, -(op.RequestBytes + resultBytes(op.Result)))
			}
			if op.Result != nil {
				if err := c.cfg.Results.Delete(ctx, op.Result.Key); err != nil {
					c.cfg.Logger.Error("arr: delete expired result", "id", op.ID, "err", err)
				}
			}
		}
		if err != nil {
			c.cfg.Logger.Error("arr: delete expired", "err", err)
		}
		if err != nil || len(ops) < expireBatch {
			return
		}
	}
}

// sweepBatch bounds the operations one Sweep reads.
const sweepBatch = 100

// Sweep repairs what a crash between two writes can leave on an engine
// that cannot write an operation and its message in one step: it reads
// the next sweepBatch operations (in creation order, continuing where the
// last call stopped, and starting over after the last) and enqueues again
// the message of each that is pending and was last changed before
// `before`. Enqueuing a message that is queued is a no-op, so only a
// message that was lost is restored. It reads all operations rather than
// asking the store for the pending ones, because a store without a status
// index (NATS) would read every operation to find them; a sweep costs one
// page.
func (c *Client) Sweep(ctx context.Context, before time.Time) {
	c.sweepMu.Lock()
	defer c.sweepMu.Unlock()
	ops, next, err := c.cfg.Store.List(ctx, ListOptions{After: c.sweepCursor, Limit: sweepBatch})
	if err != nil {
		c.cfg.Logger.Error("arr: sweep", "err", err)
		return
	}
	c.sweepCursor = next
	for _, op := range ops {
		if op.Status != operation.Pending || op.UpdatedAt.After(before) {
			continue
		}
		if err := c.cfg.Queue.Enqueue(ctx, Message{ID: op.ID, Route: op.Route}.Encode()); err != nil {
			c.cfg.Logger.Error("arr: sweep: enqueue", "id", op.ID, "err", err)
			return
		}
	}
}
