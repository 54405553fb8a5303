package mem

import (
	"bytes"
	"context"
	"errors"
	"time"

	qdriver "github.com/arrhq/arr/queue/driver"
)

type msgState uint8

const (
	msgPending msgState = iota // queued: ready at readyAt (delayed until then)
	msgLeased                  // delivered, under a lease until expiry
	msgDead                    // dead-lettered
)

// message is one message of the queue, from its Enqueue until its Ack.
type message struct {
	id         string
	body       []byte // owned by the engine; deliveries get copies
	state      msgState
	readyAt    time.Time // when pending
	seq        uint64    // enqueue order, among equal ready times
	deliveries int       // deliveries so far: the current delivery's Attempt
	gen        uint64    // bumped on each delivery; a delivery holds the gen it got
	expiry     time.Time // when leased
	holder     *queueHandle
	idx        int // in engine.pending or engine.leased (by state); -1 in neither
}

// queueHandle is a handle on an engine's queue.
type queueHandle struct {
	eng    *engine
	opts   QueueOptions
	held   bool          // holds a reference (false: born closed)
	done   chan struct{} // closed by Close
	closed bool          // guarded by eng.mu
}

var _ qdriver.Queue = (*queueHandle)(nil)

func newQueueHandle(eng *engine, opts QueueOptions, held bool) *queueHandle {
	h := &queueHandle{eng: eng, opts: opts, held: held, done: make(chan struct{})}
	if !held {
		h.closed = true
		close(h.done)
	}
	return h
}

// lock locks the engine for one call, or fails when ctx is done or the
// handle or engine closed. The caller unlocks eng.mu.
func (h *queueHandle) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.eng.mu.Lock()
	if h.closed || h.eng.closed {
		h.eng.mu.Unlock()
		return qdriver.ErrClosed
	}
	return nil
}

// Close gives the leases of the handle's deliveries back to the queue,
// ends the handle's blocked Receives with ErrClosed and releases its
// reference to the engine.
func (h *queueHandle) Close() error {
	eng := h.eng
	eng.mu.Lock()
	if h.closed {
		eng.mu.Unlock()
		return nil
	}
	h.closed = true
	if !eng.closed {
		var mine []*message
		for _, m := range eng.leased.s {
			if m.holder == h {
				mine = append(mine, m)
			}
		}
		now := time.Now()
		for _, m := range mine {
			eng.leased.remove(m)
			eng.requeue(m, now)
		}
		if len(mine) > 0 {
			eng.wakeReceivers()
		}
	}
	eng.mu.Unlock()
	close(h.done)
	eng.release()
	return nil
}

func (h *queueHandle) Enqueue(ctx context.Context, msgs ...qdriver.Message) error {
	for _, m := range msgs {
		if m.ID == "" {
			return errors.New("mem: message has no ID")
		}
	}
	if err := h.lock(ctx); err != nil {
		return err
	}
	defer h.eng.mu.Unlock()
	h.eng.enqueue(time.Now(), msgs...)
	return nil
}

// enqueue adds the messages whose ids are not queued or leased, reviving
// dead letters, and wakes the waiting Receives. eng.mu is held.
func (eng *engine) enqueue(now time.Time, msgs ...qdriver.Message) {
	added := false
	for _, m := range msgs {
		if cur := eng.msgs[m.ID]; cur != nil {
			if cur.state != msgDead {
				continue // enqueuing a queued id is a no-op
			}
			eng.dead-- // revived: replaced by the new message
		}
		msg := &message{id: m.ID, body: bytes.Clone(m.Body), state: msgPending,
			readyAt: now.Add(max(m.Delay, 0)), seq: eng.nextSeq(), idx: -1}
		eng.msgs[m.ID] = msg
		eng.pending.push(msg)
		added = true
	}
	if added {
		eng.wakeReceivers()
	}
}

func (eng *engine) nextSeq() uint64 { eng.seq++; return eng.seq }

// requeue makes m (in no heap) pending again at now. eng.mu is held.
func (eng *engine) requeue(m *message, readyAt time.Time) {
	m.state = msgPending
	m.holder = nil
	m.readyAt = readyAt
	m.seq = eng.nextSeq()
	eng.pending.push(m)
}

// kill dead-letters m (in no heap). eng.mu is held.
func (eng *engine) kill(m *message) {
	m.state = msgDead
	m.holder = nil
	m.body = nil
	eng.dead++
}

// wakeReceivers wakes every waiting Receive to look again. eng.mu is held.
func (eng *engine) wakeReceivers() {
	if eng.qwake != nil {
		close(eng.qwake)
		eng.qwake = nil
	}
}

// waitChan returns the channel the next wakeReceivers closes. eng.mu is
// held.
func (eng *engine) waitChan() <-chan struct{} {
	if eng.qwake == nil {
		eng.qwake = make(chan struct{})
	}
	return eng.qwake
}

// Receive waits until something is deliverable, woken by the changes that
// make messages deliverable (Enqueue, Nak, a handle giving its leases back)
// and by one timer set for the next known event: a delayed message
// becoming ready or a lease expiring. It never polls.
func (h *queueHandle) Receive(ctx context.Context, limit int, lease time.Duration) ([]qdriver.Delivery, error) {
	if limit <= 0 {
		limit = 1
	}
	if lease <= 0 {
		lease = h.opts.DefaultLease
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	eng := h.eng
	for {
		if err := h.lock(ctx); err != nil {
			return nil, err
		}
		now := time.Now()
		ds := eng.take(h, now, limit, lease)
		if len(ds) > 0 {
			eng.mu.Unlock()
			return ds, nil
		}
		wake := eng.waitChan()
		next := eng.nextEvent()
		eng.mu.Unlock()

		var alarm <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next)) // no stale value after Reset (Go ≥ 1.23)
			}
			alarm = timer.C
		}
		select {
		case <-wake:
		case <-alarm:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-h.done:
			return nil, qdriver.ErrClosed
		}
	}
}

// take leases up to limit deliverable messages to h: expired leases first,
// then pending messages in ready-time order. A message already delivered
// h's MaxDeliveries times is dead-lettered instead. eng.mu is held.
func (eng *engine) take(h *queueHandle, now time.Time, limit int, lease time.Duration) []qdriver.Delivery {
	maxDel := h.opts.MaxDeliveries
	var ds []qdriver.Delivery
	for _, from := range []*iheap[*message]{&eng.leased, &eng.pending} {
		for len(ds) < limit {
			m, ok := from.peek()
			if !ok || (from == &eng.leased && m.expiry.After(now)) || (from == &eng.pending && m.readyAt.After(now)) {
				break
			}
			from.pop()
			if maxDel > 0 && m.deliveries >= maxDel {
				eng.kill(m)
				continue
			}
			m.state = msgLeased
			m.deliveries++
			m.gen++
			m.expiry = now.Add(lease)
			m.holder = h
			eng.leased.push(m)
			ds = append(ds, &delivery{h: h, m: m, gen: m.gen,
				msg: qdriver.Message{ID: m.id, Body: bytes.Clone(m.body)}, attempt: m.deliveries})
		}
	}
	return ds
}

// nextEvent returns when the next pending message becomes ready or the
// next lease expires, whichever is first (zero: neither). eng.mu is held.
func (eng *engine) nextEvent() time.Time {
	var next time.Time
	if m, ok := eng.pending.peek(); ok {
		next = m.readyAt
	}
	if m, ok := eng.leased.peek(); ok && (next.IsZero() || m.expiry.Before(next)) {
		next = m.expiry
	}
	return next
}

func (h *queueHandle) Stats(ctx context.Context) (qdriver.Stats, error) {
	if err := h.lock(ctx); err != nil {
		return qdriver.Stats{}, err
	}
	eng := h.eng
	defer eng.mu.Unlock()
	now := time.Now()
	st := qdriver.Stats{Dead: eng.dead}
	for _, m := range eng.pending.s {
		if m.readyAt.After(now) {
			st.Delayed++
		} else {
			st.Ready++
		}
	}
	for _, m := range eng.leased.s {
		if m.expiry.After(now) {
			st.InFlight++
		} else {
			st.Ready++ // an expired lease: deliverable again
		}
	}
	return st, nil
}

// ---- deliveries ----

type delivery struct {
	h       *queueHandle
	m       *message
	gen     uint64
	attempt int
	msg     qdriver.Message
}

var _ qdriver.Delivery = (*delivery)(nil)

func (d *delivery) Message() qdriver.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// lock locks the engine when d still holds its message's lease (an expired
// lease is held until the message is delivered again), or fails. The
// caller unlocks eng.mu.
func (d *delivery) lock(ctx context.Context) error {
	if err := d.h.lock(ctx); err != nil {
		return err
	}
	eng := d.h.eng
	if eng.msgs[d.m.id] != d.m || d.m.state != msgLeased || d.m.gen != d.gen {
		eng.mu.Unlock()
		return qdriver.ErrLeaseLost
	}
	return nil
}

func (d *delivery) Ack(ctx context.Context) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	eng := d.h.eng
	defer eng.mu.Unlock()
	eng.leased.remove(d.m)
	delete(eng.msgs, d.m.id)
	return nil
}

func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	eng := d.h.eng
	defer eng.mu.Unlock()
	eng.leased.remove(d.m)
	if maxDel := d.h.opts.MaxDeliveries; maxDel > 0 && d.m.deliveries >= maxDel {
		eng.kill(d.m)
		return nil
	}
	eng.requeue(d.m, time.Now().Add(max(delay, 0)))
	eng.wakeReceivers()
	return nil
}

func (d *delivery) InProgress(ctx context.Context, lease time.Duration) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	eng := d.h.eng
	defer eng.mu.Unlock()
	if lease <= 0 {
		lease = d.h.opts.DefaultLease
	}
	d.m.expiry = time.Now().Add(lease)
	eng.leased.fix(d.m)
	return nil
}

func (d *delivery) Term(ctx context.Context, reason string) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	eng := d.h.eng
	defer eng.mu.Unlock()
	eng.leased.remove(d.m)
	eng.kill(d.m)
	return nil
}
