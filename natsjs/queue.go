package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/arrhq/arr/queue/driver"
)

// Message headers the queue writes.
const (
	hdrID      = "Arr-Id"       // the message ID
	hdrBase    = "Arr-Base"     // attempts made before this stream message
	hdrDue     = "Arr-Due"      // delay stream: Unix nanoseconds when due
	hdrReason  = "Arr-Reason"   // dead stream: why
	hdrAttempt = "Arr-Attempts" // dead stream: attempts made
)

const (
	workConsumer  = "arr-work"
	delayConsumer = "arr-mover"
	// pullWait bounds one waiting pull request, so that a pull lost in a
	// leader change, or abandoned by a Receive whose context ended, lasts
	// at most this long.
	pullWait = time.Second
	// delayAckWait is the delay consumer's AckWait: how late a delayed
	// message can be when a mover stops holding it.
	delayAckWait = 5 * time.Second
	// opTimeout bounds the acks and naks the queue sends on its own
	// (lease expiry, Close).
	opTimeout = 5 * time.Second
)

// Queue is a queue/driver.Queue on JetStream; see the package doc.
type Queue struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	release func()

	workName, delayName, deadName string
	work, delay, dead             jetstream.Stream
	workCons                      jetstream.Consumer
	nextSubj                      string // pull request subject of the work consumer

	inbox string
	sub   *nats.Subscription

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
	reqs     map[string]*pullReq
	stash    []*delivery
	stashSig chan struct{} // closed and replaced when the stash grows
	live     map[*delivery]struct{}
	reqSeq   atomic.Uint64

	stopMover context.CancelFunc
	moverDone chan struct{}
}

var _ driver.Queue = (*Queue)(nil)

// OpenQueue opens (creating when missing) the queue cfg names over nc.
// release, if not nil, is called by Close (to give back a shared
// connection); nc is not closed otherwise.
func OpenQueue(ctx context.Context, nc *nats.Conn, cfg Config, release func()) (*Queue, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = defaultAckWait
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	p := cfg.Prefix
	q := &Queue{
		cfg: cfg, nc: nc, js: js, release: release,
		workName: p + "_work", delayName: p + "_delay", deadName: p + "_dead",
		closedCh: make(chan struct{}),
		reqs:     map[string]*pullReq{},
		stashSig: make(chan struct{}),
		live:     map[*delivery]struct{}{},
	}
	fail := func(err error) (*Queue, error) {
		if q.sub != nil {
			_ = q.sub.Unsubscribe()
		}
		return nil, fmt.Errorf("natsjs: opening queue %s: %w", p, err)
	}
	perSubject := func(name, subj string, ret jetstream.RetentionPolicy, discard jetstream.DiscardPolicy) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: name, Subjects: []string{subj}, Retention: ret, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxMsgsPerSubject: 1, Discard: discard,
			DiscardNewPerSubject: discard == jetstream.DiscardNew, Duplicates: 2 * time.Minute,
		}
	}
	if q.work, err = ensureStream(ctx, js, perSubject(q.workName, p+".work.>", jetstream.WorkQueuePolicy, jetstream.DiscardNew)); err != nil {
		return fail(err)
	}
	if q.delay, err = ensureStream(ctx, js, perSubject(q.delayName, p+".delay.>", jetstream.WorkQueuePolicy, jetstream.DiscardNew)); err != nil {
		return fail(err)
	}
	if q.dead, err = ensureStream(ctx, js, perSubject(q.deadName, p+".dead.>", jetstream.LimitsPolicy, jetstream.DiscardOld)); err != nil {
		return fail(err)
	}
	q.workCons, err = js.CreateOrUpdateConsumer(ctx, q.workName, jetstream.ConsumerConfig{
		Durable: workConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait,
		MaxDeliver: -1, MaxAckPending: -1, MaxWaiting: 4096, Replicas: cfg.Replicas,
	})
	if err != nil {
		return fail(err)
	}
	delayCons, err := js.CreateOrUpdateConsumer(ctx, q.delayName, jetstream.ConsumerConfig{
		Durable: delayConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: delayAckWait,
		MaxDeliver: -1, MaxAckPending: -1, Replicas: cfg.Replicas,
	})
	if err != nil {
		return fail(err)
	}
	q.nextSubj = fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", q.workName, workConsumer)
	q.inbox = nc.NewRespInbox()
	if q.sub, err = nc.Subscribe(q.inbox+".*", q.onMsg); err != nil {
		return fail(err)
	}
	_ = q.sub.SetPendingLimits(-1, -1)
	mctx, cancel := context.WithCancel(context.Background())
	q.stopMover, q.moverDone = cancel, make(chan struct{})
	go q.mover(mctx, delayCons)
	return q, nil
}

// ensureStream creates the stream, or updates it to cfg when it exists.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Name)
		}
	}
	return s, err
}

func (q *Queue) subj(kind, id string) string {
	return q.cfg.Prefix + "." + kind + "." + token(id)
}

// ---- receiving ----

// pullReq is one pull request of the work consumer. The messages it
// brings are not told apart from other requests' (they arrive with their
// stream subjects on the queue's one inbox subscription): they all go to
// the queue's stash, from which every Receive takes. Only the request's
// end (a status message on its own reply subject) is tracked.
type pullReq struct {
	done bool          // the server ended it (status message)
	sig  chan struct{} // buffer 1: it ended
}

// onMsg receives the work consumer's messages and the pull requests'
// status replies.
func (q *Queue) onMsg(m *nats.Msg) {
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		reqID := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		q.mu.Lock()
		if r := q.reqs[reqID]; r != nil {
			r.done = true
			signal(r.sig)
		}
		q.mu.Unlock()
		return
	}
	md, err := m.Metadata()
	if err != nil {
		return
	}
	base, _ := strconv.Atoi(m.Header.Get(hdrBase))
	d := &delivery{
		q: q, m: m,
		msg:     driver.Message{ID: m.Header.Get(hdrID), Body: m.Data},
		attempt: base + int(md.NumDelivered),
		beat:    time.Now(),
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		_ = q.nc.Publish(m.Reply, []byte("-NAK"))
		return
	}
	if max := q.cfg.MaxDeliveries; max > 0 && d.attempt > max {
		// Delivered MaxDeliveries times already (its holders died): dead.
		q.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			_ = q.deadLetter(ctx, d, "max deliveries reached")
		}()
		return
	}
	q.live[d] = struct{}{}
	d.state = dUnclaimed
	d.schedule()
	q.stash = append(q.stash, d)
	close(q.stashSig)
	q.stashSig = make(chan struct{})
	q.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Receive: see driver.Queue. It takes messages that arrived for abandoned
// pull requests first, then pulls without waiting, then waits with pull
// requests of at most a second, for one message.
func (q *Queue) Receive(ctx context.Context, max int, lease time.Duration) ([]driver.Delivery, error) {
	if max <= 0 {
		max = 1
	}
	if lease <= 0 {
		lease = q.cfg.AckWait
	}
	for {
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, driver.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if ds := q.fromStash(max); len(ds) > 0 {
			return q.lease(ds, lease), nil
		}
		err := q.pull(ctx, max, false)
		if err == nil {
			if ds := q.fromStash(max); len(ds) > 0 {
				return q.lease(ds, lease), nil
			}
			err = q.pull(ctx, 1, true)
		}
		if ds := q.fromStash(max); len(ds) > 0 {
			return q.lease(ds, lease), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (q *Queue) fromStash(max int) []*delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.stash))
	ds := append([]*delivery(nil), q.stash[:n]...)
	q.stash = append(q.stash[:0], q.stash[n:]...)
	return ds
}

// lease hands ds to a caller for lease.
func (q *Queue) lease(ds []*delivery, lease time.Duration) []driver.Delivery {
	out := make([]driver.Delivery, 0, len(ds))
	for _, d := range ds {
		d.mu.Lock()
		if d.state == dUnclaimed {
			d.state = dLeased
			d.end = time.Now().Add(lease)
			d.schedule()
			out = append(out, d)
		}
		d.mu.Unlock()
	}
	return out
}

// pull sends one pull request (no_wait for batch, or waiting up to
// pullWait for one message) and returns when it has brought what it can
// (or, waiting, when anything is in the stash), when ctx ends or the
// queue closes. Messages go to the stash.
func (q *Queue) pull(ctx context.Context, batch int, wait bool) error {
	id := strconv.FormatUint(q.reqSeq.Add(1), 36)
	r := &pullReq{sig: make(chan struct{}, 1)}
	body := map[string]any{"batch": batch}
	timeout := 5 * time.Second
	if wait {
		w := pullWait
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < w {
			w = max(time.Until(dl), 10*time.Millisecond)
		}
		body["expires"] = w.Nanoseconds()
		timeout = w + 500*time.Millisecond
	} else {
		body["no_wait"] = true
	}
	b, _ := json.Marshal(body)
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return driver.ErrClosed
	}
	q.reqs[id] = r
	stashSig := q.stashSig
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.reqs, id)
		q.mu.Unlock()
	}()
	if err := q.nc.PublishRequest(q.nextSubj, q.inbox+"."+id, b); err != nil {
		return err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var settle <-chan time.Time
	for {
		select {
		case <-r.sig:
			return nil
		case <-stashSig:
			q.mu.Lock()
			n := len(q.stash)
			stashSig = q.stashSig
			q.mu.Unlock()
			if wait || n >= batch {
				return nil
			}
			if settle == nil {
				// no_wait: the server sends what it has at once, then
				// the status (unless the batch is full).
				settle = time.After(20 * time.Millisecond)
			}
		case <-settle:
			return nil
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-q.closedCh:
			return driver.ErrClosed
		}
	}
}

// ---- deliveries ----

type dstate int

const (
	dUnclaimed dstate = iota // arrived, not yet handed to a caller
	dLeased
	dDone // settled, expired or dropped by Close
)

// delivery is one delivery of a work stream message. While unclaimed or
// leased it sends InProgress every AckWait/3 so that the server does not
// redeliver it; when its lease passes unsettled it is naked (or
// dead-lettered at MaxDeliveries).
type delivery struct {
	q       *Queue
	m       *nats.Msg
	msg     driver.Message
	attempt int

	mu    sync.Mutex
	state dstate
	end   time.Time // lease end (dLeased)
	beat  time.Time // last time the server's ack timer was reset
	timer *time.Timer
}

var _ driver.Delivery = (*delivery)(nil)

// schedule arms the timer for the next heartbeat or the lease end; d.mu
// is held.
func (d *delivery) schedule() {
	next := d.beat.Add(d.q.cfg.AckWait / 3)
	if d.state == dLeased && d.end.Before(next) {
		next = d.end
	}
	wait := time.Until(next)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.onTimer)
	} else {
		d.timer.Reset(wait)
	}
}

func (d *delivery) onTimer() {
	d.mu.Lock()
	if d.state == dDone {
		d.mu.Unlock()
		return
	}
	now := time.Now()
	if d.state == dLeased && !now.Before(d.end) {
		d.state = dDone
		d.mu.Unlock()
		d.q.forget(d)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if max := d.q.cfg.MaxDeliveries; max > 0 && d.attempt >= max {
			_ = d.q.deadLetter(ctx, d, "max deliveries reached")
		} else {
			_ = d.q.reply(ctx, d, "-NAK")
		}
		return
	}
	d.beat = now
	d.schedule()
	d.mu.Unlock()
	_ = d.q.nc.Publish(d.m.Reply, []byte("+WPI"))
}

// settle moves a leased delivery to done, or reports ErrLeaseLost.
func (d *delivery) settle() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != dLeased {
		return driver.ErrLeaseLost
	}
	d.state = dDone
	d.timer.Stop()
	d.q.forget(d)
	return nil
}

func (q *Queue) forget(d *delivery) {
	q.mu.Lock()
	delete(q.live, d)
	q.mu.Unlock()
}

func (d *delivery) Message() driver.Message {
	m := d.msg
	m.Body = append([]byte(nil), m.Body...)
	return m
}

func (d *delivery) Attempt() int { return d.attempt }

// Ack removes the message; it returns once the server confirmed it.
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.settle(); err != nil {
		return err
	}
	return d.q.reply(ctx, d, "+ACK")
}

// Nak gives the message back: at once (delay <= 0), or through the delay
// stream, carrying its attempt count. At MaxDeliveries it dead-letters.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if err := d.settle(); err != nil {
		return err
	}
	q := d.q
	if max := q.cfg.MaxDeliveries; max > 0 && d.attempt >= max {
		return q.deadLetter(ctx, d, "max deliveries reached")
	}
	if delay <= 0 {
		return q.reply(ctx, d, "-NAK")
	}
	m := nats.NewMsg(q.subj("delay", d.msg.ID))
	m.Header.Set(hdrID, d.msg.ID)
	m.Header.Set(hdrBase, strconv.Itoa(d.attempt))
	m.Header.Set(hdrDue, strconv.FormatInt(time.Now().Add(delay).UnixNano(), 10))
	m.Data = d.msg.Body
	if err := q.publishDelayed(ctx, m, d.msg.ID); err != nil {
		return err
	}
	return q.reply(ctx, d, "+ACK")
}

// publishDelayed writes m, a delayed copy of message id, to the delay
// stream, which holds one message per ID. A refusal means a copy is there
// already. A copy not yet due is this message's delayed run (an earlier
// Nak whose ack was lost): it stands for this one. A copy already due is
// one the mover is moving to the work stream (the delivery being naked may
// be its move), and it is gone once the mover acks it: the write is
// retried until then, since the Nak's ack removes the work stream's copy
// and, had the write been dropped, the message with it. A due copy still
// there after twice the mover's ack wait (no mover running) is an error:
// the delivery is then not acked, and its lease runs out.
func (q *Queue) publishDelayed(ctx context.Context, m *nats.Msg, id string) error {
	giveUp := time.Now().Add(2 * delayAckWait)
	for {
		err := q.publish(ctx, m)
		if err == nil || !isPerSubjectLimit(err) {
			return err
		}
		there, err := q.delay.GetLastMsgForSubject(ctx, m.Subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // moved meanwhile: write again
		}
		if err != nil {
			return err
		}
		due, _ := strconv.ParseInt(there.Header.Get(hdrDue), 10, 64)
		if time.Unix(0, due).After(time.Now()) {
			return nil
		}
		if time.Now().After(giveUp) {
			return fmt.Errorf("natsjs: delay %s: a due copy of the message is not being moved", id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// InProgress extends the lease to lease from now and resets the server's
// redelivery timer.
func (d *delivery) InProgress(ctx context.Context, lease time.Duration) error {
	if lease <= 0 {
		lease = d.q.cfg.AckWait
	}
	d.mu.Lock()
	if d.state != dLeased {
		d.mu.Unlock()
		return driver.ErrLeaseLost
	}
	d.end = time.Now().Add(lease)
	d.beat = time.Now()
	d.schedule()
	d.mu.Unlock()
	return d.q.reply(ctx, d, "+WPI")
}

// Term dead-letters the message.
func (d *delivery) Term(ctx context.Context, reason string) error {
	if err := d.settle(); err != nil {
		return err
	}
	return d.q.deadLetter(ctx, d, reason)
}

// reply sends an ack of kind body and waits for the server's confirmation.
func (q *Queue) reply(ctx context.Context, d *delivery, body string) error {
	if _, err := q.nc.RequestWithContext(ctx, d.m.Reply, []byte(body)); err != nil {
		return fmt.Errorf("natsjs: %s %s: %w", body, d.msg.ID, err)
	}
	return nil
}

// deadLetter stores the message in the dead stream, then removes it from
// the work stream.
func (q *Queue) deadLetter(ctx context.Context, d *delivery, reason string) error {
	m := nats.NewMsg(q.subj("dead", d.msg.ID))
	m.Header.Set(hdrID, d.msg.ID)
	m.Header.Set(hdrReason, reason)
	m.Header.Set(hdrAttempt, strconv.Itoa(d.attempt))
	m.Data = d.msg.Body
	if err := q.publish(ctx, m); err != nil {
		return err
	}
	return q.reply(ctx, d, "+ACK")
}

// ---- enqueueing ----

func (q *Queue) publish(ctx context.Context, m *nats.Msg) error {
	_, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(nuid.Next()))
	return err
}

// isPerSubjectLimit reports the refusal of a stream that already holds a
// message on the subject (DiscardNewPerSubject).
func isPerSubjectLimit(err error) bool {
	return err != nil && strings.Contains(err.Error(), "maximum messages per subject exceeded")
}

// Enqueue: see driver.Queue. Within one call the first message of an ID
// wins; the messages are written concurrently.
func (q *Queue) Enqueue(ctx context.Context, msgs ...driver.Message) error {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return driver.ErrClosed
	}
	return driver.EnqueueEach(ctx, "natsjs", msgs, 32, q.enqueueOne)
}

func (q *Queue) has(ctx context.Context, s jetstream.Stream, subj string) (bool, error) {
	_, err := s.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (q *Queue) enqueueOne(ctx context.Context, msg driver.Message) error {
	// Queued already (delayed, or ready/leased for a delayed enqueue)?
	other, otherSubj := q.delay, q.subj("delay", msg.ID)
	if msg.Delay > 0 {
		other, otherSubj = q.work, q.subj("work", msg.ID)
	}
	if ok, err := q.has(ctx, other, otherSubj); err != nil || ok {
		return err
	}
	// A dead letter is revived.
	deadSubj := q.subj("dead", msg.ID)
	if ok, err := q.has(ctx, q.dead, deadSubj); err != nil {
		return err
	} else if ok {
		if err := q.dead.Purge(ctx, jetstream.WithPurgeSubject(deadSubj)); err != nil {
			return err
		}
	}
	var m *nats.Msg
	if msg.Delay > 0 {
		m = nats.NewMsg(q.subj("delay", msg.ID))
		m.Header.Set(hdrDue, strconv.FormatInt(time.Now().Add(msg.Delay).UnixNano(), 10))
	} else {
		m = nats.NewMsg(q.subj("work", msg.ID))
	}
	m.Header.Set(hdrID, msg.ID)
	m.Data = msg.Body
	if err := q.publish(ctx, m); err != nil && !isPerSubjectLimit(err) {
		return err
	}
	return nil
}

// mover moves due messages from the delay stream to the work stream.
func (q *Queue) mover(ctx context.Context, c jetstream.Consumer) {
	defer close(q.moverDone)
	for ctx.Err() == nil {
		batch, err := c.Fetch(64, jetstream.FetchMaxWait(pullWait))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for m := range batch.Messages() {
			if ctx.Err() != nil {
				_ = m.Nak()
				continue
			}
			q.move(ctx, m)
		}
	}
}

func (q *Queue) move(ctx context.Context, m jetstream.Msg) {
	h := m.Headers()
	due, _ := strconv.ParseInt(h.Get(hdrDue), 10, 64)
	if wait := time.Until(time.Unix(0, due)); wait > 0 {
		_ = m.NakWithDelay(wait)
		return
	}
	w := nats.NewMsg(q.subj("work", h.Get(hdrID)))
	w.Header.Set(hdrID, h.Get(hdrID))
	if b := h.Get(hdrBase); b != "" {
		w.Header.Set(hdrBase, b)
	}
	w.Data = m.Data()
	if err := q.publish(ctx, w); err != nil && !isPerSubjectLimit(err) {
		_ = m.NakWithDelay(100 * time.Millisecond)
		return
	}
	_ = m.DoubleAck(ctx)
}

// ---- stats and close ----

// Stats: see driver.Queue. Ready counts the work consumer's undelivered
// messages; InFlight its delivered, unacked ones (a message naked for
// immediate redelivery counts there until it is redelivered); Delayed and
// Dead the delay and dead streams' messages.
func (q *Queue) Stats(ctx context.Context) (driver.Stats, error) {
	ci, err := q.workCons.Info(ctx)
	if err != nil {
		return driver.Stats{}, err
	}
	di, err := q.delay.Info(ctx)
	if err != nil {
		return driver.Stats{}, err
	}
	xi, err := q.dead.Info(ctx)
	if err != nil {
		return driver.Stats{}, err
	}
	q.mu.Lock()
	stashed := int64(len(q.stash))
	q.mu.Unlock()
	return driver.Stats{
		Ready:    int64(ci.NumPending) + stashed,
		InFlight: max(int64(ci.NumAckPending)-stashed, 0),
		Delayed:  int64(di.State.Msgs),
		Dead:     int64(xi.State.Msgs),
	}, nil
}

// Close naks every delivery this queue holds (so that a reopened queue
// gets them at once), stops the mover, and unblocks Receive with
// ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closedCh)
	var ds []*delivery
	for d := range q.live {
		ds = append(ds, d)
	}
	q.live = map[*delivery]struct{}{}
	q.stash = nil
	q.mu.Unlock()
	q.stopMover()
	var wg sync.WaitGroup
	for _, d := range ds {
		d.mu.Lock()
		if d.state == dDone {
			d.mu.Unlock()
			continue
		}
		d.state = dDone
		if d.timer != nil {
			d.timer.Stop()
		}
		d.mu.Unlock()
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			_ = q.reply(ctx, d, "-NAK")
		})
	}
	wg.Wait()
	// The mover stops on its own within pullWait; a delayed message that
	// reaches it after this is naked and comes back within delayAckWait.
	_ = q.sub.Unsubscribe()
	if q.release != nil {
		q.release()
	}
	return nil
}
