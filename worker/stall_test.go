package worker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/worker"
)

// stallingSuccess is an operations store whose first write of a success
// stalls for stall and then answers context.DeadlineExceeded without
// landing: a NATS node killed under the write, its reply lost. Like the
// NATS driver, it serializes this process's transitions of a key, so a
// transition waits while another one of the same operation stalls.
type stallingSuccess struct {
	opdriver.Store
	stall   time.Duration
	mu      sync.Mutex
	stalled atomic.Bool
}

var errLostReply = errors.New("the write's reply was lost")

func (s *stallingSuccess) TransitionOp(ctx context.Context, id string, change func(*operation.Operation) error, lazy bool) (*operation.Operation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, err := s.Store.(opdriver.Transitioner).TransitionOp(ctx, id, func(o *operation.Operation) error {
		if err := change(o); err != nil {
			return err
		}
		if o.Status == operation.Succeeded && s.stalled.CompareAndSwap(false, true) {
			return errLostReply
		}
		return nil
	}, lazy)
	if errors.Is(err, errLostReply) {
		select {
		case <-time.After(s.stall):
		case <-ctx.Done():
		}
		return nil, context.DeadlineExceeded
	}
	return op, err
}

func (s *stallingSuccess) Sync(ctx context.Context) error {
	if y, ok := s.Store.(opdriver.Syncer); ok {
		return y.Sync(ctx)
	}
	return nil
}

// countingQueue counts the deliveries it hands out.
type countingQueue struct {
	qdriver.Queue
	delivered atomic.Int32
}

func (q *countingQueue) Receive(ctx context.Context, max int, lease time.Duration) ([]qdriver.Delivery, error) {
	ds, err := q.Queue.Receive(ctx, max, lease)
	q.delivered.Add(int32(len(ds)))
	return ds, err
}

// A write of an attempt's outcome that stalls for many leases (a store
// node killed under it) neither lets the operation's message be delivered
// again meanwhile nor turns the redeliveries into interrupted attempts:
// the worker keeps its lease until the delivery is settled, and a
// delivery of an operation this worker is still busy with is given back
// untouched. After the failed write, one more run succeeds. (The NATS
// chaos audit lost an operation so: each redelivery during a 30 s stalled
// write waited for the same write and then counted an interruption, ten
// in all, and the operation failed with "attempts exhausted".)
func TestStalledOutcomeWriteKeepsTheOperation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lostBeats bool
	}{
		// The lease is renewed through the stalled write: no redelivery.
		{"heartbeats", false},
		// The heartbeats are lost too (the worker cut off from the
		// queue's leader): the message is delivered again, to this same
		// worker, which gives it back until its write has answered.
		{"heartbeats lost", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			stalling := &stallingSuccess{Store: r.store.Driver(), stall: 2 * time.Second}
			r.store = opstore.New(stalling)
			counted := &countingQueue{Queue: r.queue.Driver()}
			r.queue = queue.New(counted)
			if tc.lostBeats {
				r.queue = queue.New(&partitioned{Queue: counted, settled: make(chan struct{})})
			}
			var runs atomic.Int32
			h := worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
				runs.Add(1)
				return &worker.Result{Body: tk.Request.Body}, nil
			})
			id := r.submit(t, "stalled")
			r.run(t, arr.Config{}, worker.Config{Handlers: map[string]worker.Handler{"r": h}, Lease: 300 * time.Millisecond})
			op := r.waitTerminal(t, id)
			if !stalling.stalled.Load() {
				t.Fatal("no success write stalled: the test tested nothing")
			}
			if op.Status != operation.Succeeded || op.Interruptions > 1 {
				t.Fatalf("operation %s after %d runs, %d interruptions, error %+v", op.Status, runs.Load(), op.Interruptions, op.Error)
			}
			if n := runs.Load(); n != 2 {
				t.Fatalf("the handler ran %d times, want 2 (the run whose success was lost, and one more)", n)
			}
			if n := counted.delivered.Load(); !tc.lostBeats && n != 2 {
				t.Fatalf("%d deliveries, want 2: the message was delivered again during the stalled write", n)
			}
		})
	}
}
