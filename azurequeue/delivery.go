package azurequeue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/arrhq/arr/queue/driver"
)

// delivery is one delivery of an Azure message: its pop receipt (Azure's
// lease) and the ETag of the index entity the delivery wrote. Its calls
// are serialized.
type delivery struct {
	q       *Queue
	msgID   string
	f       frame
	attempt int

	mu       sync.Mutex
	pop      string
	etag     azcore.ETag
	done     bool
	unindexd bool // Ack removed the entity but not yet the message
}

var _ driver.Delivery = (*delivery)(nil)

func (d *delivery) Message() driver.Message {
	return driver.Message{ID: d.f.id, Body: append([]byte(nil), d.f.body...)}
}

func (d *delivery) Attempt() int { return d.attempt }

// finish voids the delivery; d.mu is held.
func (d *delivery) finish() {
	d.done = true
	d.q.forget(d)
}

// Ack removes the message: its entity first (if no one re-leased it since
// this delivery wrote it), then the message. A crash between the two
// leaves the message unindexed; it comes back when its lease ends and is
// delivered again.
func (d *delivery) Ack(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return driver.ErrLeaseLost
	}
	if !d.unindexd {
		if err := d.q.remove(ctx, d.f.id, d.etag); isChanged(err) {
			d.finish()
			return driver.ErrLeaseLost
		} else if err != nil {
			return fmt.Errorf("azqueue: ack %s: %w", d.f.id, err)
		}
		d.unindexd = true
	}
	if _, err := d.q.main.DeleteMessage(ctx, d.msgID, d.pop, nil); isPopLost(err) {
		// Dequeued again after the lease ended: it will be delivered
		// again (and indexed by its receiver).
		d.finish()
		return driver.ErrLeaseLost
	} else if err != nil {
		return fmt.Errorf("azqueue: ack %s: %w", d.f.id, err)
	}
	d.finish()
	return nil
}

// update sets the message's visibility (and text) under this delivery's
// pop receipt, keeping the new receipt.
func (d *delivery) update(ctx context.Context, vis time.Duration) error {
	r, err := d.q.main.UpdateMessage(ctx, d.msgID, d.pop, d.f.encode(), &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(visibility(vis))})
	if err != nil {
		return err
	}
	if r.PopReceipt != nil {
		d.pop = *r.PopReceipt
	}
	return nil
}

// Nak makes the message visible again after delay (Azure's UpdateMessage;
// past the 7-day cap the message carries its due time and is hidden again
// when taken early), then indexes it as queued; at MaxDeliveries it
// dead-letters it.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.unindexd {
		return driver.ErrLeaseLost
	}
	if max := d.q.cfg.MaxDeliveries; max > 0 && d.attempt >= max {
		return d.deadLetter(ctx, "max deliveries reached")
	}
	delay = max(delay, 0)
	now := time.Now()
	if delay > maxVisibility {
		d.f.due = ms(now.Add(delay))
	} else {
		d.f.due = 0
	}
	if err := d.update(ctx, delay); isPopLost(err) {
		d.finish()
		return driver.ErrLeaseLost
	} else if err != nil {
		return fmt.Errorf("azqueue: nak %s: %w", d.f.id, err)
	}
	d.finish()
	e := entry{ID: d.f.id, State: stQueued, Msg: d.msgID, At: ms(now.Add(delay)), Deliveries: int64(d.attempt)}
	if _, err := d.q.put(ctx, e, d.etag); err != nil && !isChanged(err) {
		// The Nak holds in Azure; the entity says leased until it is
		// delivered again.
		return fmt.Errorf("azqueue: nak %s: indexing: %w", d.f.id, err)
	}
	return nil
}

// InProgress extends the lease in Azure, then in the index.
func (d *delivery) InProgress(ctx context.Context, lease time.Duration) error {
	if lease <= 0 {
		lease = d.q.cfg.Lease
	}
	lease = min(lease, maxVisibility)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.unindexd {
		return driver.ErrLeaseLost
	}
	now := time.Now()
	if err := d.update(ctx, max(lease, time.Second)); isPopLost(err) {
		d.finish()
		return driver.ErrLeaseLost
	} else if err != nil {
		return fmt.Errorf("azqueue: in progress %s: %w", d.f.id, err)
	}
	e := entry{ID: d.f.id, State: stLeased, Msg: d.msgID, At: ms(now.Add(lease)), Deliveries: int64(d.attempt)}
	etag, err := d.q.put(ctx, e, d.etag)
	if isChanged(err) {
		d.finish()
		return driver.ErrLeaseLost
	} else if err != nil {
		return fmt.Errorf("azqueue: in progress %s: indexing: %w", d.f.id, err)
	}
	d.etag = etag
	return nil
}

// Term dead-letters the message.
func (d *delivery) Term(ctx context.Context, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.unindexd {
		return driver.ErrLeaseLost
	}
	return d.deadLetter(ctx, reason)
}

// deadLetter writes the message to the poison queue, then indexes it as
// dead there (if no one re-leased it since this delivery wrote its
// entity), then deletes it from the queue; d.mu is held. A crash after
// the first write leaves a stray copy in the poison queue (not counted:
// the index is the count); after the second, the message in the queue is
// dropped by the receiver that next takes it.
func (d *delivery) deadLetter(ctx context.Context, reason string) error {
	q := d.q
	pf := d.f
	pf.due = 0
	r, err := q.poison.EnqueueMessage(ctx, pf.encode(), &azqueue.EnqueueMessageOptions{TimeToLive: to.Ptr(int32(-1))})
	if err != nil {
		return fmt.Errorf("azqueue: dead-lettering %s: %w", d.f.id, err)
	}
	if len(r.Messages) == 0 || r.Messages[0].MessageID == nil || r.Messages[0].PopReceipt == nil {
		return fmt.Errorf("azqueue: dead-lettering %s: the queue service answered without a message ID", d.f.id)
	}
	pid, ppop := *r.Messages[0].MessageID, *r.Messages[0].PopReceipt
	e := entry{ID: d.f.id, State: stDead, Msg: pid, Pop: ppop, At: ms(time.Now()), Deliveries: int64(d.attempt), Reason: reason}
	if _, err := q.put(ctx, e, d.etag); isChanged(err) {
		_, _ = q.poison.DeleteMessage(ctx, pid, ppop, nil)
		d.finish()
		return driver.ErrLeaseLost
	} else if err != nil {
		_, _ = q.poison.DeleteMessage(ctx, pid, ppop, nil)
		return fmt.Errorf("azqueue: dead-lettering %s: %w", d.f.id, err)
	}
	d.finish()
	// Dead in the index: a copy left in the queue (this delete failing)
	// is dropped by the receiver that next takes it.
	_, _ = q.main.DeleteMessage(ctx, d.msgID, d.pop, nil)
	return nil
}

// giveBack ends the lease at once (Close): the message is visible again
// and indexed as queued.
func (d *delivery) giveBack(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.unindexd {
		return
	}
	d.done = true
	if err := d.update(ctx, 0); err != nil {
		return // the lease ends on its own
	}
	e := entry{ID: d.f.id, State: stQueued, Msg: d.msgID, At: ms(time.Now()), Deliveries: int64(d.attempt)}
	_, _ = d.q.put(ctx, e, d.etag)
}
