// Package enginetest opens engines by URL for the ports' conformance
// harnesses, as arr's configuration opens them.
package enginetest

import (
	"context"
	"testing"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
)

// Reopener opens engines by URL one at a time, for harnesses whose suite
// closes a port and opens it again: each Store or Queue closes the engine
// the previous call opened (and every port of it) and opens the URL
// afresh, so that it sees the data as a restarted process does; Atomic
// uses the engine the last call opened.
type Reopener struct {
	e *engine.Engine
}

func (r *Reopener) reopen(ctx context.Context, urlstr string) (*engine.Engine, error) {
	r.Close()
	e, err := engine.Open(ctx, urlstr)
	if err != nil {
		return nil, err
	}
	r.e = e
	return e, nil
}

// Store opens the engine urlstr names anew and returns its operations
// store's driver.
func (r *Reopener) Store(ctx context.Context, urlstr string) (opdriver.Store, error) {
	e, err := r.reopen(ctx, urlstr)
	if err != nil {
		return nil, err
	}
	st, err := e.Store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Driver(), nil
}

// Queue opens the engine urlstr names anew and returns its queue's driver.
func (r *Reopener) Queue(ctx context.Context, urlstr string) (qdriver.Queue, error) {
	e, err := r.reopen(ctx, urlstr)
	if err != nil {
		return nil, err
	}
	q, err := e.Queue(ctx)
	if err != nil {
		return nil, err
	}
	return q.Driver(), nil
}

// Atomic returns the one-step writes of the engine the last call opened
// and its queue's driver, or nils when the engine has none.
func (r *Reopener) Atomic(ctx context.Context) (engine.Atomic, qdriver.Queue, error) {
	a := r.e.Atomic()
	if a == nil {
		return nil, nil, nil
	}
	q, err := r.e.Queue(ctx)
	if err != nil {
		return nil, nil, err
	}
	return a, q.Driver(), nil
}

// Close closes the engine the last call opened.
func (r *Reopener) Close() {
	if r.e != nil {
		_ = r.e.Close()
		r.e = nil
	}
}

// Open opens the engine urlstr names for the rest of the test.
func Open(t testing.TB, urlstr string) *engine.Engine {
	t.Helper()
	e, err := engine.Open(context.Background(), urlstr)
	if err != nil {
		t.Fatalf("engine.Open(%q): %v", urlstr, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// Store opens the operations store of the engine urlstr names for the rest
// of the test.
func Store(t testing.TB, urlstr string) *opstore.Store {
	t.Helper()
	st, err := Open(t, urlstr).Store(context.Background())
	if err != nil {
		t.Fatalf("store of %q: %v", urlstr, err)
	}
	return st
}

// Queue opens the queue of the engine urlstr names for the rest of the
// test.
func Queue(t testing.TB, urlstr string) *queue.Queue {
	t.Helper()
	q, err := Open(t, urlstr).Queue(context.Background())
	if err != nil {
		t.Fatalf("queue of %q: %v", urlstr, err)
	}
	return q
}

// Results opens the result store of the engine urlstr names for the rest
// of the test.
func Results(t testing.TB, urlstr string) *resultstore.Store {
	t.Helper()
	rs, err := Open(t, urlstr).Results(context.Background())
	if err != nil {
		t.Fatalf("results of %q: %v", urlstr, err)
	}
	return rs
}
