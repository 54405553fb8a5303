package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/worker"
)

// cancelOnRequestRead is an operations store that cancels an operation
// when its request is first read: a client's cancel landing between the
// worker's start transition and the handler's run.
type cancelOnRequestRead struct {
	opdriver.Store
	once sync.Once
}

func (s *cancelOnRequestRead) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	s.once.Do(func() {
		op, err := s.Store.Get(ctx, id)
		if err != nil {
			panic(err)
		}
		op.Status = operation.Canceled
		if err := s.Store.Update(ctx, op); err != nil {
			panic(err)
		}
	})
	return s.Store.GetRequest(ctx, id)
}

// A cancel that lands while an attempt starts (after its running state is
// written, before its handler runs) cancels the handler's context at once:
// the worker subscribes to the operation's changes before it reads
// anything, as the store's contract asks. (It used to subscribe after,
// and such a handler ran to its end.)
func TestCancelWhileStartingIsSeen(t *testing.T) {
	r := newRig(t)
	r.store = opstore.New(&cancelOnRequestRead{Store: r.store.Driver()})
	saw := make(chan bool, 1)
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		select {
		case <-ctx.Done():
			saw <- true
		case <-time.After(20 * time.Second):
			saw <- false
		}
		return nil, ctx.Err()
	})
	id := r.submit(t, "canceled-while-starting")
	r.run(t, arr.Config{}, worker.Config{Handlers: map[string]worker.Handler{"r": h}})
	if !<-saw {
		t.Fatal("the handler ran on after its operation was canceled")
	}
	if op := r.waitTerminal(t, id); op.Status != operation.Canceled {
		t.Fatalf("operation %s, want canceled", op.Status)
	}
}

// partitioned is a queue whose first deliveries lose their heartbeats (a
// worker cut off from the queue but not from the stores): InProgress
// answers nil and renews nothing, so the lease runs out and the message is
// delivered again while the first attempt still runs. settled is closed
// when a first delivery is settled.
type partitioned struct {
	qdriver.Queue
	settled chan struct{}
	once    sync.Once
}

func (q *partitioned) Receive(ctx context.Context, max int, lease time.Duration) ([]qdriver.Delivery, error) {
	ds, err := q.Queue.Receive(ctx, max, lease)
	for i, d := range ds {
		if d.Attempt() == 1 {
			ds[i] = &lostBeats{Delivery: d, q: q}
		}
	}
	return ds, err
}

type lostBeats struct {
	qdriver.Delivery
	q *partitioned
}

func (d *lostBeats) InProgress(context.Context, time.Duration) error { return nil }
func (d *lostBeats) Ack(ctx context.Context) error {
	defer d.q.once.Do(func() { close(d.q.settled) })
	return d.Delivery.Ack(ctx)
}
func (d *lostBeats) Nak(ctx context.Context, delay time.Duration) error {
	defer d.q.once.Do(func() { close(d.q.settled) })
	return d.Delivery.Nak(ctx, delay)
}

// An attempt that lost its lease but not its reach to the result store
// finishes after the attempt that took over (in another worker) has
// succeeded: its bytes do not replace the result that attempt recorded
// (result writes are fenced by attempt), and they are not left behind.
func TestSupersededAttemptDoesNotOverwriteTheResult(t *testing.T) {
	r := newRig(t)
	pq := &partitioned{Queue: r.queue.Driver(), settled: make(chan struct{})}
	r.queue = queue.New(pq)
	firstStarted, secondDone := make(chan struct{}), make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		if tk.Attempt == 1 {
			close(firstStarted)
			<-secondDone
			return &worker.Result{ContentType: "text/plain", Body: []byte("first")}, nil
		}
		return &worker.Result{ContentType: "text/plain", Body: []byte("second")}, nil
	})
	id := r.submit(t, "superseded")
	cfg := worker.Config{Handlers: map[string]worker.Handler{"r": h}, Lease: 300 * time.Millisecond, ShutdownGrace: time.Minute}
	// Worker A takes the first delivery and stops taking more (a worker
	// holds back a delivery of an operation it is still busy with): its
	// attempt runs on in its shutdown grace. Worker B gets the redelivery.
	cfg.Client = r.client(t, arr.Config{})
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	actx, stopA := context.WithCancel(context.Background())
	aDone := make(chan struct{})
	go func() { _ = a.Run(actx); close(aDone) }()
	t.Cleanup(func() { stopA(); <-aDone })
	<-firstStarted
	stopA()
	r.run(t, arr.Config{}, worker.Config{Handlers: cfg.Handlers, Lease: cfg.Lease})
	op := r.waitTerminal(t, id)
	if op.Status != operation.Succeeded || op.Attempts != 2 {
		t.Fatalf("operation %s after %d attempts, want succeeded after 2", op.Status, op.Attempts)
	}
	close(secondDone)
	select {
	case <-pq.settled:
	case <-time.After(20 * time.Second):
		t.Fatal("the first attempt never settled its delivery")
	}
	op, err = r.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.results.Open(context.Background(), op.Result.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rd)
	rd.Close()
	if string(b) != "second" {
		t.Fatalf("the recorded result reads %q, want the winning attempt's %q", b, "second")
	}
	for _, key := range []string{id + ".1", id} {
		if rd, err := r.results.Open(context.Background(), key); !errors.Is(err, resultstore.ErrNotFound) {
			if err == nil {
				rd.Close()
			}
			t.Fatalf("result key %s: %v, want not found (the losing attempt's bytes left behind)", key, err)
		}
	}
}
