// Package queue is the portable work queue: at-least-once delivery under
// leases, delayed redelivery, attempt counts and dead letters. An engine
// hands one out (see package engine); a driver's own package may also
// construct one with New.
package queue

import (
	"context"
	"time"

	"github.com/arrhq/arr/queue/driver"
)

// Types and errors of the queue.
type (
	Message  = driver.Message
	Delivery = driver.Delivery
	Stats    = driver.Stats
)

var (
	ErrLeaseLost = driver.ErrLeaseLost
	ErrClosed    = driver.ErrClosed
)

// Queue is the portable queue over a driver.
type Queue struct {
	d driver.Queue
}

// New wraps a driver. Engines call it (see package engine).
func New(d driver.Queue) *Queue { return &Queue{d: d} }

// Driver returns the driver under q.
func (q *Queue) Driver() driver.Queue { return q.d }

// Enqueue: see driver.Queue.Enqueue.
func (q *Queue) Enqueue(ctx context.Context, msgs ...Message) error { return q.d.Enqueue(ctx, msgs...) }

// Receive: see driver.Queue.Receive.
func (q *Queue) Receive(ctx context.Context, max int, lease time.Duration) ([]Delivery, error) {
	return q.d.Receive(ctx, max, lease)
}

// Stats: see driver.Queue.Stats.
func (q *Queue) Stats(ctx context.Context) (Stats, error) { return q.d.Stats(ctx) }

// Close closes the driver.
func (q *Queue) Close() error { return q.d.Close() }

// AckLazy acks d without waiting for durability when its driver can (see
// driver.LazyAcker), and with Ack otherwise.
func AckLazy(ctx context.Context, d Delivery) error {
	if l, ok := d.(driver.LazyAcker); ok {
		return l.AckLazy(ctx)
	}
	return d.Ack(ctx)
}
