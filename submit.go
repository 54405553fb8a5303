package arr

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/arrhq/arr/operation"
)

// Submission is a request for work on a route.
type Submission struct {
	// Route names the route whose handler runs the operation.
	Route string
	// Request is what the handler gets. Method defaults to POST.
	Request *operation.Request
	// IdempotencyKey, when not empty, makes the submission idempotent: a
	// second submission with the same key and the same request (route,
	// method, escaped path, raw query, media type and body: the IETF
	// idempotency-key draft's fingerprint) returns the first's operation;
	// with another request it is an ErrIdempotencyKeyReused.
	IdempotencyKey string
	// Meta, when not nil, gives the operation's properties from its id and
	// creation time (the seed's RequestGUID, RequestStatusURL…).
	Meta func(id string, createdAt time.Time) map[string]string
	// Seal, when not nil, is called with the new operation's id before
	// the request is stored, to encrypt in it what must not be stored in
	// clear, with the id as additional data (the HTTP api seals a route's
	// ForwardCredentials so; see Credentials). Its error fails the submit.
	Seal func(id string, req *operation.Request) error
	// CallbackURL, when not empty, is a target to call back when the
	// operation finishes (X-Callback-Url), besides the route's own
	// (Route.Callbacks). The route must let requests name it
	// (Route.CallbackRequests, Config.CallbackRequests): otherwise Submit
	// answers ErrCallbackNotAllowed, or ErrBadCallbackURL for a URL that
	// is not one (see ParseCallbackURL). It is part of the idempotency
	// fingerprint.
	CallbackURL string
}

// ErrIdempotencyKeyReused: a submission's idempotency key is held by an
// operation of another request.
var ErrIdempotencyKeyReused = errors.New("arr: the idempotency key was used for a different request")

// ErrRouteForbidden: the caller is not among the route's Callers.
var ErrRouteForbidden = errors.New("arr: the route does not take submissions from this caller")

// QueueFullError is Submit's error when the queue is at its bound
// (Config.MaxQueue).
type QueueFullError struct {
	Depth, Max int64
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("%d operations are queued, the limit is %d; retry later", e.Depth, e.Max)
}

// Submit stores a new pending operation and its queue message, and returns
// it with created == true; when Submit returns nil the operation survives
// a crash and will reach a terminal state. A submission whose idempotency
// key already names an operation of the same request returns that
// operation with created == false (and repairs its queue message if a
// crash lost it).
//
// Submit does no validation of the request: the HTTP api does that for
// its clients; a Go caller is trusted.
func (c *Client) Submit(ctx context.Context, s Submission) (op *operation.Operation, created bool, err error) {
	if s.Route == "" {
		return nil, false, errors.New("arr: Submit needs a route name")
	}
	if caller, ok := CallerFrom(ctx); ok {
		if err := caller.Valid(); err != nil {
			return nil, false, err
		}
		if !c.policy(s.Route).allows(caller) {
			return nil, false, ErrRouteForbidden
		}
	}
	if err := c.checkCallback(s.Route, s.CallbackURL); err != nil {
		return nil, false, err
	}
	depth, err := c.depth.get(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("arr: queue depth: %w", err)
	}
	if depth >= c.cfg.MaxQueue {
		return nil, false, &QueueFullError{Depth: depth, Max: c.cfg.MaxQueue}
	}
	if err := c.checkStorage(); err != nil {
		return nil, false, err
	}
	req := s.Request
	if req == nil {
		req = &operation.Request{}
	}
	if req.Method == "" {
		req.Method = "POST"
	}
	now := time.Now().UTC()
	id := uuid.Must(uuid.NewV7()).String()
	op = &operation.Operation{ID: id, Route: s.Route, Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	if caller, ok := CallerFrom(ctx); ok {
		op.Owner, op.Tenant = caller.Principal, caller.Tenant
	}
	op.IdempotencyKey = ownerKey(op.Owner, s.IdempotencyKey)
	op.CallbackURL = s.CallbackURL
	if s.IdempotencyKey != "" {
		op.RequestHash = requestHash(s.Route, req, s.CallbackURL)
	}
	if c.callbacks {
		c.owe(op, "", now) // a route that calls back on every change: pending
	}
	if s.Meta != nil {
		op.Meta = s.Meta(id, now)
	}
	if s.Seal != nil {
		if err := s.Seal(id, req); err != nil {
			return nil, false, err
		}
	}
	op.RequestBytes = RequestBytes(req)
	budgeted := c.budgeted() // without a budget the count is not kept
	if budgeted {
		if err := c.stored.reserve(op.ID, op.Tenant, op.RequestBytes, c.cfg.MaxStoredBytes, c.cfg.MaxTenantStoredBytes); err != nil {
			return nil, false, err
		}
	}
	// The write's results are read only once it returned in time: one
	// that outlives the deadline writes to its own variables.
	type written struct {
		op  *operation.Operation
		new bool
	}
	var w written
	newOp := op // op is a result: a late write must not read it
	err = c.boundedWrite(ctx, "submit", func() error {
		var res written
		var err error
		res.op, res.new, err = c.store(ctx, newOp, req)
		w = res
		return err
	}, submitFault)
	if budgeted {
		c.stored.settle(newOp.ID)
	}
	if budgeted && (err != nil || !w.new) {
		// Not stored (a write that outlived its deadline and lands
		// later is counted at the next recount), or stored before.
		c.stored.add(newOp.ID, newOp.Tenant, -newOp.RequestBytes)
	}
	if err != nil {
		return nil, false, err
	}
	stored := w.op
	if !w.new {
		if stored.RequestHash != newOp.RequestHash || stored.Route != newOp.Route {
			return nil, false, ErrIdempotencyKeyReused
		}
		return stored, false, nil
	}
	c.depth.enqueued()
	c.kick(stored)
	return stored, true, nil
}

// QueueDepth estimates the number of queued operations (ready, delayed and
// running): read from the queue at most every 250ms, plus this process's
// submits since.
func (c *Client) QueueDepth(ctx context.Context) (int64, error) { return c.depth.get(ctx) }

// requestHash is what makes two requests "the same" for an idempotency key
// (the IETF draft's fingerprint): the route, the method, the escaped path,
// the raw query, the media type and the body. Each part is
// length-prefixed, so that no two different requests hash the same parts.
func requestHash(route string, req *operation.Request, callbackURL string) string {
	h := sha256.New()
	if callbackURL != "" {
		// Only when there is one: the fingerprints of requests without
		// one are what they were before callbacks.
		h.Write([]byte("callback\x00"))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(callbackURL))))
		h.Write([]byte(callbackURL))
	}
	for _, part := range []string{route, req.Method, (&url.URL{Path: req.Path}).EscapedPath(), req.RawQuery,
		req.Header.Get("Content-Type")} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		h.Write([]byte(part))
	}
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(req.Body))))
	h.Write(req.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// store writes op, req and op's queue message so that the operation is
// never durable without its message: in one write when the engine can,
// else the operation first and then the message (a message whose
// operation is missing is acked and dropped by workers). When an
// idempotency key was already held, the atomic path enqueues nothing; the
// two-step path enqueues the held operation's message again if it is still
// pending (a no-op when it is queued), so that retrying a submit that
// failed between its two writes, with the same key, repairs it.
func (c *Client) store(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	msg := Message{ID: op.ID, Route: op.Route}
	if c.atomic != nil {
		return c.atomic.SubmitAtomic(ctx, op, req, msg.Encode())
	}
	st := c.cfg.Store
	stored, created, err := st.Create(ctx, op, req)
	if err != nil {
		return nil, false, err
	}
	// The stored ID may differ from op.ID: a driver may give a retried
	// submit the id its key was first claimed for (see natsjs).
	msg.ID = stored.ID
	if !created {
		// A replay of a submit whose first try may have stored the
		// operation and then failed before its message was enqueued.
		if stored.Status == operation.Pending {
			if err := c.cfg.Queue.Enqueue(ctx, msg.Encode()); err != nil {
				return nil, false, fmt.Errorf("arr: operation %s stored but not enqueued: %w", stored.ID, err)
			}
		}
		return stored, false, nil
	}
	if err := c.cfg.Queue.Enqueue(ctx, msg.Encode()); err != nil {
		if op.IdempotencyKey == "" {
			// No retry of this submit can find the operation again, so
			// it would stay pending for ever: fail it (best effort; if
			// the message did get through, a worker skips the failed
			// operation). With a key, a retry repairs it (above).
			c.abandon(context.WithoutCancel(ctx), stored.ID, err)
		}
		return nil, false, fmt.Errorf("arr: operation %s stored but not enqueued: %w", stored.ID, err)
	}
	return stored, true, nil
}

func (c *Client) abandon(ctx context.Context, id string, cause error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := time.Now().UTC()
	written, _ := c.cfg.Store.Transition(ctx, id, c.owing(func(op *operation.Operation) error {
		return abandon(op, cause, c.policy(op.Route), now)
	}))
	c.kick(written)
}
