package azurequeue

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/arrhq/arr/internal/azclient"
	"github.com/arrhq/arr/queue/driver"
)

// Options are what a program (or a test) may set beyond the URL.
type Options struct {
	// Credential authenticates to Azure (nil: azclient.Credential(), the
	// process's DefaultAzureCredential).
	Credential azcore.TokenCredential
	// ClientOptions are the Azure clients' options (nil:
	// azclient.ClientOptions()).
	ClientOptions *azcore.ClientOptions
}

const (
	// opTimeout bounds the writes the queue makes on its own: finishing a
	// Receive whose context ended mid-call, giving leases back on Close.
	opTimeout = 30 * time.Second
	// pollMin and pollMax bound the wait between empty polls.
	pollMin = 50 * time.Millisecond
	pollMax = time.Second
	// batchMax is Azure's limit on messages per dequeue.
	batchMax = 32
	// enqueueParallel bounds the messages of one Enqueue written at once.
	enqueueParallel = 32
)

// Queue is a queue/driver.Queue on an Azure Storage queue with an index in
// Azure Table Storage; see the package doc.
type Queue struct {
	cfg    Config
	main   *azqueue.QueueClient
	poison *azqueue.QueueClient
	table  *aztables.Client

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
	wake     chan struct{} // closed and replaced when this process enqueues
	live     map[*delivery]struct{}
	polls    sync.WaitGroup // polls under way (Close waits for them)
}

var _ driver.Queue = (*Queue)(nil)

// OpenURL opens the queue an azqueue:// URL names (see ParseURL).
func OpenURL(ctx context.Context, u *url.URL, opts *Options) (*Queue, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg, opts)
}

// Open opens the queue cfg names, creating the queue, its poison queue and
// the index table when they are missing.
func Open(ctx context.Context, cfg Config, opts *Options) (*Queue, error) {
	if err := validQueueName(cfg.Queue); err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if err := validTableName(cfg.Table); err != nil {
		return nil, err
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxDeliveries < 0 {
		return nil, fmt.Errorf("azqueue: MaxDeliveries %d < 0", cfg.MaxDeliveries)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Credential == nil {
		c, err := azclient.Credential()
		if err != nil {
			return nil, err
		}
		o.Credential = c
	}
	if o.ClientOptions == nil {
		co := azclient.ClientOptions()
		o.ClientOptions = &co
	}
	qe := strings.TrimSuffix(cfg.QueueEndpoint, "/")
	main, err := azqueue.NewQueueClient(qe+"/"+cfg.Queue, o.Credential, &azqueue.ClientOptions{ClientOptions: *o.ClientOptions})
	if err != nil {
		return nil, fmt.Errorf("azqueue: %w", err)
	}
	poison, err := azqueue.NewQueueClient(qe+"/"+cfg.Queue+poisonSuffix, o.Credential, &azqueue.ClientOptions{ClientOptions: *o.ClientOptions})
	if err != nil {
		return nil, fmt.Errorf("azqueue: %w", err)
	}
	table, err := aztables.NewClient(strings.TrimSuffix(cfg.TableEndpoint, "/")+"/"+cfg.Table, o.Credential, &aztables.ClientOptions{ClientOptions: *o.ClientOptions})
	if err != nil {
		return nil, fmt.Errorf("azqueue: %w", err)
	}
	for _, c := range []*azqueue.QueueClient{main, poison} {
		if _, err := c.GetProperties(ctx, nil); isNotFound(err) {
			if _, err := c.Create(ctx, nil); err != nil && !isConflict(err) {
				return nil, fmt.Errorf("azqueue: creating queue %s: %w", c.URL(), err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("azqueue: opening queue %s: %w", c.URL(), err)
		}
	}
	if _, err := table.CreateTable(ctx, nil); err != nil && !isConflict(err) {
		return nil, fmt.Errorf("azqueue: creating the index table %s: %w", cfg.Table, err)
	}
	return &Queue{
		cfg: cfg, main: main, poison: poison, table: table,
		closedCh: make(chan struct{}),
		wake:     make(chan struct{}),
		live:     map[*delivery]struct{}{},
	}, nil
}

func (q *Queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// ---- enqueueing ----

// Enqueue: see driver.Queue. Within one call the first message of an ID
// wins; the messages are written concurrently. Each is written to the
// queue first, then indexed (see the package doc).
func (q *Queue) Enqueue(ctx context.Context, msgs ...driver.Message) error {
	if q.isClosed() {
		return driver.ErrClosed
	}
	err := driver.EnqueueEach(ctx, "azqueue", msgs, enqueueParallel, q.enqueueOne)
	q.mu.Lock()
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
	return err
}

func (q *Queue) enqueueOne(ctx context.Context, m driver.Message) error {
	now := time.Now()
	f := frame{id: m.ID, body: m.Body}
	if m.Delay > maxVisibility {
		f.due = ms(now.Add(m.Delay))
	}
	if len(rowKey(m.ID)) > maxRowKey {
		return fmt.Errorf("ID of %d bytes is over the index's limit (%d bytes)", len(m.ID), maxID)
	}
	content := f.encode()
	if len(content) > maxContent {
		return fmt.Errorf("message of %d bytes is over Azure's limit (%d bytes of base64 text: about 48 KiB of ID and body)", len(m.ID)+len(m.Body), maxContent)
	}
	r, err := q.main.EnqueueMessage(ctx, content, &azqueue.EnqueueMessageOptions{
		TimeToLive: to.Ptr(int32(-1)), VisibilityTimeout: to.Ptr(visibility(m.Delay)),
	})
	if err != nil {
		return err
	}
	if len(r.Messages) == 0 || r.Messages[0].MessageID == nil || r.Messages[0].PopReceipt == nil {
		return errors.New("the queue service answered an enqueue without a message ID")
	}
	msgID, pop := *r.Messages[0].MessageID, *r.Messages[0].PopReceipt
	e := entry{ID: m.ID, State: stQueued, Msg: msgID, At: ms(now.Add(max(m.Delay, 0)))}
	for {
		_, err := q.add(ctx, e)
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			// The message stays in the queue: a receiver indexes it
			// (a duplicate, if this Enqueue is retried, is dropped).
			return err
		}
		cur, etag, err := q.get(ctx, m.ID)
		if isNotFound(err) {
			continue // acked meanwhile: index ours
		}
		if err != nil {
			return err
		}
		if cur.Msg == msgID {
			return nil // a receiver took our message and indexed it
		}
		if cur.State != stDead {
			// Queued or leased already: ours is a duplicate.
			_, _ = q.main.DeleteMessage(ctx, msgID, pop, nil)
			return nil
		}
		// A dead letter: revive it as our message, then drop its copy in
		// the poison queue.
		if _, err := q.put(ctx, e, etag); isChanged(err) {
			continue
		} else if err != nil {
			return err
		}
		if _, err := q.poison.DeleteMessage(ctx, cur.Msg, cur.Pop, nil); err != nil && !isNotFound(err) {
			return fmt.Errorf("revived, but its copy in the poison queue stays: %w", err)
		}
		return nil
	}
}

// ---- receiving ----

// Receive: see driver.Queue. Azure has no push: it polls the queue,
// waiting between empty polls from 50ms doubling to 1s (and waking at once
// when this process enqueues). A poll under way when ctx ends is finished
// (so that the messages it took are not left invisible for a lease), and
// what it brought is returned.
func (q *Queue) Receive(ctx context.Context, max int, lease time.Duration) ([]driver.Delivery, error) {
	if max <= 0 {
		max = 1
	}
	if lease <= 0 {
		lease = q.cfg.Lease
	}
	wait := pollMin
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		closed, wake := q.closed, q.wake
		if !closed {
			q.polls.Add(1)
		}
		q.mu.Unlock()
		if closed {
			return nil, driver.ErrClosed
		}
		ds, took, err := q.poll(ctx, max, lease)
		q.polls.Done()
		if len(ds) > 0 || err != nil {
			return ds, err
		}
		if took {
			wait = pollMin
			continue // all dropped (duplicates, dead letters): poll again
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-q.closedCh:
			t.Stop()
			return nil, driver.ErrClosed
		case <-wake:
			t.Stop()
			wait = pollMin
		case <-t.C:
			wait = min(2*wait, pollMax)
		}
	}
}

// poll dequeues up to n messages once and makes deliveries of them;
// took reports that the queue gave any message.
func (q *Queue) poll(ctx context.Context, n int, lease time.Duration) (ds []driver.Delivery, took bool, err error) {
	lease = min(lease, maxVisibility)
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	r, err := q.main.DequeueMessages(bctx, &azqueue.DequeueMessagesOptions{
		NumberOfMessages:  to.Ptr(int32(min(n, batchMax))),
		VisibilityTimeout: to.Ptr(max(visibility(lease), 1)),
	})
	if err != nil {
		return nil, false, fmt.Errorf("azqueue: receive: %w", err)
	}
	if len(r.Messages) == 0 {
		return nil, false, nil
	}
	got := make([]*delivery, len(r.Messages))
	errs := make([]error, len(r.Messages))
	var wg sync.WaitGroup
	for i, m := range r.Messages {
		wg.Go(func() { got[i], errs[i] = q.take(bctx, m, lease) })
	}
	wg.Wait()
	q.mu.Lock()
	closed := q.closed
	for _, d := range got {
		if d != nil && !closed {
			q.live[d] = struct{}{}
			ds = append(ds, d)
		}
	}
	q.mu.Unlock()
	if closed {
		for _, d := range got {
			if d != nil {
				d.giveBack(bctx)
			}
		}
		return nil, true, driver.ErrClosed
	}
	if len(ds) == 0 {
		return nil, true, errors.Join(errs...)
	}
	return ds, true, nil
}

// take indexes a dequeued message as leased and returns its delivery, or
// nil when it is not to be delivered: hidden again (a long delay not yet
// due), dropped (a duplicate of an indexed message, or of a dead letter)
// or dead-lettered (MaxDeliveries).
func (q *Queue) take(ctx context.Context, m *azqueue.DequeuedMessage, lease time.Duration) (*delivery, error) {
	if m.MessageID == nil || m.PopReceipt == nil || m.MessageText == nil || m.DequeueCount == nil {
		return nil, errors.New("azqueue: the queue service answered a dequeue with an incomplete message")
	}
	msgID, pop := *m.MessageID, *m.PopReceipt
	f, err := decodeFrame(*m.MessageText)
	if err == nil && len(rowKey(f.id)) > maxRowKey {
		err = errFrame // not written by Enqueue, which refuses such IDs
	}
	if err != nil {
		// Not arr's: moved to the poison queue as it is (it has no ID to
		// index, so Stats do not count it).
		if _, err := q.poison.EnqueueMessage(ctx, *m.MessageText, &azqueue.EnqueueMessageOptions{TimeToLive: to.Ptr(int32(-1))}); err != nil {
			return nil, err
		}
		_, _ = q.main.DeleteMessage(ctx, msgID, pop, nil)
		return nil, nil
	}
	now := time.Now()
	if f.due > ms(now) {
		// A delay beyond the visibility cap, not yet due: hide it again
		// (this dequeue was no delivery).
		f.skips++
		_, err := q.main.UpdateMessage(ctx, msgID, pop, f.encode(), &azqueue.UpdateMessageOptions{
			VisibilityTimeout: to.Ptr(visibility(time.UnixMilli(f.due).Sub(now))),
		})
		return nil, err
	}
	attempt := *m.DequeueCount - f.skips
	d := &delivery{q: q, msgID: msgID, pop: pop, f: f, attempt: int(attempt)}
	want := entry{ID: f.id, State: stLeased, Msg: msgID, At: ms(now.Add(lease)), Deliveries: attempt}
	for {
		cur, etag, err := q.get(ctx, f.id)
		switch {
		case isNotFound(err):
			// Not indexed: a crash came between an Enqueue's two writes, or
			// an Ack's. Index it and deliver it (at least once).
			if d.etag, err = q.add(ctx, want); isConflict(err) {
				continue
			}
		case err != nil:
		case cur.Msg != msgID:
			// The ID is indexed with another message (or is dead): this
			// one is a leftover duplicate.
			_, _ = q.main.DeleteMessage(ctx, msgID, pop, nil)
			return nil, nil
		default:
			if d.etag, err = q.put(ctx, want, etag); isChanged(err) {
				continue
			}
		}
		if err != nil {
			// Unindexed, it comes back when its lease ends.
			return nil, err
		}
		break
	}
	if max := q.cfg.MaxDeliveries; max > 0 && d.attempt > max {
		// Delivered MaxDeliveries times already (its holders died): dead.
		return nil, d.deadLetter(ctx, "max deliveries reached")
	}
	return d, nil
}

// ---- stats and close ----

// Stats: see driver.Queue. They list the queue's partition of the index
// (one request per 1,000 messages queued, leased or dead) and count it:
// dead ones as Dead; leased ones as InFlight until their lease ends;
// queued ones as Delayed until they are due; and the rest (due, or whose
// lease ended) as Ready, or as Dead when they were delivered MaxDeliveries
// times (the next Receive that takes them dead-letters them). Times are
// this machine's clock; a lease or delay ends for Stats up to a second
// before Azure shows the message again (Azure counts whole seconds).
func (q *Queue) Stats(ctx context.Context) (driver.Stats, error) {
	if q.isClosed() {
		return driver.Stats{}, driver.ErrClosed
	}
	var s driver.Stats
	now := ms(time.Now())
	pager := q.table.NewListEntitiesPager(&aztables.ListEntitiesOptions{
		Filter: to.Ptr("PartitionKey eq '" + q.cfg.Queue + "'"),
		Select: to.Ptr("State,At,Deliveries"),
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return driver.Stats{}, fmt.Errorf("azqueue: stats: %w", err)
		}
		for _, b := range page.Entities {
			e, err := unmarshal(b)
			if err != nil {
				return driver.Stats{}, fmt.Errorf("azqueue: stats: %w", err)
			}
			spent := q.cfg.MaxDeliveries > 0 && e.Deliveries >= int64(q.cfg.MaxDeliveries)
			switch {
			case e.State == stDead:
				s.Dead++
			case e.At > now && e.State == stLeased:
				s.InFlight++
			case e.At > now:
				s.Delayed++
			case spent:
				s.Dead++
			default:
				s.Ready++
			}
		}
	}
	return s, nil
}

// Close gives back the leases of this queue's unsettled deliveries (their
// messages are visible again at once, to any queue, and their attempts
// count against MaxDeliveries), voids those deliveries, and makes blocked
// and later Receives return ErrClosed. It waits for a poll under way
// (one request, bounded by 30s) so that what that poll took is given back
// too before it returns.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closedCh)
	q.mu.Unlock()
	// A poll under way gives back what it took itself.
	q.polls.Wait()
	q.mu.Lock()
	ds := make([]*delivery, 0, len(q.live))
	for d := range q.live {
		ds = append(ds, d)
	}
	q.live = nil
	q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, enqueueParallel)
	for _, d := range ds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.giveBack(ctx)
		})
	}
	wg.Wait()
	return nil
}

func (q *Queue) forget(d *delivery) {
	q.mu.Lock()
	delete(q.live, d)
	q.mu.Unlock()
}
