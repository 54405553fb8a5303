// Package engine is where the ports meet the engines that implement them.
// An engine (the embedded Pebble database, PostgreSQL, NATS JetStream, a
// directory of files, an S3 bucket, memory) is opened once from a URL and
// hands out the ports it implements — operations store, queue, result
// store, URL signer — with what it can do (Caps, Atomic) decided when it is opened.
//
// Open is the one registry: URLs open through the opener their scheme's
// engine package registered (import the package for its side effect, e.g.
// _ "github.com/arrhq/arr/embedded"), and opening the same URL again, in
// the same process, returns the same Engine, reference-counted. So an
// operations store and a queue opened from one URL are one engine's, and
// the core can write an operation and its message in one step.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/queue"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Caps are what an engine can do across its ports, decided when it is
// opened.
type Caps struct {
	// AtomicSubmit: the engine holds an operations store and a queue and
	// writes an operation with its message, and a transition with a
	// message, in one durable write (Driver.Atomic is not nil).
	AtomicSubmit bool
	// ResultsInLog: the engine holds results and operations in one log, so
	// that a result written lazily (resultstore.Store.PutLazy) is durable
	// once a later synced write of an operation is.
	ResultsInLog bool
}

// Atomic is what an engine that holds both an operations store and a queue
// can do in one durable write. The core uses it when its operations store
// and queue are one engine's.
type Atomic interface {
	// SubmitAtomic is the store's Create plus the Enqueue of msg, in one
	// durable write, so that an operation is never stored without its
	// queue message. When op's idempotency key is held, nothing is written
	// and the holder is returned with created == false.
	SubmitAtomic(ctx context.Context, op *operation.Operation, req *operation.Request, msg queue.Message) (stored *operation.Operation, created bool, err error)
	// TransitionEnqueue is the store's Transition (change applied to the
	// current operation; an error from change writes nothing and is
	// returned with the changed copy) plus the Enqueue of msg(op) for the
	// changed operation, whose ID must be the operation's, in one durable
	// write. It sets UpdatedAt as Transition does.
	TransitionEnqueue(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) queue.Message) (*operation.Operation, error)
}

// ErrNoPort: the engine does not implement the port asked for.
var ErrNoPort = errors.New("engine: no such port")

// Driver is what an engine package implements. The Engine opens each port
// at most once, on first use, and closes it, then the Driver, when its
// last reference goes.
type Driver interface {
	// Caps says what the engine can do.
	Caps() Caps
	// OpenStore, OpenQueue and OpenResults open the engine's ports; an
	// engine without the port returns an error wrapping ErrNoPort.
	OpenStore(ctx context.Context) (opdriver.Store, error)
	OpenQueue(ctx context.Context) (qdriver.Queue, error)
	OpenResults(ctx context.Context) (rdriver.Store, error)
	// OpenSigner opens the signer of URLs to the engine's results (the
	// URL signing port, over results, the engine's own result store); an
	// engine without results returns an error wrapping ErrNoPort.
	OpenSigner(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error)
	// Atomic returns the engine's one-step writes, nil unless
	// Caps().AtomicSubmit.
	Atomic() Atomic
	// Close releases the engine, after its ports are closed.
	Close() error
}

// Opener opens the engine a URL names.
type Opener func(ctx context.Context, u *url.URL) (Driver, error)

// Engine is an opened engine: the ports it hands out and what it can do.
// It is safe for concurrent use.
type Engine struct {
	url string
	d   Driver

	mu      sync.Mutex
	refs    int // guarded by registry.mu
	store   *opstore.Store
	queue   *queue.Queue
	results *resultstore.Store
	signer  *urlsign.Signer
}

var registry struct {
	mu      sync.Mutex
	openers map[string]Opener
	open    map[string]*Engine
}

// Register makes Open open URLs of scheme with o. Engine packages call it
// from init; registering a scheme twice panics.
func Register(scheme string, o Opener) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.openers == nil {
		registry.openers = map[string]Opener{}
	}
	if _, dup := registry.openers[scheme]; dup {
		panic(fmt.Sprintf("engine: scheme %q registered twice", scheme))
	}
	registry.openers[scheme] = o
}

// Open returns the engine urlstr names, e.g. "embedded:./arr-data/db",
// opening it unless this process has it open: then it is the same
// *Engine, with one more reference. Close releases the reference.
func Open(ctx context.Context, urlstr string) (*Engine, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, fmt.Errorf("engine: bad URL %q: %w", redact(urlstr), err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if e := registry.open[urlstr]; e != nil {
		e.refs++
		return e, nil
	}
	o := registry.openers[u.Scheme]
	if o == nil {
		return nil, fmt.Errorf("engine: no engine for scheme %q in %q (this program links: %s)", u.Scheme, u.Redacted(), strings.Join(schemes(), ", "))
	}
	d, err := o(ctx, u)
	if err != nil {
		return nil, err
	}
	e := &Engine{url: urlstr, d: d, refs: 1}
	if registry.open == nil {
		registry.open = map[string]*Engine{}
	}
	registry.open[urlstr] = e
	return e, nil
}

func redact(urlstr string) string {
	if u, err := url.Parse(urlstr); err == nil {
		return u.Redacted()
	}
	return "…"
}

// schemes lists the registered schemes, sorted; registry.mu is held.
func schemes() []string {
	s := make([]string, 0, len(registry.openers))
	for k := range registry.openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Caps says what the engine can do.
func (e *Engine) Caps() Caps { return e.d.Caps() }

// HealthReporter is implemented by a Driver that learns of faults of its
// storage on its own (the embedded engine: Pebble's background errors and
// write stalls), for readiness.
type HealthReporter interface {
	// Health returns nil, or what keeps the engine from taking writes now.
	// It answers from memory.
	Health() error
}

// Health is the Driver's Health when it is a HealthReporter, else nil.
func (e *Engine) Health() error {
	if h, ok := e.d.(HealthReporter); ok {
		return h.Health()
	}
	return nil
}

// Atomic returns the engine's one-step writes of an operation and its
// message, or nil when it has none (see Caps.AtomicSubmit).
func (e *Engine) Atomic() Atomic {
	if !e.d.Caps().AtomicSubmit {
		return nil
	}
	return e.d.Atomic()
}

// Store returns the engine's operations store, opening it on first use.
// The engine owns it: close the engine, not the store.
func (e *Engine) Store(ctx context.Context) (*opstore.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		d, err := e.d.OpenStore(ctx)
		if err != nil {
			return nil, err
		}
		e.store = opstore.New(d)
	}
	return e.store, nil
}

// Queue returns the engine's queue, opening it on first use. The engine
// owns it.
func (e *Engine) Queue(ctx context.Context) (*queue.Queue, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queue == nil {
		d, err := e.d.OpenQueue(ctx)
		if err != nil {
			return nil, err
		}
		e.queue = queue.New(d)
	}
	return e.queue, nil
}

// Results returns the engine's result store, opening it on first use. The
// engine owns it.
func (e *Engine) Results(ctx context.Context) (*resultstore.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resultsLocked(ctx)
}

// Signer returns the signer of URLs to the engine's results, opening it
// (and the result store) on first use. The engine owns it.
func (e *Engine) Signer(ctx context.Context) (*urlsign.Signer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.signer == nil {
		rs, err := e.resultsLocked(ctx)
		if err != nil {
			return nil, err
		}
		if e.signer, err = e.d.OpenSigner(ctx, rs); err != nil {
			return nil, err
		}
	}
	return e.signer, nil
}

func (e *Engine) resultsLocked(ctx context.Context) (*resultstore.Store, error) {
	if e.results == nil {
		d, err := e.d.OpenResults(ctx)
		if err != nil {
			return nil, err
		}
		e.results = resultstore.New(d)
	}
	return e.results, nil
}

// Close releases a reference; the last one closes the ports the engine
// handed out (signer, results, queue, store, in that order) and the
// engine.
func (e *Engine) Close() error {
	registry.mu.Lock()
	if e.refs == 0 {
		registry.mu.Unlock()
		return nil
	}
	e.refs--
	last := e.refs == 0
	if last && registry.open[e.url] == e {
		delete(registry.open, e.url)
	}
	registry.mu.Unlock()
	if !last {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.signer != nil {
		errs = append(errs, e.signer.Close())
	}
	if e.results != nil {
		errs = append(errs, e.results.Close())
	}
	if e.queue != nil {
		errs = append(errs, e.queue.Close())
	}
	if e.store != nil {
		errs = append(errs, e.store.Close())
	}
	errs = append(errs, e.d.Close())
	return errors.Join(errs...)
}

// NoPort returns the error of an engine that lacks a port.
func NoPort(engine, port string) error {
	return fmt.Errorf("%w: the %s engine holds no %s", ErrNoPort, engine, port)
}

// ResultsOnly is the Driver of an engine that holds results and nothing
// else (a directory of files, a bucket): its result store opened by
// Results and its signer by Signer, each at most once.
type ResultsOnly struct {
	// Name names the engine in errors ("file", "s3").
	Name string
	// Results opens the result store.
	Results func(ctx context.Context) (rdriver.Store, error)
	// Signer opens the signer of URLs to results.
	Signer func(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error)
}

// Caps: a results-only engine has none of the cross-port facts.
func (r *ResultsOnly) Caps() Caps { return Caps{} }

// OpenStore: a results-only engine has no operations store.
func (r *ResultsOnly) OpenStore(context.Context) (opdriver.Store, error) {
	return nil, NoPort(r.Name, "operations store")
}

// OpenQueue: a results-only engine has no queue.
func (r *ResultsOnly) OpenQueue(context.Context) (qdriver.Queue, error) {
	return nil, NoPort(r.Name, "queue")
}

// OpenResults calls Results.
func (r *ResultsOnly) OpenResults(ctx context.Context) (rdriver.Store, error) { return r.Results(ctx) }

// OpenSigner calls Signer.
func (r *ResultsOnly) OpenSigner(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
	return r.Signer(ctx, results)
}

// Atomic: none.
func (r *ResultsOnly) Atomic() Atomic { return nil }

// Close: the ports hold what there is to release.
func (r *ResultsOnly) Close() error { return nil }
