// Package driver defines the interface a queue driver implements. Users use
// the portable type in package queue; every driver must pass the
// conformance suite in package queue/queuetest.
//
// Delivery is at least once: a message is delivered again until it is
// acknowledged (Ack) or dead-lettered (Term, or MaxDeliveries reached). The
// vocabulary is JetStream's: Ack, Nak with a delay, InProgress to extend the
// lease, Term to give up.
package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors a driver returns; they may be wrapped.
var (
	// ErrLeaseLost: the message was delivered again after this delivery's
	// lease expired, or this delivery was already acked, naked or termed.
	// (A delivery whose lease expired but whose message was not yet
	// delivered again may still settle it.)
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue: closed")
)

// Message is one unit of work.
type Message struct {
	// ID identifies the message; enqueuing an ID that is already queued (not
	// yet acked or dead) is a no-op, so a retried Enqueue does not duplicate.
	// Enqueuing the ID of a dead letter revives it: the dead letter is
	// removed and the message is queued again.
	ID string
	// Body is opaque to the queue.
	Body []byte
	// Delay defers the first delivery.
	Delay time.Duration
}

// Delivery is one delivery of a message to a receiver, under a lease. Until
// the lease ends, the message is not delivered to anyone else.
type Delivery interface {
	Message() Message
	// Attempt is 1 on the first delivery and grows by one on each
	// redelivery (after Nak or an expired lease).
	Attempt() int
	// Ack removes the message for good.
	Ack(ctx context.Context) error
	// Nak gives the message back, to be delivered again after delay.
	Nak(ctx context.Context, delay time.Duration) error
	// InProgress extends the lease to lease from now (a heartbeat).
	InProgress(ctx context.Context, lease time.Duration) error
	// Term dead-letters the message: it is never delivered again.
	Term(ctx context.Context, reason string) error
}

// LazyAcker is implemented by deliveries that can be acked without waiting
// for the removal to be durable: it takes effect at once and becomes
// durable with the queue's next durable write; a crash before that may
// deliver the message again, which at-least-once delivery allows. The
// worker acks lazily once the operation's terminal state is durable, since
// a redelivered finished operation is acked without running.
type LazyAcker interface {
	AckLazy(ctx context.Context) error
}

// Stats counts the messages in a queue.
type Stats struct {
	Ready    int64 // deliverable now
	Delayed  int64 // waiting for their delay or backoff
	InFlight int64 // leased to a receiver
	Dead     int64 // dead-lettered
}

// Queue is a durable work queue. Every method is safe for concurrent use.
// Enqueue, Ack, Nak and Term are durable when they return nil.
type Queue interface {
	// Enqueue durably adds messages.
	Enqueue(ctx context.Context, msgs ...Message) error
	// Receive waits until at least one message is deliverable or ctx is
	// done, then returns up to max deliveries (max <= 0 means 1), each
	// leased for lease (<= 0: the driver's default lease). A
	// message whose lease ends without Ack, Nak, InProgress or Term becomes
	// deliverable again. A message delivered MaxDeliveries times (a driver
	// option) and not acked is dead-lettered instead of delivered again.
	Receive(ctx context.Context, max int, lease time.Duration) ([]Delivery, error)
	// Stats counts the messages by state.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the queue; a blocked Receive returns ErrClosed.
	Close() error
}

// EnqueueEach is the Enqueue of drivers that write one message at a time:
// it calls one for the first message of each ID in msgs (within one call
// the first message of an ID wins), at most parallel at once, and returns
// the failures joined, each as "<name>: enqueue <ID>: <error>".
func EnqueueEach(ctx context.Context, name string, msgs []Message, parallel int, one func(context.Context, Message) error) error {
	seen := make(map[string]bool, len(msgs))
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, max(parallel, 1))
		emu  sync.Mutex
		errs []error
	)
	for _, m := range msgs {
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := one(ctx, m); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: enqueue %s: %w", name, m.ID, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
