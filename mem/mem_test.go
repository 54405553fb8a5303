package mem

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/queue/queuetest"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
)

var nameSeq atomic.Int64

// uniqueName returns an engine name no other test uses.
func uniqueName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, nameSeq.Add(1)) }

// isOpen reports whether the process holds an engine named name.
func isOpen(name string) bool {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return registry.engines[name] != nil
}

// expectReleased fails t if the engine named name is still held: every
// handle on it must have been closed.
func expectReleased(t *testing.T, name string) {
	t.Helper()
	if isOpen(name) {
		t.Errorf("engine %q is still held after every handle on it was closed", name)
	}
}

// ---- conformance ----

// storeHarness opens stores and queues by URL on one named engine, which
// it holds with Open so that the suite's close-and-reopen tests find their
// data; its Close checks that the suite's handles released the engine.
type storeHarness struct {
	t    *testing.T
	name string
	keep *Engine
}

func (h *storeHarness) OpenStore(ctx context.Context) (opdriver.Store, error) {
	s, err := opstore.OpenStore(ctx, "mem:"+h.name)
	if err != nil {
		return nil, err
	}
	return s.Driver(), nil
}

func (h *storeHarness) OpenQueue(ctx context.Context) (qdriver.Queue, error) {
	q, err := queue.OpenQueue(ctx, "mem:"+h.name)
	if err != nil {
		return nil, err
	}
	return q.Driver(), nil
}

func (h *storeHarness) Close() {
	h.keep.Close()
	expectReleased(h.t, h.name)
}

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
		name := uniqueName("opstore")
		return &storeHarness{t: t, name: name, keep: Open(name)}, nil
	})
}

type queueHarness struct {
	t    *testing.T
	name string
	keep *Engine
}

func (h *queueHarness) OpenQueue(ctx context.Context, maxDeliveries int) (qdriver.Queue, error) {
	q, err := queue.OpenQueue(ctx, fmt.Sprintf("mem:%s?maxDeliveries=%d", h.name, maxDeliveries))
	if err != nil {
		return nil, err
	}
	return q.Driver(), nil
}

func (h *queueHarness) Close() {
	h.keep.Close()
	expectReleased(h.t, h.name)
}

func TestQueueConformance(t *testing.T) {
	t.Parallel()
	queuetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (queuetest.Harness, error) {
		name := uniqueName("queue")
		return &queueHarness{t: t, name: name, keep: Open(name)}, nil
	})
}

func TestResultsConformance(t *testing.T) {
	t.Parallel()
	name := uniqueName("results") // one engine for every subtest, as a shared bucket
	resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
		Open: func(t *testing.T) rdriver.Store {
			st, err := resultstore.OpenStore(context.Background(), "mem:"+name)
			if err != nil {
				t.Fatal(err)
			}
			return st.Driver()
		},
	})
	expectReleased(t, name)
}
