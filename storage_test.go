package arr_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// stallStore is the mem store whose writes (Create, Update) block while
// stall is open, or fail while fail is set: a disk that stops taking
// writes, or fails them.
type stallStore struct {
	opdriver.Store
	stall  atomic.Pointer[chan struct{}] // while not nil, writes wait for it to close
	fail   atomic.Bool
	writes atomic.Int64
}

func (s *stallStore) gate() error {
	s.writes.Add(1)
	if ch := s.stall.Load(); ch != nil {
		<-*ch
	}
	if s.fail.Load() {
		return errors.New("no space left on device")
	}
	return nil
}

func (s *stallStore) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	if err := s.gate(); err != nil {
		return nil, false, err
	}
	return s.Store.Create(ctx, op, req)
}

func (s *stallStore) Update(ctx context.Context, op *operation.Operation) error {
	if err := s.gate(); err != nil {
		return err
	}
	return s.Store.Update(ctx, op)
}

// block makes writes wait until the returned function is called.
func (s *stallStore) block() (release func()) {
	ch := make(chan struct{})
	s.stall.Store(&ch)
	return func() { s.stall.Store(nil); close(ch) }
}

func newStallClient(t *testing.T, check func() error) (*arr.Client, *stallStore) {
	t.Helper()
	eng := mem.New()
	t.Cleanup(func() { eng.Close() })
	st := &stallStore{Store: eng.Store()}
	c, err := arr.New(arr.Config{Store: opstore.New(st), Queue: queue.New(eng.Queue(mem.QueueOptions{})),
		Results: resultstore.New(eng.Results()), WriteDeadline: 100 * time.Millisecond, StorageCheck: check,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

func storageReason(err error) string {
	var se *arr.StorageError
	if errors.As(err, &se) {
		return se.Reason
	}
	return ""
}

func echo(key string) arr.Submission {
	return arr.Submission{Route: "echo", IdempotencyKey: key, Request: &operation.Request{Path: "/v1/echo", Body: []byte("hi")}}
}

// A submit whose write stalls is answered StorageUnavailable at the
// deadline, not when the write returns; while it stays stalled, the next
// submits are answered at once without writing, and readiness fails. Once
// it returns, the store is healthy again, and the submit's write landed:
// its idempotency key finds it.
func TestStalledWriteAnswersAtTheDeadline(t *testing.T) {
	c, st := newStallClient(t, nil)
	ctx := context.Background()
	release := st.block()
	start := time.Now()
	_, _, err := c.Submit(ctx, echo("k1"))
	if storageReason(err) != arr.StorageUnavailable {
		t.Fatalf("stalled Submit = %v, want a StorageError %q", err, arr.StorageUnavailable)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stalled Submit answered after %s; the deadline is 100ms", d)
	}
	if storageReason(c.StorageErr()) != arr.StorageUnavailable {
		t.Fatalf("StorageErr = %v while a write is stalled", c.StorageErr())
	}
	writes := st.writes.Load()
	_, _, err = c.Submit(ctx, echo("k2"))
	if storageReason(err) != arr.StorageUnavailable {
		t.Fatalf("Submit while a write is stalled = %v", err)
	}
	if st.writes.Load() != writes {
		t.Fatal("a submit wrote while an earlier write was stalled")
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for c.StorageErr() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("StorageErr = %v after the stalled write returned", c.StorageErr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	op, created, err := c.Submit(ctx, echo("k1"))
	if err != nil || created {
		t.Fatalf("Submit again with the stalled submit's key = %v, created %v; want the operation the stalled write stored", err, created)
	}
	if op.Status != operation.Pending {
		t.Fatalf("the stalled submit's operation is %s", op.Status)
	}
	if c.StorageFaults() != 1 {
		t.Fatalf("StorageFaults = %d, want 1 (the late write)", c.StorageFaults())
	}
}

// A write that fails is StorageUnavailable, fails readiness until a write
// succeeds, and is counted; the errors of the operation's own state (a
// cancel of an unknown id) are not storage faults.
func TestFailedWriteAnswersUnavailable(t *testing.T) {
	c, st := newStallClient(t, nil)
	ctx := context.Background()
	op, _, err := c.Submit(ctx, echo(""))
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	if _, _, err := c.Submit(ctx, echo("")); storageReason(err) != arr.StorageUnavailable {
		t.Fatalf("failing Submit = %v", err)
	}
	if _, err := c.Cancel(ctx, op.ID); storageReason(err) != arr.StorageUnavailable {
		t.Fatalf("failing Cancel = %v", err)
	}
	if storageReason(c.StorageErr()) != arr.StorageUnavailable {
		t.Fatalf("StorageErr = %v after failed writes", c.StorageErr())
	}
	st.fail.Store(false)
	if _, err := c.Cancel(ctx, "0190a0a0-0000-7000-8000-000000000000"); !errors.Is(err, opstore.ErrNotFound) || storageReason(err) != "" {
		t.Fatalf("Cancel of an unknown id = %v, want ErrNotFound", err)
	}
	if c.StorageErr() == nil {
		t.Fatal("an unknown id's cancel counted as a successful write")
	}
	if _, err := c.Cancel(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if c.StorageErr() != nil {
		t.Fatalf("StorageErr = %v after a write succeeded", c.StorageErr())
	}
	if _, err := c.Cancel(ctx, op.ID); !errors.Is(err, arr.ErrNotCancelable) {
		t.Fatalf("Cancel of a canceled operation = %v, want ErrNotCancelable", err)
	}
	if c.StorageErr() != nil || c.StorageFaults() != 2 {
		t.Fatalf("StorageErr = %v, StorageFaults = %d; want nil, 2", c.StorageErr(), c.StorageFaults())
	}
}

// A StorageCheck's refusal (a full disk) answers a submit and a retry
// before anything is written.
func TestStorageCheckRefusesBeforeWriting(t *testing.T) {
	var full atomic.Bool
	c, st := newStallClient(t, func() error {
		if full.Load() {
			return &arr.StorageError{Reason: arr.StorageFull, RetryAfter: time.Minute}
		}
		return nil
	})
	ctx := context.Background()
	op, _, err := c.Submit(ctx, echo(""))
	if err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	writes := st.writes.Load()
	if _, _, err := c.Submit(ctx, echo("")); storageReason(err) != arr.StorageFull {
		t.Fatalf("Submit on a full disk = %v", err)
	}
	if _, err := c.Retry(ctx, op.ID); storageReason(err) != arr.StorageFull {
		t.Fatalf("Retry on a full disk = %v", err)
	}
	if st.writes.Load() != writes {
		t.Fatal("a refused call wrote")
	}
	full.Store(false)
	if _, _, err := c.Submit(ctx, echo("")); err != nil {
		t.Fatalf("Submit once there is room = %v", err)
	}
}
