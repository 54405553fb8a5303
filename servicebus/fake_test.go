package servicebus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// fake is a recording fake of the Service Bus calls (sender, receiver,
// manager): an in-memory queue of ready messages with peek-lock
// bookkeeping enough to hand out lock tokens, delivery counts and lock
// ends, and a log of every call in order, so that tests assert what the
// driver asked of Service Bus and when.
type fake struct {
	lock time.Duration // lock duration of received messages

	mu        sync.Mutex
	ready     []*azservicebus.ReceivedMessage
	wake      chan struct{} // closed and replaced when ready grows
	calls     []call
	seq       int64
	fail      map[string][]error // errors the next calls of an op return, in order
	receiving int                // receive calls under way
	overlap   bool               // two receive calls overlapped
	counts    counts
}

type call struct {
	op        string // send, schedule, receive, complete, abandon, dead-letter, renew, counts, close-r, close-s
	id        string // arr-id of the message
	messageID string
	attempts  any    // propAttempts of a sent message
	reason    string // dead-letter
	at        time.Time
	when      time.Time
	lockedTil time.Time // renew: the lock end before the renewal
}

func newFake(lock time.Duration) *fake {
	return &fake{lock: lock, wake: make(chan struct{}), fail: map[string][]error{}}
}

// failNext makes the next call of op return err.
func (f *fake) failNext(op string, err error) {
	f.mu.Lock()
	f.fail[op] = append(f.fail[op], err)
	f.mu.Unlock()
}

// record logs c and returns the error queued for its op; f.mu is held.
func (f *fake) record(c call) error {
	c.when = time.Now()
	f.calls = append(f.calls, c)
	if errs := f.fail[c.op]; len(errs) > 0 {
		f.fail[c.op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *fake) log() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fake) ops(id string) []string {
	var out []string
	for _, c := range f.log() {
		if id == "" || c.id == id {
			out = append(out, c.op)
		}
	}
	return out
}

func (f *fake) count(op string) int {
	n := 0
	for _, c := range f.log() {
		if c.op == op {
			n++
		}
	}
	return n
}

func idOf(m *azservicebus.Message) string {
	s, _ := m.ApplicationProperties[propID].(string)
	return s
}

// put makes m ready, as Service Bus would once it is enqueued.
func (f *fake) put(m *azservicebus.ReceivedMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putLocked(m)
}

func (f *fake) putLocked(m *azservicebus.ReceivedMessage) {
	if m.SequenceNumber == nil {
		f.seq++
		seq := f.seq
		m.SequenceNumber = &seq
	}
	f.ready = append(f.ready, m)
	close(f.wake)
	f.wake = make(chan struct{})
}

func received(m *azservicebus.Message) *azservicebus.ReceivedMessage {
	return &azservicebus.ReceivedMessage{MessageID: *m.MessageID, Body: m.Body, ApplicationProperties: m.ApplicationProperties}
}

func (f *fake) Send(ctx context.Context, msgs []*azservicebus.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		if err := f.record(call{op: "send", id: idOf(m), messageID: *m.MessageID, attempts: m.ApplicationProperties[propAttempts]}); err != nil {
			return err
		}
		f.putLocked(received(m))
	}
	return nil
}

// Schedule records the scheduled messages; they are not made ready (the
// tests that need them ready put them).
func (f *fake) Schedule(ctx context.Context, msgs []*azservicebus.Message, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		if err := f.record(call{op: "schedule", id: idOf(m), messageID: *m.MessageID, attempts: m.ApplicationProperties[propAttempts], at: at}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fake) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.record(call{op: "close"})
}

func (f *fake) Receive(ctx context.Context, max int) ([]*azservicebus.ReceivedMessage, error) {
	f.mu.Lock()
	f.receiving++
	if f.receiving > 1 {
		f.overlap = true
	}
	defer func() {
		f.mu.Lock()
		f.receiving--
		f.mu.Unlock()
	}()
	for len(f.ready) == 0 {
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		}
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	n := min(max, len(f.ready))
	out := append([]*azservicebus.ReceivedMessage(nil), f.ready[:n]...)
	f.ready = f.ready[n:]
	for _, m := range out {
		m.DeliveryCount++
		until := time.Now().Add(f.lock)
		m.LockedUntil = &until
		id, _ := m.ApplicationProperties[propID].(string)
		if err := f.record(call{op: "receive", id: id, messageID: m.MessageID}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *fake) settle(op string, m *azservicebus.ReceivedMessage, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, _ := m.ApplicationProperties[propID].(string)
	if err := f.record(call{op: op, id: id, messageID: m.MessageID, reason: reason}); err != nil {
		return err
	}
	if op == "abandon" {
		f.putLocked(m)
	}
	return nil
}

func (f *fake) Complete(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	return f.settle("complete", m, "")
}

func (f *fake) Abandon(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	return f.settle("abandon", m, "")
}

func (f *fake) DeadLetter(ctx context.Context, m *azservicebus.ReceivedMessage, reason string) error {
	return f.settle("dead-letter", m, reason)
}

func (f *fake) Renew(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, _ := m.ApplicationProperties[propID].(string)
	if err := f.record(call{op: "renew", id: id, messageID: m.MessageID, lockedTil: *m.LockedUntil}); err != nil {
		return err
	}
	until := time.Now().Add(f.lock)
	m.LockedUntil = &until
	return nil
}

func (f *fake) Props(context.Context) (queueProps, error) {
	return queueProps{LockDuration: f.lock, RequiresDuplicateDetection: true}, nil
}

func (f *fake) Counts(context.Context) (counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts, f.record(call{op: "counts"})
}

// sbErr is an SDK error with code.
func sbErr(code azservicebus.Code) error {
	return fmt.Errorf("amqp: %w", &azservicebus.Error{Code: code})
}
