package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// ErrNoResult is returned by OpenResult for an operation that has not
// succeeded.
var ErrNoResult = errors.New("arr: the operation has no result")

// Submit accepts work for the named route (its handler) from Go, without HTTP: the
// operation, its request and its queue message are stored in one durable
// step, exactly as the api's submit stores them, and the pending operation
// is returned. When Submit returns nil the operation survives a crash and
// will reach a terminal state. req.Method defaults to POST.
//
// Submit does no validation and no queue bound: a Go caller is trusted.
func (s *Server) Submit(ctx context.Context, route string, req *operation.Request) (*operation.Operation, error) {
	if route == "" {
		return nil, errors.New("arr: Submit needs a route name")
	}
	if req == nil {
		req = &operation.Request{}
	}
	if req.Method == "" {
		req.Method = "POST"
	}
	now := time.Now().UTC()
	id := uuid.Must(uuid.NewV7()).String()
	op := &operation.Operation{ID: id, Route: route, Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	stored, _, err := s.store.Submit(ctx, op, req, s.queue, queue.Message{ID: id, Body: []byte(route)})
	if err != nil {
		return nil, fmt.Errorf("arr: submit: %w", err)
	}
	return stored, nil
}

// Get returns the operation with the given id, or an error wrapping
// opstore.ErrNotFound.
func (s *Server) Get(ctx context.Context, id string) (*operation.Operation, error) {
	return s.store.Get(ctx, id)
}

// Wait blocks until the operation is terminal (succeeded, failed or
// canceled) and returns it. It is woken by the store's change
// notifications, not by polling. It returns ctx's error if ctx ends first.
func (s *Server) Wait(ctx context.Context, id string) (*operation.Operation, error) {
	op, err := s.store.WaitFor(ctx, id, math.MaxInt64, func(op *operation.Operation) bool { return op.Status.Terminal() })
	if err == nil && !op.Status.Terminal() {
		err = ctx.Err() // only if the ~292-year bound ran out
	}
	return op, err
}

// OpenResult opens the result of a succeeded operation. The caller closes
// the reader.
func (s *Server) OpenResult(ctx context.Context, op *operation.Operation) (resultstore.Reader, error) {
	if op == nil || op.Status != operation.Succeeded || op.Result == nil {
		return nil, ErrNoResult
	}
	return s.results.Open(ctx, op.Result.Key)
}

// Gatherer is the server's Prometheus registry: what /metrics serves.
func (s *Server) Gatherer() prometheus.Gatherer { return s.reg }
