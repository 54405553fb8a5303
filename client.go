package arr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one attempt of a handler.
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxAttempts is how many attempts of an operation may fail.
	DefaultMaxAttempts = 3
	// DefaultMaxInterruptions is how many attempts a dead worker or a lost
	// lease may cut short before the operation fails.
	DefaultMaxInterruptions = 10
	// DefaultMaxResultBytes bounds a result.
	DefaultMaxResultBytes = 64 << 20
	// DefaultRetention is how long a finished operation and its result
	// are kept.
	DefaultRetention = 24 * time.Hour
	// DefaultTombstone is how long a deleted operation's id answers 410.
	DefaultTombstone = 7 * 24 * time.Hour
	// DefaultResultURLTTL is the lifetime of a signed result URL (the
	// seed's).
	DefaultResultURLTTL = 10 * time.Minute
	// DefaultMaxQueue is the queue depth at which Submit refuses.
	DefaultMaxQueue = 1_000_000
	// DefaultWriteDeadline bounds the wait on a store write of a Submit,
	// Cancel or Retry.
	DefaultWriteDeadline = 5 * time.Second
)

// URLSigner signs URLs to results: whoever holds one may read that result
// until expiry, and nothing else. A URL may be relative (path and query)
// when this process serves it; the caller resolves it against its public
// base URL. contentType is the one the result was stored with, for
// signers whose URLs name it (package urlsign's *Signer).
type URLSigner interface {
	SignedURLTyped(ctx context.Context, key, contentType string, expiry time.Time) (string, error)
}

// Config configures a Client. Store, Queue and Results are required; every
// other field has a default, given in its comment.
type Config struct {
	Store   *opstore.Store
	Queue   *queue.Queue
	Results *resultstore.Store
	// Signer signs result URLs (package urlsign's *Signer over Results,
	// as the engine of the results hands it out). Default nil: ResultURL
	// answers ErrNoSigner.
	Signer URLSigner
	// Atomic, when not nil, writes an operation and its queue message in
	// one durable step: set it when Store and Queue are one engine's that
	// can (see package engine). Default nil: two writes, the operation
	// first.
	Atomic engine.Atomic
	// ResultsSyncedByStore says that a result written lazily to Results
	// becomes durable with the Store's next synced write (one engine holds
	// both in one log), so the worker need not wait for the result's own
	// sync before it records the success. Default false.
	ResultsSyncedByStore bool

	// Routes are the submit routes; their names are the operations'
	// routes. Default: SeedRoutes().
	Routes []Route

	// Timeout bounds one attempt. Default DefaultTimeout (10m).
	Timeout time.Duration
	// MaxAttempts is how many attempts of an operation may fail (a handler
	// error or a timeout) before it fails for good. Default
	// DefaultMaxAttempts (3).
	MaxAttempts int
	// MaxInterruptions is how many attempts of an operation may be cut
	// short by a worker that died or lost its lease before the operation
	// fails with urn:arr:problem:attempts-exhausted: a separate budget, so
	// that crashes of the process do not use up an innocent operation's
	// attempts, while an operation that kills its worker every time still
	// ends. Default DefaultMaxInterruptions (10).
	MaxInterruptions int
	// Backoff gives the delay before retry number attempt (1 after the
	// first failure). Default DefaultBackoff: 1s doubling per attempt, at
	// most 5m, with ±25% jitter.
	Backoff func(attempt int) time.Duration
	// MaxResultBytes bounds a result; a larger one fails the operation
	// permanently. Default DefaultMaxResultBytes (64 MiB): the embedded
	// result store holds a result in memory while it writes it (file:
	// results stream to disk and suit larger limits).
	MaxResultBytes int64
	// Retention is how long a finished (succeeded, failed or canceled)
	// operation and its result are kept. Default DefaultRetention (24h).
	Retention time.Duration
	// Tombstone is how long, after its deletion, an operation's status
	// answers 410 Gone rather than 404. Default DefaultTombstone (7 days).
	Tombstone time.Duration
	// ResultURLTTL is the lifetime of signed result URLs. Default
	// DefaultResultURLTTL (10m, the seed's).
	ResultURLTTL time.Duration
	// MaxQueue bounds the queue: at this many queued operations Submit
	// refuses with a *QueueFullError. Default DefaultMaxQueue (1,000,000).
	MaxQueue int64

	// Storage faults (issue 14): write deadline, free-space watermark.

	// WriteDeadline bounds how long a Submit, Cancel or Retry waits on its
	// store write: one that fails or outlives it answers a *StorageError
	// (StorageUnavailable), and while such a write is still stalled the
	// next ones answer so at once without writing. Default
	// DefaultWriteDeadline (5s).
	WriteDeadline time.Duration
	// StorageCheck, when not nil, is asked before a Submit or a Retry
	// writes anything: its error (a *StorageError, e.g. StorageFull from a
	// free-space watermark) refuses the call with nothing written. It is
	// called on every submit, so it must answer from memory. Default nil.
	StorageCheck func() error

	// Stored-bytes budgets (issue 14).

	// MaxStoredBytes bounds the bytes kept for operations not yet deleted
	// (requests with their stored headers, and results; see
	// Client.StoredBytes): a submit that would go over it gets a
	// *StorageError (StorageBudget) before anything is written. The count
	// is per process (see RunStoredBytes). Results are not refused: they
	// may take the count past the budget until the janitor frees room.
	// Default 0: no budget.
	MaxStoredBytes int64
	// MaxTenantStoredBytes is the same bound per tenant (Caller.Tenant; a
	// submit without a caller counts only toward MaxStoredBytes' total
	// and the empty tenant's share): over it, StorageTenantBudget.
	// Default 0: no budget.
	MaxTenantStoredBytes int64
	// StoredBytesRecount is how often RunStoredBytes counts the stored
	// bytes from the store again. Default DefaultStoredBytesRecount (10m).
	StoredBytesRecount time.Duration

	// Logger receives what goes wrong in the background. Default
	// slog.Default().
	Logger *slog.Logger

	// CallbackRequests says which targets a request may name with
	// X-Callback-Url, on every route that does not say otherwise
	// (Route.CallbackRequests). Default nil: none.
	CallbackRequests TargetPolicy
	// MaxCallbacks bounds the callbacks an operation keeps (delivered,
	// failed and pending; the oldest finished ones go first). Default
	// DefaultMaxCallbacks (32).
	MaxCallbacks int

	// Record bounds (issue 14): detail, upstream body, history bytes.

	// MaxDetailBytes bounds the detail of a problem an operation records
	// (and a progress message): a longer one is cut, ends in "…", and the
	// problem gets detailTruncated: true. Default DefaultMaxDetailBytes
	// (4 KiB).
	MaxDetailBytes int
	// MaxExtensionBytes bounds a recorded problem's extension members as
	// JSON (a forward handler's upstreamBody, say): past it the largest
	// are left out and named in omittedMembers. Default
	// DefaultMaxExtensionBytes (8 KiB).
	MaxExtensionBytes int
	// MaxHistoryBytes bounds an operation's attempt history as JSON: past
	// it the oldest entries after the first are dropped and counted in
	// historyDropped. Default DefaultMaxHistoryBytes (64 KiB).
	MaxHistoryBytes int
	// MaxResultHeaderBytes bounds the headers recorded with a result (a
	// forward handler's upstream response headers): the fields, in name
	// order, that fit are kept. Default DefaultMaxResultHeaderBytes
	// (16 KiB).
	MaxResultHeaderBytes int
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.Queue == nil || c.Results == nil {
		return errors.New("arr: Store, Queue and Results are required")
	}
	if c.Routes == nil {
		c.Routes = SeedRoutes()
	}
	if c.MaxCallbacks <= 0 {
		c.MaxCallbacks = DefaultMaxCallbacks
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxInterruptions <= 0 {
		c.MaxInterruptions = DefaultMaxInterruptions
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = DefaultMaxResultBytes
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Tombstone <= 0 {
		c.Tombstone = DefaultTombstone
	}
	if c.ResultURLTTL <= 0 {
		c.ResultURLTTL = DefaultResultURLTTL
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.StoredBytesRecount <= 0 {
		c.StoredBytesRecount = DefaultStoredBytesRecount
	}
	if c.WriteDeadline <= 0 {
		c.WriteDeadline = DefaultWriteDeadline
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, b := range []struct {
		field *int
		def   int
	}{{&c.MaxDetailBytes, DefaultMaxDetailBytes}, {&c.MaxExtensionBytes, DefaultMaxExtensionBytes},
		{&c.MaxHistoryBytes, DefaultMaxHistoryBytes}, {&c.MaxResultHeaderBytes, DefaultMaxResultHeaderBytes}} {
		if *b.field <= 0 {
			*b.field = b.def
		}
	}
	return nil
}

// DefaultBackoff is 1s doubling per attempt, capped at 5m, with ±25% jitter.
func DefaultBackoff(attempt int) time.Duration {
	return ExponentialBackoff(time.Second, 5*time.Minute)(attempt)
}

// ExponentialBackoff returns a backoff of first before the first retry,
// doubling with each further one up to limit, with ±25% jitter so that
// operations that failed together do not retry together.
func ExponentialBackoff(first, limit time.Duration) func(attempt int) time.Duration {
	if first <= 0 {
		first = time.Second
	}
	limit = max(limit, first)
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
	}
}

// Client is the core of arr: the one place where the life of an operation
// is decided. Submit, Get, List, Wait, Cancel and Retry are what callers
// do; StartAttempt and the Attempt's methods are what workers report; the
// janitor (RunJanitor) expires what is past its retention. The HTTP api
// and the worker pool are adapters over a Client, and a Go program may use
// one directly. A Client holds no resources of its own: closing the
// stores it was given is the caller's business.
type Client struct {
	cfg      Config
	atomic   engine.Atomic
	routes   []Route
	policies map[string]*policy
	depth    depthGauge
	runs     runTimes // per route, for PollAfter

	callbacks bool          // some route owes callbacks or takes requested ones
	wake      chan struct{} // see CallbackWake

	sweepMu     sync.Mutex
	sweepCursor string // where the next Sweep continues

	stored  storedBytes  // see storedbytes.go
	storage storageGuard // bounded writes and their health (storage.go)
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	routes, pols, err := resolveRoutes(cfg.Routes, &cfg)
	if err != nil {
		return nil, fmt.Errorf("arr: %w", err)
	}
	c := &Client{cfg: cfg, atomic: cfg.Atomic, routes: routes, policies: pols, wake: make(chan struct{}, 1)}
	for _, p := range pols {
		c.callbacks = c.callbacks || len(p.callbacks) > 0 || p.requests != nil
	}
	c.depth.read = func(ctx context.Context) (int64, error) {
		st, err := cfg.Queue.Stats(ctx)
		return st.Ready + st.Delayed + st.InFlight, err
	}
	return c, nil
}

// Routes returns the routes, their names filled in.
func (c *Client) Routes() []Route { return append([]Route(nil), c.routes...) }

// policy returns the settings of the named route (the Config's for a
// route it does not know).
func (c *Client) policy(route string) *policy {
	if p := c.policies[route]; p != nil {
		return p
	}
	return c.cfg.policyOf(nil)
}

// MaxResultBytes is the bound on a result.
func (c *Client) MaxResultBytes() int64 { return c.cfg.MaxResultBytes }

// Get returns the operation with the given id. An operation past its
// retention is gone (an error wrapping opstore.ErrGone), as if the janitor
// (which runs every so often) had already deleted it: its result URLs have
// expired with it. An unknown id is an error wrapping opstore.ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (*operation.Operation, error) {
	op, err := c.cfg.Store.Get(ctx, id)
	if err == nil && !visible(ctx, op) {
		return nil, fmt.Errorf("%w: %s", errHidden, id)
	}
	if err == nil && expired(op, time.Now()) {
		return nil, fmt.Errorf("%w: %s", opstore.ErrGone, id)
	}
	return op, err
}

// expired reports whether op is past its retention at now.
func expired(op *operation.Operation, now time.Time) bool {
	return !op.ExpiresAt.IsZero() && now.After(op.ExpiresAt)
}

// ListOptions selects and pages operations for List.
type ListOptions = opstore.ListOptions

// List returns operations in creation order that match opts, and the
// cursor of the next page ("" on the last). A scoped call lists only the
// caller's operations, whatever opts.Owner says; an unscoped one (an
// admin's) may filter by opts.Owner.
func (c *Client) List(ctx context.Context, opts ListOptions) ([]*operation.Operation, string, error) {
	if owner, scoped := scope(ctx); scoped {
		opts.Owner = owner
	}
	return c.cfg.Store.List(ctx, opts)
}

// Watch returns a channel that receives a value after every change of the
// operation id (coalesced), until stop is called. Subscribe first, then
// read: no change is missed between the read and the wait. A scoped call
// may watch only an operation of the caller's that exists: another's, or
// an unknown id, is an error wrapping opstore.ErrNotFound.
func (c *Client) Watch(ctx context.Context, id string) (changed <-chan struct{}, stop func(), err error) {
	changed, stop, err = c.cfg.Store.Watch(ctx, id)
	if _, scoped := scope(ctx); err != nil || !scoped {
		return changed, stop, err
	}
	op, err := c.cfg.Store.Get(ctx, id)
	if err == nil && !visible(ctx, op) {
		err = fmt.Errorf("%w: %s", errHidden, id)
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	return changed, stop, nil
}

// WaitFor reads the operation until done reports true for it, for at most
// d (0: one read), woken by the store's change notifications rather than
// by polling. It returns the last operation read: with a nil error when
// done held or d passed, with ctx's error when ctx ended first. A scoped
// call waits only for the caller's own operations: another's is an error
// wrapping opstore.ErrNotFound at once.
func (c *Client) WaitFor(ctx context.Context, id string, d time.Duration, done func(*operation.Operation) bool) (*operation.Operation, error) {
	if _, scoped := scope(ctx); !scoped {
		return c.cfg.Store.WaitFor(ctx, id, d, done)
	}
	op, err := c.cfg.Store.WaitFor(ctx, id, d, func(op *operation.Operation) bool {
		return !visible(ctx, op) || done(op)
	})
	if op != nil && !visible(ctx, op) {
		return nil, fmt.Errorf("%w: %s", errHidden, id)
	}
	return op, err
}

// Terminal reports whether op has finished: a done function for WaitFor.
func Terminal(op *operation.Operation) bool { return op.Status.Terminal() }

// Wait blocks until the operation is terminal (succeeded, failed or
// canceled) and returns it. It returns ctx's error if ctx ends first.
func (c *Client) Wait(ctx context.Context, id string) (*operation.Operation, error) {
	op, err := c.WaitFor(ctx, id, math.MaxInt64, Terminal)
	if err == nil && !op.Status.Terminal() {
		err = ctx.Err() // only if the ~292-year bound ran out
	}
	return op, err
}

// Receive takes up to max deliveries of operations from the queue, each
// leased for lease: what a worker runs (see StartAttempt).
func (c *Client) Receive(ctx context.Context, max int, lease time.Duration) ([]queue.Delivery, error) {
	return c.cfg.Queue.Receive(ctx, max, lease)
}

// QueueStats counts the queue's messages by state, read from the queue
// now (QueueDepth is the cheap estimate).
func (c *Client) QueueStats(ctx context.Context) (queue.Stats, error) { return c.cfg.Queue.Stats(ctx) }
