package servicebus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// The Service Bus calls the queue makes, so that everything the driver
// decides (message mapping, lock renewal, settlement order, attempt
// counts, error classification, Stats) is tested over a recording fake.
// sbSender, sbReceiver and sbAdmin are the thin adapters over the SDK.

// sender sends to the queue.
type sender interface {
	// Send sends msgs now (in as few batches as fit).
	Send(ctx context.Context, msgs []*azservicebus.Message) error
	// Schedule sends msgs to be enqueued at at.
	Schedule(ctx context.Context, msgs []*azservicebus.Message, at time.Time) error
	Close(ctx context.Context) error
}

// receiver receives from the queue in peek-lock mode and settles what it
// received. Receive is never called concurrently (the SDK refuses it).
type receiver interface {
	Receive(ctx context.Context, max int) ([]*azservicebus.ReceivedMessage, error)
	Complete(ctx context.Context, m *azservicebus.ReceivedMessage) error
	Abandon(ctx context.Context, m *azservicebus.ReceivedMessage) error
	DeadLetter(ctx context.Context, m *azservicebus.ReceivedMessage, reason string) error
	// Renew renews m's lock (and updates m.LockedUntil).
	Renew(ctx context.Context, m *azservicebus.ReceivedMessage) error
	Close(ctx context.Context) error
}

// queueProps are the queue properties the driver reads when it opens.
type queueProps struct {
	LockDuration               time.Duration
	RequiresDuplicateDetection bool
	RequiresSession            bool
	MaxDeliveryCount           int32
}

// counts are a queue's runtime message counts.
type counts struct {
	Active, Scheduled, DeadLetter int64
}

// manager reads the queue's properties and counts (the management API).
type manager interface {
	Props(ctx context.Context) (queueProps, error)
	Counts(ctx context.Context) (counts, error)
}

// errQueueNotFound: the namespace has no such queue.
var errQueueNotFound = errors.New("no such queue")

// ---- adapters over the SDK ----

type sbSender struct{ s *azservicebus.Sender }

func (a sbSender) Send(ctx context.Context, msgs []*azservicebus.Message) error {
	for len(msgs) > 0 {
		b, err := a.s.NewMessageBatch(ctx, nil)
		if err != nil {
			return err
		}
		n := 0
		for _, m := range msgs {
			if err := b.AddMessage(m, nil); errors.Is(err, azservicebus.ErrMessageTooLarge) {
				break
			} else if err != nil {
				return err
			}
			n++
		}
		if n == 0 { // too large for a batch of its own: the service says why
			if err := a.s.SendMessage(ctx, msgs[0], nil); err != nil {
				return err
			}
			n = 1
		} else if err := a.s.SendMessageBatch(ctx, b, nil); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

func (a sbSender) Schedule(ctx context.Context, msgs []*azservicebus.Message, at time.Time) error {
	_, err := a.s.ScheduleMessages(ctx, msgs, at, nil)
	return err
}

func (a sbSender) Close(ctx context.Context) error { return a.s.Close(ctx) }

type sbReceiver struct{ r *azservicebus.Receiver }

func (a sbReceiver) Receive(ctx context.Context, max int) ([]*azservicebus.ReceivedMessage, error) {
	return a.r.ReceiveMessages(ctx, max, nil)
}

func (a sbReceiver) Complete(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	return a.r.CompleteMessage(ctx, m, nil)
}

func (a sbReceiver) Abandon(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	return a.r.AbandonMessage(ctx, m, nil)
}

func (a sbReceiver) DeadLetter(ctx context.Context, m *azservicebus.ReceivedMessage, reason string) error {
	return a.r.DeadLetterMessage(ctx, m, &azservicebus.DeadLetterOptions{Reason: &reason})
}

func (a sbReceiver) Renew(ctx context.Context, m *azservicebus.ReceivedMessage) error {
	return a.r.RenewMessageLock(ctx, m, nil)
}

func (a sbReceiver) Close(ctx context.Context) error { return a.r.Close(ctx) }

type sbAdmin struct {
	c     *admin.Client
	queue string
}

func (a sbAdmin) Props(ctx context.Context) (queueProps, error) {
	r, err := a.c.GetQueue(ctx, a.queue, nil)
	if err != nil {
		return queueProps{}, err
	}
	if r == nil {
		return queueProps{}, errQueueNotFound
	}
	p := queueProps{
		RequiresDuplicateDetection: r.RequiresDuplicateDetection != nil && *r.RequiresDuplicateDetection,
		RequiresSession:            r.RequiresSession != nil && *r.RequiresSession,
	}
	if r.MaxDeliveryCount != nil {
		p.MaxDeliveryCount = *r.MaxDeliveryCount
	}
	if r.LockDuration != nil {
		if p.LockDuration, err = parseISODuration(*r.LockDuration); err != nil {
			return queueProps{}, fmt.Errorf("the queue's lock duration: %w", err)
		}
	}
	return p, nil
}

func (a sbAdmin) Counts(ctx context.Context) (counts, error) {
	r, err := a.c.GetQueueRuntimeProperties(ctx, a.queue, nil)
	if err != nil {
		return counts{}, err
	}
	if r == nil {
		return counts{}, errQueueNotFound
	}
	return counts{
		Active:     int64(r.ActiveMessageCount),
		Scheduled:  int64(r.ScheduledMessageCount),
		DeadLetter: int64(r.DeadLetterMessageCount),
	}, nil
}

// parseISODuration parses the ISO 8601 durations Service Bus answers for
// a lock duration ("PT1M", "PT30S", "PT1M30.5S", "P1DT2H"): days, hours,
// minutes and (fractional) seconds; no years, months or weeks.
func parseISODuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not an ISO 8601 duration of days, hours, minutes and seconds", s)
	if len(s) < 3 || s[0] != 'P' {
		return 0, bad
	}
	var d time.Duration
	inTime := false
	num := ""
	for _, c := range s[1:] {
		switch {
		case c == 'T' && !inTime && num == "":
			inTime = true
		case (c >= '0' && c <= '9') || c == '.':
			num += string(c)
		default:
			if num == "" {
				return 0, bad
			}
			unit := map[rune]time.Duration{'D': 24 * time.Hour}
			if inTime {
				unit = map[rune]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}
			}
			u, ok := unit[c]
			if !ok {
				return 0, bad
			}
			v, err := time.ParseDuration(num + "s")
			if err != nil {
				return 0, bad
			}
			d += time.Duration(float64(u) * v.Seconds())
			num = ""
		}
	}
	if num != "" || d <= 0 {
		return 0, bad
	}
	return d, nil
}
