package arr

import (
	"context"
	"time"

	"github.com/arrhq/arr/operation"
)

// DefaultJanitorInterval is how often RunJanitor works when given no
// interval.
const DefaultJanitorInterval = time.Minute

// RunJanitor expires operations every interval (<= 0:
// DefaultJanitorInterval) until ctx ends: see Expire and Sweep.
func (c *Client) RunJanitor(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultJanitorInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			c.Expire(ctx, now)
			if c.atomic == nil {
				c.Sweep(ctx, now.Add(-interval))
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

// sweepBatch bounds the operations one Sweep looks at.
const sweepBatch = 1000

// Sweep repairs what a crash between two writes can leave on an engine
// that cannot write an operation and its message in one step: it enqueues
// again the message of every pending operation last changed before
// `before` (at most sweepBatch of them per call, continuing where the last
// call stopped). Enqueuing a message that is queued is a no-op, so only a
// message that was lost is restored.
func (c *Client) Sweep(ctx context.Context, before time.Time) {
	c.sweepMu.Lock()
	defer c.sweepMu.Unlock()
	ops, next, err := c.cfg.Store.List(ctx, ListOptions{Status: []operation.Status{operation.Pending}, After: c.sweepCursor, Limit: sweepBatch})
	if err != nil {
		c.cfg.Logger.Error("arr: sweep", "err", err)
		return
	}
	c.sweepCursor = next
	for _, op := range ops {
		if op.UpdatedAt.After(before) {
			continue
		}
		if err := c.cfg.Queue.Enqueue(ctx, Message{ID: op.ID, Route: op.Route}.Encode()); err != nil {
			c.cfg.Logger.Error("arr: sweep: enqueue", "id", op.ID, "err", err)
			return
		}
	}
}
