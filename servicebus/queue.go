package servicebus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/arrhq/arr/queue/driver"
)

// Application properties of the messages the queue sends.
const (
	// propID carries the message's ID. It is the MessageID too, except on
	// the copy a Nak with a delay schedules (see Delivery.Nak).
	propID = "arr-id"
	// propAttempts carries the deliveries made before this Service Bus
	// message (a Nak's copy): Attempt is it plus the DeliveryCount.
	propAttempts = "arr-attempts"
)

const (
	// MaxIDLen bounds a message ID, so that the ID of a Nak's copy ("#"
	// and a sequence number appended) fits Service Bus's 128 characters.
	MaxIDLen = 100
	// DefaultLease is the lease of a Receive that asks for none, unless
	// the URL's lease parameter sets another.
	DefaultLease = time.Minute
	// defaultLock is assumed when the queue's lock duration is unknown
	// (Service Bus's default).
	defaultLock = time.Minute
	// opTimeout bounds the calls the queue makes on its own (renewals,
	// giving back expired leases, dead-lettering, Close).
	opTimeout = 10 * time.Second
	// maxReceive bounds one receive call's messages (the SDK refuses
	// more credits than its link buffer).
	maxReceive = 1000
	// reasonMaxDeliveries is the dead-letter reason at MaxDeliveries.
	reasonMaxDeliveries = "max deliveries reached"
)

// Queue is a queue/driver.Queue over one Service Bus queue; see the
// package doc for how the port maps onto Service Bus.
type Queue struct {
	cfg  Config
	lock time.Duration // the queue's lock duration

	s        sender
	r        receiver
	m        manager
	closeAll func(context.Context) error // closes the client, after s and r

	recv chan struct{} // holds one token while a receive call is on the link

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	live   map[*delivery]struct{} // deliveries handed out and not settled
}

var _ driver.Queue = (*Queue)(nil)

// newQueue makes a Queue over the calls s, r and m, for a queue whose
// lock duration is lock (0: unknown).
func newQueue(cfg Config, lock time.Duration, s sender, r receiver, m manager, closeAll func(context.Context) error) *Queue {
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if lock <= 0 {
		lock = defaultLock
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{
		cfg: cfg, lock: lock, s: s, r: r, m: m, closeAll: closeAll,
		recv: make(chan struct{}, 1),
		ctx:  ctx, cancel: cancel,
		live: map[*delivery]struct{}{},
	}
}

func (q *Queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// ---- enqueueing ----

// Enqueue: see driver.Queue. Every message is sent with its ID as its
// MessageID, so that Service Bus's duplicate detection drops a message
// whose ID it saw within the queue's detection window (queued, leased,
// delayed, or already acked or dead: see the package doc). Within one
// call the first message of an ID wins. The messages without a delay go
// in batches; those with one are scheduled, one call per distinct delay.
func (q *Queue) Enqueue(ctx context.Context, msgs ...driver.Message) error {
	if q.isClosed() {
		return driver.ErrClosed
	}
	seen := make(map[string]bool, len(msgs))
	var (
		now     []*azservicebus.Message
		delays  []time.Duration
		delayed = map[time.Duration][]*azservicebus.Message{}
	)
	for _, m := range msgs {
		if err := checkID(m.ID); err != nil {
			return err
		}
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		sm := toSB(m.ID, m.ID, m.Body, 0)
		if m.Delay <= 0 {
			now = append(now, sm)
			continue
		}
		if _, ok := delayed[m.Delay]; !ok {
			delays = append(delays, m.Delay)
		}
		delayed[m.Delay] = append(delayed[m.Delay], sm)
	}
	if len(now) > 0 {
		if err := q.s.Send(ctx, now); err != nil {
			return classify("send", firstID(now), err)
		}
	}
	for _, d := range delays {
		if err := q.s.Schedule(ctx, delayed[d], time.Now().Add(d)); err != nil {
			return classify("schedule", firstID(delayed[d]), err)
		}
	}
	return nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("servicebus: a message needs an ID")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("servicebus: message ID %.20q… is %d bytes, more than %d", id, len(id), MaxIDLen)
	}
	return nil
}

func firstID(ms []*azservicebus.Message) string {
	if len(ms) == 1 {
		return *ms[0].MessageID
	}
	return ""
}

// toSB makes the Service Bus message of the message id: MessageID
// messageID, and the attempts made before it (0 for a new message).
func toSB(id, messageID string, body []byte, attempts int) *azservicebus.Message {
	props := map[string]any{propID: id}
	if attempts > 0 {
		props[propAttempts] = int64(attempts)
	}
	return &azservicebus.Message{MessageID: &messageID, Body: body, ApplicationProperties: props}
}

// fromSB reads the ID and attempt count of a received message: the ID
// from propID (else the MessageID), the attempt from DeliveryCount plus
// propAttempts.
func fromSB(m *azservicebus.ReceivedMessage) (id string, attempt int) {
	id = m.MessageID
	if s, ok := m.ApplicationProperties[propID].(string); ok && s != "" {
		id = s
	}
	attempt = int(m.DeliveryCount)
	switch v := m.ApplicationProperties[propAttempts].(type) {
	case int64:
		attempt += int(v)
	case int32:
		attempt += int(v)
	case int:
		attempt += v
	case uint32:
		attempt += int(v)
	case uint64:
		attempt += int(v)
	case string:
		n, _ := strconv.Atoi(v)
		attempt += n
	}
	return id, max(attempt, 1)
}

// ---- receiving ----

// Receive: see driver.Queue. Receives take turns on the queue's one
// receiver link (the SDK allows one receive call at a time); each waits
// for its turn under its own context. A message received for the
// (MaxDeliveries+1)th time (its earlier leases expired in processes that
// died) is dead-lettered instead of returned.
func (q *Queue) Receive(ctx context.Context, max int, lease time.Duration) ([]driver.Delivery, error) {
	if max <= 0 {
		max = 1
	}
	max = min(max, maxReceive)
	if lease <= 0 {
		lease = q.cfg.Lease
	}
	for {
		if q.isClosed() {
			return nil, driver.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		select {
		case q.recv <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.ctx.Done():
			return nil, driver.ErrClosed
		}
		ds, err := q.receiveOnce(ctx, max, lease)
		<-q.recv
		if err != nil || len(ds) > 0 {
			return ds, err
		}
	}
}

// receiveOnce makes one receive call; the caller holds q.recv.
func (q *Queue) receiveOnce(ctx context.Context, max int, lease time.Duration) ([]driver.Delivery, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(q.ctx, cancel)
	defer stop()
	msgs, err := q.r.Receive(rctx, max)
	now := time.Now()

	var out []driver.Delivery
	var dead, back []*delivery
	q.mu.Lock()
	for _, m := range msgs {
		id, attempt := fromSB(m)
		d := &delivery{q: q, m: m, attempt: attempt, msg: driver.Message{ID: id, Body: m.Body}}
		switch {
		case q.closed:
			back = append(back, d)
		case q.cfg.MaxDeliveries > 0 && attempt > q.cfg.MaxDeliveries:
			dead = append(dead, d)
		default:
			d.end = now.Add(lease)
			d.lockEnd = now.Add(q.lock)
			q.live[d] = struct{}{}
			d.mu.Lock()
			d.schedule()
			d.mu.Unlock()
			out = append(out, d)
		}
	}
	closed := q.closed
	q.mu.Unlock()

	bctx, bcancel := context.WithTimeout(context.Background(), opTimeout)
	defer bcancel()
	for _, d := range dead {
		_ = d.call(func() error { return q.r.DeadLetter(bctx, d.m, reasonMaxDeliveries) })
	}
	for _, d := range back {
		_ = d.call(func() error { return q.r.Abandon(bctx, d.m) })
	}
	switch {
	case closed:
		return nil, driver.ErrClosed
	case len(out) > 0:
		return out, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case q.ctx.Err() != nil:
		return nil, driver.ErrClosed
	case err != nil:
		return nil, classify("receive", "", err)
	}
	return nil, nil
}

func (q *Queue) forget(d *delivery) {
	q.mu.Lock()
	delete(q.live, d)
	q.mu.Unlock()
}

// ---- deliveries ----

type dstate int

const (
	dLeased   dstate = iota
	dSettling        // an Ack, Nak or Term is under way
	dDone            // settled, given back or lost
)

// delivery is one peek-locked message under a lease. Its keeper (a
// timer) renews the Service Bus lock half a lock duration after it was
// taken or last renewed, for as long as the lease lasts, and gives the
// message back (AbandonMessage, or DeadLetterMessage at MaxDeliveries)
// when the lease ends unsettled.
type delivery struct {
	q       *Queue
	m       *azservicebus.ReceivedMessage
	msg     driver.Message
	attempt int

	calls sync.Mutex // one Service Bus call at a time about m

	mu      sync.Mutex
	state   dstate
	end     time.Time // lease end
	lockEnd time.Time // when the lock ends, by this process's clock (a lower bound)
	retry   bool      // the last renewal failed, not for a lost lock
	timer   *time.Timer
}

var _ driver.Delivery = (*delivery)(nil)

// call makes f, a Service Bus call about d.m, one at a time (the SDK
// writes m.LockedUntil on a renewal).
func (d *delivery) call(f func() error) error {
	d.calls.Lock()
	defer d.calls.Unlock()
	return f()
}

// renewAt is when the keeper renews the lock next; d.mu is held.
func (d *delivery) renewAt() time.Time {
	if d.retry {
		return time.Now().Add(min(time.Second, d.q.lock/8))
	}
	return d.lockEnd.Add(-d.q.lock / 2)
}

// schedule arms the keeper for the lease end or the next renewal,
// whichever comes first; d.mu is held.
func (d *delivery) schedule() {
	next := d.end
	if r := d.renewAt(); r.Before(next) {
		next = r
	}
	wait := time.Until(next)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.keep)
	} else {
		d.timer.Reset(wait)
	}
}

// keep is the keeper's timer: the lease ended (give the message back) or
// the lock needs renewing.
func (d *delivery) keep() {
	q := d.q
	d.mu.Lock()
	if d.state != dLeased {
		d.mu.Unlock()
		return
	}
	if !time.Now().Before(d.end) {
		d.state = dDone
		d.mu.Unlock()
		q.forget(d)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if max := q.cfg.MaxDeliveries; max > 0 && d.attempt >= max {
			_ = d.call(func() error { return q.r.DeadLetter(ctx, d.m, reasonMaxDeliveries) })
		} else {
			_ = d.call(func() error { return q.r.Abandon(ctx, d.m) })
		}
		// On failure the lock runs out on its own and Service Bus
		// delivers the message again.
		return
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(q.ctx, opTimeout)
	defer cancel()
	_ = d.renew(ctx)
}

// renew renews the lock now. A lost lock ends the lease (ErrLeaseLost);
// another error leaves the lease, and the keeper tries again soon.
func (d *delivery) renew(ctx context.Context) error {
	q := d.q
	start := time.Now()
	err := d.call(func() error { return q.r.Renew(ctx, d.m) })
	err = classify("renew", d.msg.ID, err)
	d.mu.Lock()
	if d.state != dLeased {
		d.mu.Unlock()
		return d.lost()
	}
	if errors.Is(err, driver.ErrLeaseLost) {
		d.state = dDone
		d.timer.Stop()
		d.mu.Unlock()
		q.forget(d)
		return err
	}
	if err == nil {
		d.lockEnd = start.Add(q.lock)
	}
	d.retry = err != nil
	d.schedule()
	d.mu.Unlock()
	return err
}

func (d *delivery) lost() error {
	return fmt.Errorf("servicebus: %s: %w", d.msg.ID, driver.ErrLeaseLost)
}

// begin starts a settlement: leased → settling, keeper stopped.
func (d *delivery) begin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != dLeased {
		return d.lost()
	}
	d.state = dSettling
	d.timer.Stop()
	return nil
}

// finish ends a settlement that err (classified) ended: done on success
// or a lost lock; otherwise (the call may be retried) leased again,
// keeper rearmed, unless the queue closed meanwhile.
func (d *delivery) finish(err error) error {
	closed := d.q.isClosed()
	d.mu.Lock()
	if err == nil || errors.Is(err, driver.ErrLeaseLost) || closed {
		d.state = dDone
		d.mu.Unlock()
		d.q.forget(d)
		return err
	}
	d.state = dLeased
	d.schedule()
	d.mu.Unlock()
	return err
}

func (d *delivery) Message() driver.Message {
	m := d.msg
	m.Body = slices.Clone(m.Body)
	return m
}

func (d *delivery) Attempt() int { return d.attempt }

// Ack completes the message (CompleteMessage).
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.begin(); err != nil {
		return err
	}
	err := d.call(func() error { return d.q.r.Complete(ctx, d.m) })
	return d.finish(classify("complete", d.msg.ID, err))
}

// Nak gives the message back. Without a delay it is abandoned
// (AbandonMessage: delivered again at once, DeliveryCount one more).
// With one, a copy is scheduled for now+delay, carrying the ID and the
// attempts made, and then the original is completed: first the schedule,
// then the completion, so that a failure between them leaves two
// messages (the original comes back when its lock ends), never none.
// The copy's MessageID is the ID, "#" and the original's sequence number:
// unique to this delivery's message (a retried Nak of it is dropped by
// duplicate detection) and never the ID itself, which duplicate detection
// would drop (a loss) while the ID is in its window. At MaxDeliveries the
// message is dead-lettered instead.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if err := d.begin(); err != nil {
		return err
	}
	q := d.q
	if max := q.cfg.MaxDeliveries; max > 0 && d.attempt >= max {
		err := d.call(func() error { return q.r.DeadLetter(ctx, d.m, reasonMaxDeliveries) })
		return d.finish(classify("dead-letter", d.msg.ID, err))
	}
	if delay <= 0 {
		err := d.call(func() error { return q.r.Abandon(ctx, d.m) })
		return d.finish(classify("abandon", d.msg.ID, err))
	}
	cp := toSB(d.msg.ID, copyID(d.msg.ID, d.m), d.msg.Body, d.attempt)
	if err := q.s.Schedule(ctx, []*azservicebus.Message{cp}, time.Now().Add(delay)); err != nil {
		return d.finish(classify("schedule", d.msg.ID, err))
	}
	err := d.call(func() error { return q.r.Complete(ctx, d.m) })
	return d.finish(classify("complete", d.msg.ID, err))
}

// copyID is the MessageID of the copy a Nak with a delay schedules.
func copyID(id string, m *azservicebus.ReceivedMessage) string {
	if m.SequenceNumber != nil {
		return id + "#" + strconv.FormatInt(*m.SequenceNumber, 10)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return id + "#" + hex.EncodeToString(b[:])
}

// InProgress extends the lease to lease from now and renews the lock at
// once (RenewMessageLock); the keeper renews it again while the lease
// lasts.
func (d *delivery) InProgress(ctx context.Context, lease time.Duration) error {
	if lease <= 0 {
		lease = d.q.cfg.Lease
	}
	d.mu.Lock()
	if d.state != dLeased {
		d.mu.Unlock()
		return d.lost()
	}
	d.end = time.Now().Add(lease)
	d.schedule()
	d.mu.Unlock()
	return d.renew(ctx)
}

// Term dead-letters the message (DeadLetterMessage) with reason.
func (d *delivery) Term(ctx context.Context, reason string) error {
	if err := d.begin(); err != nil {
		return err
	}
	err := d.call(func() error { return d.q.r.DeadLetter(ctx, d.m, reason) })
	return d.finish(classify("dead-letter", d.msg.ID, err))
}

// ---- stats and close ----

// Stats: see driver.Queue. From the queue's runtime properties: Delayed
// is ScheduledMessageCount, Dead DeadLetterMessageCount. Service Bus
// counts locked messages as active, with the available ones: InFlight is
// the deliveries this Queue holds (at most ActiveMessageCount), Ready the
// rest of ActiveMessageCount, so messages locked by other processes count
// as Ready.
func (q *Queue) Stats(ctx context.Context) (driver.Stats, error) {
	c, err := q.m.Counts(ctx)
	if err != nil {
		return driver.Stats{}, classify("stats", "", err)
	}
	q.mu.Lock()
	held := int64(len(q.live))
	q.mu.Unlock()
	inFlight := min(held, c.Active)
	return driver.Stats{
		Ready:    c.Active - inFlight,
		Delayed:  c.Scheduled,
		InFlight: inFlight,
		Dead:     c.DeadLetter,
	}, nil
}

// Close gives back (abandons) every delivery this Queue holds, so that a
// queue opened again gets them at once, waits for the receive call under
// way, and closes the receiver, the sender and the client. A blocked
// Receive returns ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	ds := make([]*delivery, 0, len(q.live))
	for d := range q.live {
		ds = append(ds, d)
	}
	q.mu.Unlock()
	q.cancel()
	q.recv <- struct{}{} // the receive call under way has returned; none starts again

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range ds {
		d.mu.Lock()
		leased := d.state == dLeased
		if leased {
			d.state = dDone
			d.timer.Stop()
		}
		d.mu.Unlock()
		if leased {
			wg.Go(func() { _ = d.call(func() error { return q.r.Abandon(ctx, d.m) }) })
		}
	}
	wg.Wait()
	q.mu.Lock()
	q.live = map[*delivery]struct{}{}
	q.mu.Unlock()
	errs := []error{q.r.Close(ctx), q.s.Close(ctx)}
	if q.closeAll != nil {
		errs = append(errs, q.closeAll(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("servicebus: close: %w", err)
	}
	return nil
}
