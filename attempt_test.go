package arr_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// lostReplyStore is the mem store whose Update can answer an error after
// it wrote (a reply lost when a store's node dies mid-write) or without
// writing, and whose Get can fail.
type lostReplyStore struct {
	opdriver.Store
	landThenFail atomic.Bool
	failUpdate   atomic.Bool
	failGet      atomic.Bool
}

var errLostReply = errors.New("context deadline exceeded")

func (s *lostReplyStore) Update(ctx context.Context, op *operation.Operation) error {
	switch {
	case s.failUpdate.Load():
		return errLostReply
	case s.landThenFail.Load():
		if err := s.Store.Update(ctx, op); err != nil {
			return err
		}
		return errLostReply
	}
	return s.Store.Update(ctx, op)
}

func (s *lostReplyStore) Get(ctx context.Context, id string) (*operation.Operation, error) {
	if s.failGet.Load() {
		return nil, errLostReply
	}
	return s.Store.Get(ctx, id)
}

// succeedWith submits an echo, runs one attempt, stores its result and
// arms the store with arm before recording the success.
func succeedWith(t *testing.T, arm func(*lostReplyStore)) (arr.Disposition, *operation.Result, *lostReplyStore, *arr.Client, *resultstore.Store) {
	t.Helper()
	eng := mem.New()
	t.Cleanup(func() { eng.Close() })
	st := &lostReplyStore{Store: eng.Store()}
	results := resultstore.New(eng.Results())
	c, err := arr.New(arr.Config{Store: opstore.New(st), Queue: queue.New(eng.Queue(mem.QueueOptions{})),
		Results: results, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op, _, err := c.Submit(ctx, echo("k"))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := c.StartAttempt(ctx, op.ID, true)
	if err != nil || a == nil {
		t.Fatalf("StartAttempt = %v, %v", a, err)
	}
	defer a.Close()
	res, err := a.StoreResult(ctx, &arr.Result{Body: []byte("done"), ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	arm(st)
	return a.Succeed(ctx, res), res, st, c, results
}

func resultExists(t *testing.T, results *resultstore.Store, key string) bool {
	t.Helper()
	r, err := results.Open(context.Background(), key)
	if errors.Is(err, resultstore.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Open(%s) = %v", key, err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "done" {
		t.Fatalf("result %s = %q", key, b)
	}
	return true
}

// A success whose write landed but answered an error (the chaos audit's
// lost operation: a NATS node killed mid-write) keeps its result: the
// operation is succeeded and its result readable, and the attempt is
// redelivered to find it so.
func TestSucceedKeepsTheResultWhenTheWriteLandedDespiteAnError(t *testing.T) {
	d, res, st, c, results := succeedWith(t, func(s *lostReplyStore) { s.landThenFail.Store(true) })
	if d.Settle != arr.Nak {
		t.Fatalf("Succeed = %+v, want a Nak (the write answered an error)", d)
	}
	st.landThenFail.Store(false)
	op, err := c.Get(context.Background(), strings.TrimSuffix(res.Key, ".1"))
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != operation.Succeeded || op.Result == nil || op.Result.Key != res.Key {
		t.Fatalf("operation = %s with result %+v, want succeeded with %s", op.Status, op.Result, res.Key)
	}
	if !resultExists(t, results, res.Key) {
		t.Fatal("the result of a recorded success was deleted")
	}
}

// A success whose write did not land deletes its result: no operation
// names it, and the redelivered attempt writes its own.
func TestSucceedDeletesTheResultWhenTheWriteFailed(t *testing.T) {
	d, res, _, _, results := succeedWith(t, func(s *lostReplyStore) { s.failUpdate.Store(true) })
	if d.Settle != arr.Nak {
		t.Fatalf("Succeed = %+v, want a Nak", d)
	}
	if resultExists(t, results, res.Key) {
		t.Fatal("the result of a success that was not recorded is still stored")
	}
}

// When the store cannot say whether the success landed, the result is
// kept: an unreferenced result costs bytes, a deleted one loses work.
func TestSucceedKeepsTheResultWhenItCannotTell(t *testing.T) {
	d, res, _, _, results := succeedWith(t, func(s *lostReplyStore) { s.failUpdate.Store(true); s.failGet.Store(true) })
	if d.Settle != arr.Nak {
		t.Fatalf("Succeed = %+v, want a Nak", d)
	}
	if !resultExists(t, results, res.Key) {
		t.Fatal("the result was deleted though the store could not say the success was not recorded")
	}
}
