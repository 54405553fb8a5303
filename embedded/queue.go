package embedded

import (
	"bytes"
	"container/heap"
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	qdriver "github.com/arrhq/arr/queue/driver"
)

// queueState is the DB's queue: entries on disk ordered by ready time, and
// in memory only the leases of messages in flight (see doc.go).
type queueState struct {
	db            *DB
	maxDeliveries atomic.Int64
	defaultLease  atomic.Int64 // time.Duration
	// latestReady is at least the ready time of every queue entry on disk
	// (raised before an entry is written), so that Stats counts delayed
	// entries only when some may exist.
	latestReady atomic.Uint64

	mu sync.Mutex
	// watermark: every queue entry with a key below it is leased (in
	// leases) or deleted, so Receive scans from here and never walks the
	// tombstones of acked entries.
	watermark []byte
	leases    map[string]*lease // by message id
	expiry    leaseHeap         // leases in state leased, by expiry
	live      int64             // entries on disk, leased or not
	dead      int64             // dead letters on disk

	// Waiting: a Receive that finds nothing joins waiters and sleeps until
	// signalled. Each new deliverable message signals one waiter (not all:
	// no thundering herd), and one shared alarm fires at the next known
	// event — a delayed entry becoming ready or a lease expiring — and
	// signals one waiter.
	waiters  list.List // of *waiter, oldest first
	alarm    *time.Timer
	alarmAt  time.Time // zero: no alarm set
	alarmGen uint64

	lastScanSteps int // internal iterator steps of the last scan (tests)
}

type leaseState uint8

const (
	leased   leaseState = iota // delivered, lease running (or expired, awaiting redelivery)
	settling                   // being acked, naked, termed or dead-lettered
)

// lease is the in-memory state of one message taken from disk by a Receive.
// It lives until the message is acked, naked, termed or dead-lettered, and
// is redelivered from memory when it expires.
type lease struct {
	id         string
	key        []byte // the entry's q key
	body       []byte
	deliveries int       // deliveries so far (the current delivery's Attempt)
	gen        uint64    // bumped on each delivery; a Delivery holds the gen it got
	expiry     time.Time // when state == leased
	state      leaseState
	idx        int // in expiry; -1 when not there
}

var qEnd = []byte{pQueue + 1}

func newQueueState(db *DB) (*queueState, error) {
	q := &queueState{
		db:        db,
		watermark: []byte{pQueue},
		leases:    map[string]*lease{},
	}
	q.maxDeliveries.Store(int64(db.opts.MaxDeliveries))
	q.defaultLease.Store(int64(db.opts.DefaultLease))
	// Counters by one scan of the compact message index: O(queue length)
	// time at open, O(1) memory.
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pMsg}, UpperBound: []byte{pMsg + 1}})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("embedded: counting queued messages: %w", err)
		}
		if isDeadMark(v) {
			q.dead++
		} else {
			q.live++
		}
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("embedded: counting queued messages: %w", err)
	}
	// The last queue entry has the latest ready time.
	it, err = db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pQueue}, UpperBound: qEnd})
	if err != nil {
		return nil, err
	}
	if it.Last() {
		if ts, _, ok := splitTimeKey(it.Key()); ok {
			q.latestReady.Store(ts)
		}
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("embedded: finding the last queue entry: %w", err)
	}
	return q, nil
}

// raiseLatestReady records that an entry ready at ts is about to be written.
func (q *queueState) raiseLatestReady(ts uint64) {
	for {
		cur := q.latestReady.Load()
		if ts <= cur || q.latestReady.CompareAndSwap(cur, ts) {
			return
		}
	}
}

func countKeys(r pebble.Reader, lower, upper []byte) (int64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, firstErr(it.Error(), it.Close())
}

// waiter is one Receive waiting for something to deliver.
type waiter struct {
	ch chan struct{} // buffer of one: signalled once, after leaving waiters
	el *list.Element // in waiters; nil once signalled
}

// wait registers a waiter. q.mu is held.
func (q *queueState) wait() *waiter {
	w := &waiter{ch: make(chan struct{}, 1)}
	w.el = q.waiters.PushBack(w)
	return w
}

// signal wakes up to n waiters, oldest first. q.mu is held.
func (q *queueState) signal(n int) {
	for ; n > 0 && q.waiters.Len() > 0; n-- {
		w := q.waiters.Remove(q.waiters.Front()).(*waiter)
		w.el = nil
		w.ch <- struct{}{}
	}
}

// leave unregisters a waiter that stops waiting without a signal (its
// context ended, or its queue closed); a signal it got meanwhile goes to
// another waiter, so that no deliverable message is left unannounced.
func (q *queueState) leave(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.el != nil {
		q.waiters.Remove(w.el)
		w.el = nil
		return
	}
	q.signal(1)
}

func (q *queueState) stopAlarm() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.alarm != nil {
		q.alarm.Stop()
	}
	q.alarmGen++
}

// armAlarm makes sure a waiter is woken at t (an entry becomes ready or a
// lease expires). q.mu is held.
func (q *queueState) armAlarm(t time.Time) {
	if t.IsZero() || (!q.alarmAt.IsZero() && !t.Before(q.alarmAt)) {
		return
	}
	if q.alarm != nil {
		q.alarm.Stop()
	}
	q.alarmAt = t
	q.alarmGen++
	gen := q.alarmGen
	q.alarm = time.AfterFunc(time.Until(t), func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if gen == q.alarmGen {
			q.alarmAt = time.Time{}
		}
		q.signal(1) // the woken Receive re-arms for the next event
	})
}

// lowerWatermark makes sure a new entry at k is scanned. q.mu is held.
func (q *queueState) lowerWatermark(k []byte) {
	if bytes.Compare(k, q.watermark) < 0 {
		q.watermark = k
	}
}

// ---- enqueue ----

// enqueued describes what addToBatch added, for enqueued once committed.
type enqueued struct {
	n, revived int
	ready      int       // how many are deliverable at once
	nextReady  time.Time // the earliest ready time of the delayed ones
	minKey     []byte
}

// addToBatch adds the entries of msgs not already queued to b. The
// stripes of the messages' ids are held.
func (q *queueState) addToBatch(b *pebble.Batch, msgs []qdriver.Message, now time.Time) (enqueued, error) {
	var e enqueued
	var seen map[string]bool
	if len(msgs) > 1 {
		seen = make(map[string]bool, len(msgs))
	}
	for _, m := range msgs {
		if seen != nil {
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
		}
		mk := msgKey(m.ID)
		var state []byte
		var found bool
		if !q.db.msgCeil.above(mk) {
			var err error
			if state, found, err = getCopy(q.db.pdb, mk); err != nil {
				return e, fmt.Errorf("embedded: reading message %s: %w", m.ID, err)
			}
		}
		if found && !isDeadMark(state) {
			continue // enqueuing a queued id is a no-op
		}
		if found { // dead: revive it
			_ = b.Delete(deadKey(m.ID), nil)
			e.revived++
		}
		at := now.Add(max(m.Delay, 0))
		readyAt := nanos(at)
		if m.Delay > 0 {
			if e.nextReady.IsZero() || at.Before(e.nextReady) {
				e.nextReady = at
			}
		} else {
			e.ready++
		}
		k := queueKey(readyAt, m.ID)
		q.raiseLatestReady(readyAt)
		_ = b.Set(k, encodeEntry(0, m.Body), nil)
		_ = b.Set(mk, encodeReadyAt(readyAt), nil)
		q.db.msgCeil.raise(mk)
		if e.minKey == nil || bytes.Compare(k, e.minKey) < 0 {
			e.minKey = k
		}
		e.n++
	}
	return e, nil
}

// enqueued accounts for committed entries and wakes receivers.
func (q *queueState) enqueued(e enqueued) {
	if e.n == 0 {
		return
	}
	q.mu.Lock()
	q.live += int64(e.n)
	q.dead -= int64(e.revived)
	q.lowerWatermark(e.minKey)
	q.signal(e.ready)
	q.armAlarm(e.nextReady)
	q.mu.Unlock()
}

// ---- the handle ----

// queueHandle is a handle on the DB's queue.
type queueHandle struct {
	db     *DB
	closed chan struct{}
	once   sync.Once
}

var _ qdriver.Queue = (*queueHandle)(nil)

func (h *queueHandle) isClosed() bool {
	select {
	case <-h.closed:
		return true
	default:
		return false
	}
}

func (h *queueHandle) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h.isClosed() {
		return qdriver.ErrClosed
	}
	return h.db.begin(qdriver.ErrClosed)
}

// Close releases the handle's reference to the DB; Receives blocked on this
// handle return ErrClosed.
func (h *queueHandle) Close() error {
	var err error
	h.once.Do(func() {
		close(h.closed)
		err = h.db.release()
	})
	return err
}

func (h *queueHandle) Enqueue(ctx context.Context, msgs ...qdriver.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if m.ID == "" {
			return errors.New("embedded: message has no ID")
		}
		ids[i] = m.ID
	}
	if err := h.begin(ctx); err != nil {
		return err
	}
	defer h.db.end()
	db, q := h.db, h.db.q
	held := db.lockStripes(ids...)
	defer db.unlockStripes(held)
	b := db.pdb.NewBatch()
	defer b.Close()
	e, err := q.addToBatch(b, msgs, time.Now())
	if err != nil || e.n == 0 {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("embedded: enqueuing: %w", err)
	}
	q.enqueued(e)
	return nil
}

func (h *queueHandle) Receive(ctx context.Context, limit int, leaseFor time.Duration) ([]qdriver.Delivery, error) {
	q := h.db.q
	if limit <= 0 {
		limit = 1
	}
	if leaseFor <= 0 {
		leaseFor = time.Duration(q.defaultLease.Load())
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// signalled: this Receive was woken to look for a message; if it returns
	// without looking, it passes the signal on.
	signalled := false
	for {
		if h.isClosed() {
			if signalled {
				q.mu.Lock()
				q.signal(1)
				q.mu.Unlock()
			}
			return nil, qdriver.ErrClosed
		}
		ds, w, err := q.receive(h, limit, leaseFor)
		signalled = false
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		if w == nil {
			continue // it dead-lettered something: look again
		}
		select {
		case <-w.ch:
			signalled = true
			continue
		case <-ctx.Done():
			err = ctx.Err()
		case <-h.closed:
			err = qdriver.ErrClosed
		case <-h.db.closing:
			err = qdriver.ErrClosed
		}
		q.leave(w)
		return nil, err
	}
}

// receive takes up to limit deliverable messages — expired leases first, then
// entries from the watermark up to now — and leases them. With none, it
// arms the alarm for the next event and returns a registered waiter (nil
// when it should simply look again).
func (q *queueState) receive(h *queueHandle, limit int, leaseFor time.Duration) ([]qdriver.Delivery, *waiter, error) {
	db := q.db
	if err := db.begin(qdriver.ErrClosed); err != nil {
		return nil, nil, err
	}
	defer db.end()
	now := time.Now()
	maxDel := int(q.maxDeliveries.Load())

	q.mu.Lock()
	var got, doomed []*lease
	for len(got) < limit && q.expiry.Len() > 0 && !q.expiry[0].expiry.After(now) {
		l := heap.Pop(&q.expiry).(*lease)
		if maxDel > 0 && l.deliveries >= maxDel {
			l.state = settling
			doomed = append(doomed, l)
			continue
		}
		l.deliveries++
		l.gen++
		l.expiry = now.Add(leaseFor)
		heap.Push(&q.expiry, l)
		got = append(got, l)
	}
	var next time.Time
	var err error
	// more: something else is deliverable now that this call leaves.
	more := len(got) == limit && q.expiry.Len() > 0 && !q.expiry[0].expiry.After(now)
	if len(got) < limit {
		next, more, err = q.scan(now, limit, leaseFor, maxDel, &got, &doomed)
	}
	// The deliveries as leased now; their counts are written below,
	// after q.mu is released: a write can stall (a full disk), and
	// Stats, other Receives and settles must not wait on it.
	var ds []qdriver.Delivery
	var b *pebble.Batch
	if err != nil {
		// Give the leases back at once.
		for _, l := range got {
			l.expiry = now
			heap.Fix(&q.expiry, l.idx)
		}
	} else if len(got) > 0 {
		b = db.pdb.NewBatch()
		ds = make([]qdriver.Delivery, len(got))
		for i, l := range got {
			_ = b.Set(l.key, encodeEntry(l.deliveries, l.body), nil)
			ds[i] = &delivery{h: h, l: l, gen: l.gen, attempt: l.deliveries,
				msg: qdriver.Message{ID: l.id, Body: bytes.Clone(l.body)}}
		}
	}
	// The next event: the first delayed entry, or the first lease to
	// expire (including the ones just made).
	q.armAlarm(next)
	if q.expiry.Len() > 0 {
		q.armAlarm(q.expiry[0].expiry)
	}
	var w *waiter
	switch {
	case len(doomed) > 0 || err != nil:
	case len(ds) == 0:
		w = q.wait()
	case more:
		q.signal(1) // pass the baton
	}
	q.mu.Unlock()

	if b != nil {
		// Record the delivery counts without waiting for an fsync: the
		// next synced write (the worker's own state change, an Ack) makes
		// them durable, and a crash before that only undercounts. No
		// Delivery is handed out before this returns, so no settle of
		// these messages can be ordered before it.
		err = b.Commit(pebble.NoSync)
		_ = b.Close()
		if err != nil {
			err = fmt.Errorf("embedded: recording deliveries: %w", err)
			q.giveBack(ds, now)
			ds = nil
		}
	}
	if len(doomed) > 0 {
		q.deadLetter(doomed, "delivered MaxDeliveries times without an Ack")
	}
	return ds, w, err
}

// giveBack makes the leases of deliveries that were not handed out
// expire at once (unless another Receive delivered them again meanwhile).
func (q *queueState) giveBack(ds []qdriver.Delivery, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range ds {
		d := d.(*delivery)
		if q.owns(d) && d.l.idx >= 0 {
			d.l.expiry = now
			heap.Fix(&q.expiry, d.l.idx)
		}
	}
	q.signal(1)
}

// scan reads entries from the watermark in ready-time order, leasing those
// ready by now into got (or doomed, past MaxDeliveries) until limit, and
// returns the ready time of the first entry not yet ready, or whether it
// stopped at the limit with more entries ready. q.mu is held.
func (q *queueState) scan(now time.Time, limit int, leaseFor time.Duration, maxDel int, got, doomed *[]*lease) (next time.Time, more bool, err error) {
	it, err := q.db.pdb.NewIter(&pebble.IterOptions{LowerBound: q.watermark, UpperBound: qEnd})
	if err != nil {
		return time.Time{}, false, err
	}
	wm := q.watermark
	nowN := nanos(now)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		readyAt, idb, valid := splitTimeKey(k)
		if !valid {
			err = fmt.Errorf("embedded: %w: queue key %q", errCorrupt, k)
			break
		}
		if readyAt > nowN {
			next = time.Unix(0, int64(readyAt))
			wm = bytes.Clone(k)
			break
		}
		if len(*got) >= limit {
			wm = bytes.Clone(k)
			more = true
			break
		}
		if _, busy := q.leases[string(idb)]; busy {
			wm = append(bytes.Clone(k), 0)
			continue
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			err = verr
			break
		}
		deliveries, body, derr := decodeEntry(v)
		if derr != nil {
			err = fmt.Errorf("embedded: queue entry %q: %w", k, derr)
			break
		}
		l := &lease{id: string(idb), key: bytes.Clone(k), body: body, deliveries: deliveries, idx: -1}
		q.leases[l.id] = l
		if maxDel > 0 && deliveries >= maxDel {
			l.state = settling
			*doomed = append(*doomed, l)
		} else {
			l.deliveries++
			l.gen = 1
			l.expiry = now.Add(leaseFor)
			heap.Push(&q.expiry, l)
			*got = append(*got, l)
		}
		wm = append(bytes.Clone(k), 0)
	}
	st := it.Stats()
	q.lastScanSteps = st.ForwardStepCount[pebble.InternalIterCall] + st.ForwardSeekCount[pebble.InternalIterCall]
	if ierr := it.Error(); err == nil {
		err = ierr
	}
	// Close returns the iterator to Pebble's pool: nothing of it is read
	// after (the race detector caught an Error() read here).
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	q.watermark = wm
	return next, more, err
}

// deadLetter moves doomed entries (in state settling) to the dead letters.
func (q *queueState) deadLetter(doomed []*lease, reason string) {
	db := q.db
	ids := make([]string, len(doomed))
	for i, l := range doomed {
		ids[i] = l.id
	}
	held := db.lockStripes(ids...)
	now := time.Now()
	b := db.pdb.NewBatch()
	for _, l := range doomed {
		_ = b.Delete(l.key, nil)
		_ = b.Set(msgKey(l.id), deadMark, nil)
		_ = b.Set(deadKey(l.id), encodeDead(now, l.deliveries, reason, l.body), nil)
	}
	err := b.Commit(pebble.Sync)
	_ = b.Close()
	db.unlockStripes(held)

	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range doomed {
		if err != nil {
			// Try again on a later Receive.
			l.state = leased
			l.expiry = now.Add(time.Second)
			heap.Push(&q.expiry, l)
			q.armAlarm(l.expiry)
			continue
		}
		delete(q.leases, l.id)
		q.live--
		q.dead++
	}
	if err != nil {
		db.opts.Logger.Error("embedded: dead-lettering failed; will retry", "err", err)
	}
}

func (h *queueHandle) Stats(ctx context.Context) (qdriver.Stats, error) {
	if err := h.begin(ctx); err != nil {
		return qdriver.Stats{}, err
	}
	defer h.db.end()
	q := h.db.q
	now := time.Now()
	q.mu.Lock()
	live, dead := q.live, q.dead
	var inFlight int64
	for _, l := range q.leases {
		if l.state == settling || l.expiry.After(now) {
			inFlight++
		}
	}
	q.mu.Unlock()
	// Delayed entries are those ready after now: count that end of the
	// queue (O(delayed)), when there may be any.
	var delayed int64
	if n := nanos(now); q.latestReady.Load() > n {
		var err error
		if delayed, err = countKeys(h.db.pdb, queueKey(n+1, ""), qEnd); err != nil {
			return qdriver.Stats{}, fmt.Errorf("embedded: counting delayed messages: %w", err)
		}
	}
	return qdriver.Stats{
		Ready:    max(live-inFlight-delayed, 0),
		Delayed:  delayed,
		InFlight: inFlight,
		Dead:     dead,
	}, nil
}

// ---- deliveries ----

type delivery struct {
	h       *queueHandle
	l       *lease
	gen     uint64
	attempt int
	msg     qdriver.Message
}

var _ qdriver.Delivery = (*delivery)(nil)

func (d *delivery) Message() qdriver.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// owns reports whether d still holds its message's lease. q.mu is held. An
// expired lease is still held until the message is delivered again.
func (q *queueState) owns(d *delivery) bool {
	return q.leases[d.l.id] == d.l && d.l.gen == d.gen && d.l.state == leased
}

func (d *delivery) InProgress(ctx context.Context, leaseFor time.Duration) error {
	if err := d.h.begin(ctx); err != nil {
		return err
	}
	defer d.h.db.end()
	q := d.h.db.q
	if leaseFor <= 0 {
		leaseFor = time.Duration(q.defaultLease.Load())
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.owns(d) {
		return qdriver.ErrLeaseLost
	}
	d.l.expiry = time.Now().Add(leaseFor)
	heap.Fix(&q.expiry, d.l.idx)
	return nil
}

func (d *delivery) Ack(ctx context.Context) error {
	return d.settle(ctx, settleAck, 0, "", pebble.Sync)
}

// AckLazy is Ack committed without waiting for the WAL's fsync; see
// queue/driver.LazyAcker.
func (d *delivery) AckLazy(ctx context.Context) error {
	return d.settle(ctx, settleAck, 0, "", pebble.NoSync)
}

func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	return d.settle(ctx, settleNak, delay, "", pebble.Sync)
}

func (d *delivery) Term(ctx context.Context, reason string) error {
	return d.settle(ctx, settleTerm, 0, reason, pebble.Sync)
}

type settleKind int

const (
	settleAck settleKind = iota
	settleNak
	settleTerm
)

// settle ends d's lease with an Ack, Nak or Term, committed with wo
// (pebble.Sync: durable on return).
func (d *delivery) settle(ctx context.Context, kind settleKind, delay time.Duration, reason string, wo *pebble.WriteOptions) error {
	if err := d.h.begin(ctx); err != nil {
		return err
	}
	defer d.h.db.end()
	db, q, l := d.h.db, d.h.db.q, d.l
	held := db.lockStripes(l.id)
	defer db.unlockStripes(held)

	q.mu.Lock()
	if !q.owns(d) {
		q.mu.Unlock()
		return qdriver.ErrLeaseLost
	}
	l.state = settling
	heap.Remove(&q.expiry, l.idx)
	q.mu.Unlock()

	now := time.Now()
	b := db.pdb.NewBatch()
	defer b.Close()
	var newKey []byte
	dead := kind == settleTerm
	if kind == settleNak {
		if maxDel := int(q.maxDeliveries.Load()); maxDel > 0 && l.deliveries >= maxDel {
			dead, reason = true, "delivered MaxDeliveries times without an Ack"
		} else {
			readyAt := nanos(now.Add(max(delay, 0)))
			newKey = queueKey(readyAt, l.id)
			q.raiseLatestReady(readyAt)
			_ = b.Delete(l.key, nil)
			_ = b.Set(newKey, encodeEntry(l.deliveries, l.body), nil)
			_ = b.Set(msgKey(l.id), encodeReadyAt(readyAt), nil)
		}
	}
	if kind == settleAck {
		_ = b.Delete(l.key, nil)
		_ = b.Delete(msgKey(l.id), nil)
	}
	if dead {
		_ = b.Delete(l.key, nil)
		_ = b.Set(msgKey(l.id), deadMark, nil)
		_ = b.Set(deadKey(l.id), encodeDead(now, l.deliveries, reason, l.body), nil)
	}
	err := b.Commit(wo)

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		// Nothing changed on disk: the lease stands.
		l.state = leased
		heap.Push(&q.expiry, l)
		return fmt.Errorf("embedded: settling message %s: %w", l.id, err)
	}
	delete(q.leases, l.id)
	switch {
	case dead:
		q.live--
		q.dead++
	case kind == settleAck:
		q.live--
	default: // naked: a new entry to scan
		q.lowerWatermark(newKey)
		if delay > 0 {
			q.armAlarm(now.Add(delay))
		} else {
			q.signal(1)
		}
	}
	return nil
}

// ---- lease heap ----

type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *leaseHeap) Push(x any) {
	l := x.(*lease)
	l.idx = len(*h)
	*h = append(*h, l)
}
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.idx = -1
	return l
}

// ---- dead letters ----

// DeadLetter is a message that was dead-lettered: termed, or delivered
// MaxDeliveries times without an Ack.
type DeadLetter struct {
	ID         string
	Body       []byte
	Deliveries int
	Reason     string
	At         time.Time
}

// DeadLetters returns up to limit dead letters in ID order, starting after
// the ID after ("" for the first page).
func (db *DB) DeadLetters(after string, limit int) ([]DeadLetter, error) {
	if err := db.begin(ErrClosed); err != nil {
		return nil, err
	}
	defer db.end()
	if limit <= 0 {
		limit = defaultListLimit
	}
	lower := []byte{pDead}
	if after != "" {
		lower = append(deadKey(after), 0)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pDead + 1}})
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		dl, err := decodeDead(string(it.Key()[1:]), v)
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("embedded: dead letter %q: %w", it.Key()[1:], err)
		}
		out = append(out, dl)
	}
	return out, firstErr(it.Error(), it.Close())
}
