package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	qdriver "github.com/arrhq/arr/queue/driver"
)

// Queue is the work queue (queue/driver.Queue) on a DB: the table
// arr_queue of its schema. Several Queues, in one process or many, may
// receive from one table; each message is leased to one of them at a time.
// Leases are kept in the database and timed by its clock (now()), so
// workers on machines whose clocks disagree still agree on them.
type Queue struct {
	db            *DB
	maxDeliveries int
	defaultLease  time.Duration
	pollInterval  time.Duration

	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	leases map[[16]byte]struct{} // tokens of this queue's unsettled deliveries
}

var (
	_ qdriver.Queue     = (*Queue)(nil)
	_ qdriver.LazyAcker = (*delivery)(nil)
)

func newQueue(db *DB, cfg config) *Queue {
	return &Queue{
		db:            db,
		maxDeliveries: cfg.maxDeliveries,
		defaultLease:  cfg.defaultLease,
		pollInterval:  cfg.pollInterval,
		closed:        make(chan struct{}),
		leases:        map[[16]byte]struct{}{},
	}
}

// DB returns the DB the queue is on.
func (q *Queue) DB() *DB { return q.db }

func (q *Queue) isClosed() bool {
	select {
	case <-q.closed:
		return true
	default:
		return false
	}
}

// Close makes blocked and later Receives return ErrClosed and later calls
// fail, ends the leases of this queue's unsettled deliveries at once (as if
// they had expired: they are delivered again, to any queue, and count
// against MaxDeliveries), and releases the queue's reference to its DB.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		close(q.closed)
		q.mu.Lock()
		tokens := make([][16]byte, 0, len(q.leases))
		for t := range q.leases {
			tokens = append(tokens, t)
		}
		q.leases = nil
		q.mu.Unlock()
		if len(tokens) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var n int64
			if e := q.db.pool.QueryRow(ctx, q.db.sql.release, pgx.NamedArgs{"tokens": tokens, "queue_chan": q.db.qChan}).Scan(&n); e != nil {
				err = fmt.Errorf("postgres: releasing the leases of a closing queue: %w", e)
			}
			cancel()
		}
		q.db.release()
	})
	return err
}

// Enqueue: see queue/driver.Queue.Enqueue. One statement: every message or
// none. A queued id (delivered or not) is left alone; a dead one is
// revived with the new body; the first of several messages with one id in
// a call wins.
func (q *Queue) Enqueue(ctx context.Context, msgs ...qdriver.Message) error {
	if q.isClosed() {
		return qdriver.ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	args, err := enqueueArgs(msgs, q.db.qChan)
	if err != nil {
		return err
	}
	var n int64
	if err := q.db.pool.QueryRow(ctx, q.db.sql.enqueue, args).Scan(&n); err != nil {
		return fmt.Errorf("postgres: enqueuing: %w", err)
	}
	return nil
}

// enqueueArgs are the arguments of the enqueue statement for msgs (the
// first of each ID), on the queue whose NOTIFY channel is qChan.
func enqueueArgs(msgs []qdriver.Message, qChan string) (pgx.NamedArgs, error) {
	seen := make(map[string]bool, len(msgs))
	ids := make([]string, 0, len(msgs))
	bodies := make([][]byte, 0, len(msgs))
	delays := make([]float64, 0, len(msgs))
	for _, m := range msgs {
		if m.ID == "" {
			return nil, errors.New("postgres: message has no ID")
		}
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		body := m.Body
		if body == nil {
			body = []byte{}
		}
		ids, bodies, delays = append(ids, m.ID), append(bodies, body), append(delays, micros(m.Delay))
	}
	return pgx.NamedArgs{"ids": ids, "bodies": bodies, "delays": delays, "queue_chan": qChan}, nil
}

// Receive: see queue/driver.Queue.Receive. It claims messages with one
// UPDATE … FOR UPDATE SKIP LOCKED, so concurrent receivers never take the
// same message. With nothing to claim it waits for a NOTIFY from an
// Enqueue, a Nak or a closing queue anywhere, for the next visible_at it
// knows of (a delay, a backoff, a lease's end), or for pollInterval,
// whichever comes first.
func (q *Queue) Receive(ctx context.Context, n int, lease time.Duration) ([]qdriver.Delivery, error) {
	if q.isClosed() {
		return nil, qdriver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n <= 0 {
		n = 1
	}
	if lease <= 0 {
		lease = q.defaultLease
	}
	if err := q.db.lis.ensure(ctx); err != nil {
		return nil, q.fail(ctx, err)
	}
	for {
		// Taken before the claim: a NOTIFY after the claim's snapshot
		// closes it.
		wake := q.db.lis.queueWait()
		ds, spent, err := q.claim(ctx, n, lease)
		if err != nil {
			return nil, q.fail(ctx, err)
		}
		if len(ds) > 0 {
			return ds, nil
		}
		if spent {
			continue // dead-lettered some; look again at once
		}
		wait := q.pollInterval
		var next *float64
		if err := q.db.pool.QueryRow(ctx, q.db.sql.nextVisible).Scan(&next); err != nil {
			return nil, q.fail(ctx, err)
		}
		if next != nil {
			d := time.Duration(*next * float64(time.Second))
			// A visible message another receiver holds locked: it is
			// leased in a moment, and its visible_at moves.
			wait = min(wait, max(d, 10*time.Millisecond))
		}
		timer := time.NewTimer(wait)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-q.closed:
			timer.Stop()
			return nil, qdriver.ErrClosed
		}
		timer.Stop()
	}
}

// fail turns err into ErrClosed when the queue closed, or ctx's error when
// ctx ended.
func (q *Queue) fail(ctx context.Context, err error) error {
	switch {
	case q.isClosed() || errors.Is(err, ErrClosed) || q.db.isClosed():
		return qdriver.ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("postgres: receiving: %w", err)
}

// claim leases up to n messages; spent reports messages dead-lettered
// instead (MaxDeliveries).
// claimTimeout bounds a claim, which runs on whether or not its caller
// still waits (see claim).
const claimTimeout = 30 * time.Second

func (q *Queue) claim(ctx context.Context, n int, lease time.Duration) ([]qdriver.Delivery, bool, error) {
	// The claim runs to its end even when ctx ends meanwhile: a claim cut
	// short may commit on the server without its rows reaching this
	// process, which would leave its messages leased to no one until the
	// lease ran out. Deliveries the caller no longer waits for are given
	// back below.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	rows, err := q.db.pool.Query(cctx, q.db.sql.claim, pgx.NamedArgs{
		"max": n, "maxd": q.maxDeliveries, "lease": micros(lease),
	})
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var (
		ds    []qdriver.Delivery
		spent bool
	)
	for rows.Next() {
		var (
			id      string
			body    []byte
			attempt int32
			token   *[16]byte
			dead    bool
		)
		if err := rows.Scan(&id, &body, &attempt, &token, &dead); err != nil {
			return nil, false, err
		}
		if dead {
			spent = true
			continue
		}
		ds = append(ds, &delivery{q: q, msg: qdriver.Message{ID: id, Body: body}, attempt: int(attempt), token: *token})
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	q.mu.Lock()
	closed := q.leases == nil
	gone := closed || ctx.Err() != nil
	for _, d := range ds {
		if !gone {
			q.leases[d.(*delivery).token] = struct{}{}
		}
	}
	q.mu.Unlock()
	if gone && len(ds) > 0 {
		// Closed, or the caller gone, during the claim: give them back
		// as Close would have.
		tokens := make([][16]byte, len(ds))
		for i, d := range ds {
			tokens[i] = d.(*delivery).token
		}
		var n int64
		_ = q.db.pool.QueryRow(cctx, q.db.sql.release, pgx.NamedArgs{"tokens": tokens, "queue_chan": q.db.qChan}).Scan(&n)
		if closed {
			return nil, false, qdriver.ErrClosed
		}
		return nil, false, ctx.Err()
	}
	return ds, spent, nil
}

// Stats: see queue/driver.Queue.Stats. It counts the table (a sequential
// scan: O(queue length), fine for queues of up to some millions). Ready
// includes leased messages whose lease has expired; those on their last
// allowed delivery count as Dead.
func (q *Queue) Stats(ctx context.Context) (qdriver.Stats, error) {
	if q.isClosed() {
		return qdriver.Stats{}, qdriver.ErrClosed
	}
	var s qdriver.Stats
	if err := q.db.pool.QueryRow(ctx, q.db.sql.stats, pgx.NamedArgs{"maxd": q.maxDeliveries}).
		Scan(&s.Ready, &s.Delayed, &s.InFlight, &s.Dead); err != nil {
		return s, fmt.Errorf("postgres: queue stats: %w", err)
	}
	return s, nil
}

func (q *Queue) settled(token [16]byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.leases, token)
}

// delivery is one lease of a message, identified by its random token: any
// settlement checks that the message still carries the token, so a
// delivery whose message was delivered again (or acked, naked, termed)
// gets ErrLeaseLost.
type delivery struct {
	q       *Queue
	msg     qdriver.Message
	attempt int
	token   [16]byte
}

func (d *delivery) Message() qdriver.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// exec runs a settlement that must change the message's row.
func (d *delivery) exec(ctx context.Context, what, sql string, args pgx.NamedArgs, final bool) error {
	if d.q.isClosed() {
		return qdriver.ErrClosed
	}
	args["id"], args["token"] = d.msg.ID, d.token
	tag, err := d.q.db.pool.Exec(ctx, sql, args)
	if err != nil {
		return fmt.Errorf("postgres: %s %s: %w", what, d.msg.ID, err)
	}
	if tag.RowsAffected() == 0 {
		d.q.settled(d.token)
		return fmt.Errorf("%w: %s of %s (attempt %d)", qdriver.ErrLeaseLost, what, d.msg.ID, d.attempt)
	}
	if final {
		d.q.settled(d.token)
	}
	return nil
}

// Ack deletes the message.
func (d *delivery) Ack(ctx context.Context) error {
	return d.exec(ctx, "ack", d.q.db.sql.ack, pgx.NamedArgs{}, true)
}

// AckLazy: see queue/driver.LazyAcker. It is Ack's statement committed
// with synchronous_commit off for its own transaction: the message is gone
// for every receiver when it returns, and the removal is durable when the
// WAL writer flushes it (within 3 × wal_writer_delay) or with the next
// synchronous commit of any session (any durable write of the store or the
// queue, or Store.Sync). A crash of the PostgreSQL server before that
// brings the message back, to be delivered again when its lease ends.
func (d *delivery) AckLazy(ctx context.Context) error {
	return d.exec(ctx, "ack", d.q.db.sql.ackLazy, pgx.NamedArgs{}, true)
}

// InProgress moves the lease's end to lease from now (the database's now).
func (d *delivery) InProgress(ctx context.Context, lease time.Duration) error {
	if lease <= 0 {
		lease = d.q.defaultLease
	}
	return d.exec(ctx, "extend lease of", d.q.db.sql.inProgress, pgx.NamedArgs{"lease": micros(lease)}, false)
}

// Term dead-letters the message with reason.
func (d *delivery) Term(ctx context.Context, reason string) error {
	return d.exec(ctx, "term", d.q.db.sql.term, pgx.NamedArgs{"reason": reason}, true)
}

// Nak makes the message visible again after delay, or dead-letters it when
// this was its last allowed delivery.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if d.q.isClosed() {
		return qdriver.ErrClosed
	}
	var n, notified int64
	err := d.q.db.pool.QueryRow(ctx, d.q.db.sql.nak, pgx.NamedArgs{
		"id": d.msg.ID, "token": d.token, "delay": micros(delay),
		"maxd": d.q.maxDeliveries, "queue_chan": d.q.db.qChan,
	}).Scan(&n, &notified)
	if err != nil {
		return fmt.Errorf("postgres: nak %s: %w", d.msg.ID, err)
	}
	d.q.settled(d.token)
	if n == 0 {
		return fmt.Errorf("%w: nak of %s (attempt %d)", qdriver.ErrLeaseLost, d.msg.ID, d.attempt)
	}
	return nil
}
