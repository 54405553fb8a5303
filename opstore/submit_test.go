package opstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/arrhq/arr/embedded"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// flakyQueue is a queue of another engine than the store (so Submit takes
// its two-step path) whose Enqueue fails while down is set, as a queue on
// an unreachable server does; otherwise it records what it was given.
type flakyQueue struct {
	qdriver.Queue
	down bool
	got  []qdriver.Message
}

func (q *flakyQueue) Enqueue(_ context.Context, msgs ...qdriver.Message) error {
	if q.down {
		return errors.New("queue unreachable")
	}
	q.got = append(q.got, msgs...)
	return nil
}

func newOp(key string) *operation.Operation {
	now := time.Now().UTC()
	return &operation.Operation{ID: "op-" + key + now.Format("150405.000000000"), Route: "echo", Status: operation.Pending,
		CreatedAt: now, UpdatedAt: now, IdempotencyKey: key}
}

// A submit whose operation was stored but whose message was not must not
// leave an operation pending for ever: with an idempotency key, the
// client's retry enqueues the held operation's message; without one (no
// retry can find it), the operation is failed as not-enqueued.
func TestSubmitWithoutMessage(t *testing.T) {
	ctx := context.Background()
	st, err := opstore.OpenStore(ctx, "embedded:"+filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fq := &flakyQueue{down: true}
	q := queue.New(fq)

	// With a key: the error leaves it pending; the retry repairs it.
	op := newOp("key-1")
	if _, _, err := st.Submit(ctx, op, nil, q, queue.Message{ID: op.ID, Body: []byte("echo")}); err == nil {
		t.Fatal("Submit with the queue down succeeded")
	}
	if got, err := st.Get(ctx, op.ID); err != nil || got.Status != operation.Pending {
		t.Fatalf("keyed operation after a failed enqueue: %+v %v, want pending", got, err)
	}
	fq.down = false
	retry := newOp("key-1")
	stored, created, err := st.Submit(ctx, retry, nil, q, queue.Message{ID: retry.ID, Body: []byte("echo")})
	if err != nil || created || stored.ID != op.ID {
		t.Fatalf("retry: %+v created=%v %v, want the first operation, not created", stored, created, err)
	}
	if len(fq.got) != 1 || fq.got[0].ID != op.ID || string(fq.got[0].Body) != "echo" {
		t.Fatalf("retry enqueued %+v, want the held operation's message", fq.got)
	}
	// A replay of a finished operation enqueues nothing.
	if _, err := st.Transition(ctx, op.ID, func(o *operation.Operation) error { o.Status = operation.Succeeded; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Submit(ctx, newOp("key-1"), nil, q, queue.Message{ID: "x"}); err != nil || len(fq.got) != 1 {
		t.Fatalf("replay of a finished operation: %v, enqueued %d messages, want still 1", err, len(fq.got))
	}

	// Without a key: failed, to be deleted by the janitor.
	fq.down = true
	lone := newOp("")
	if _, _, err := st.Submit(ctx, lone, nil, q, queue.Message{ID: lone.ID}); err == nil {
		t.Fatal("Submit with the queue down succeeded")
	}
	got, err := st.Get(ctx, lone.ID)
	if err != nil || got.Status != operation.Failed || got.Error == nil || got.Error.Type != opstore.ProblemNotEnqueued || got.ExpiresAt.IsZero() {
		t.Fatalf("keyless operation after a failed enqueue: %+v %v, want failed not-enqueued with an expiry", got, err)
	}
}
