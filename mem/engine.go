package mem

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	arrengine "github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/internal/watch"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Scheme is the URL scheme the package registers with package engine.
const Scheme = "mem"

// ErrClosed is returned by the operations store's and the result store's
// methods after Close. (The queue's methods return queue/driver.ErrClosed.)
var ErrClosed = errors.New("mem: closed")

// DefaultLease is the lease of a Receive called with lease <= 0 when
// QueueOptions.DefaultLease is not set.
const DefaultLease = 30 * time.Second

// engine is one in-memory engine: the operations, the queue and the
// results that every handle on it shares. One mutex guards all of it, so
// that a submit (an operation and its message) is one step.
type engine struct {
	name  string
	named bool // in the registry under name
	refs  int  // guarded by registry.mu
	// keys holds the keyring that signs and verifies the URLs of the
	// engine's results: made from crypto/rand on first use, it lives only
	// in memory, so URLs stay valid at most as long as the engine.
	keys *urlsign.MemKeys

	mu     sync.Mutex
	closed bool // the last reference went and the data below was dropped

	// Operations store.
	ops      map[string]*opRec
	ids      []string            // the ids of ops, ascending (List's order)
	idem     map[string]string   // idempotency key → id of its holder
	owned    map[string][]string // owner → the ids of its ops, ascending
	expiry   iheap[*opRec]       // operations with an ExpiresAt, by it
	due      iheap[*opRec]       // operations with a CallbackDueAt, by it
	tombs    map[string]*tomb    // by id
	tombHeap iheap[*tomb]        // by until
	watch    watch.Hub

	// Queue.
	msgs    map[string]*message // queued, leased and dead messages, by id
	pending iheap[*message]     // queued (ready or delayed), by ready time
	leased  iheap[*message]     // leased, by lease expiry
	dead    int64
	seq     uint64        // enqueue order, to keep FIFO among equal ready times
	qwake   chan struct{} // closed to wake the waiting Receives; nil when none waits

	// Results.
	blobs map[string]*blob
}

func newEngine(name string, named bool) *engine {
	eng := &engine{name: name, named: named, refs: 1, keys: urlsign.NewMemKeys()}
	eng.ops = map[string]*opRec{}
	eng.idem = map[string]string{}
	eng.owned = map[string][]string{}
	eng.expiry = iheap[*opRec]{
		less: func(a, b *opRec) bool { return a.op.ExpiresAt.Before(b.op.ExpiresAt) },
		idx:  func(r *opRec) *int { return &r.expIdx },
	}
	eng.due = iheap[*opRec]{
		less: func(a, b *opRec) bool { return a.op.CallbackDueAt.Before(b.op.CallbackDueAt) },
		idx:  func(r *opRec) *int { return &r.dueIdx },
	}
	eng.tombs = map[string]*tomb{}
	eng.tombHeap = iheap[*tomb]{
		less: func(a, b *tomb) bool { return a.until.Before(b.until) },
		idx:  func(t *tomb) *int { return &t.idx },
	}
	eng.msgs = map[string]*message{}
	eng.pending = iheap[*message]{
		less: func(a, b *message) bool {
			if !a.readyAt.Equal(b.readyAt) {
				return a.readyAt.Before(b.readyAt)
			}
			return a.seq < b.seq
		},
		idx: func(m *message) *int { return &m.idx },
	}
	eng.leased = iheap[*message]{
		less: func(a, b *message) bool { return a.expiry.Before(b.expiry) },
		idx:  func(m *message) *int { return &m.idx },
	}
	eng.blobs = map[string]*blob{}
	return eng
}

// registry holds the named engines of the process that have references.
var registry struct {
	mu      sync.Mutex
	engines map[string]*engine
}

// acquireNamed returns the engine named name with a new reference,
// making it if the process has none.
func acquireNamed(name string) *engine {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if eng := registry.engines[name]; eng != nil {
		eng.refs++
		return eng
	}
	eng := newEngine(name, true)
	if registry.engines == nil {
		registry.engines = map[string]*engine{}
	}
	registry.engines[name] = eng
	return eng
}

// acquire takes another reference; it reports false once the engine is
// gone for good.
func (eng *engine) acquire() bool {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if eng.refs == 0 {
		return false
	}
	eng.refs++
	return true
}

// release drops a reference; the last one drops the engine's data.
func (eng *engine) release() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if eng.refs == 0 {
		return
	}
	eng.refs--
	if eng.refs > 0 {
		return
	}
	if eng.named && registry.engines[eng.name] == eng {
		delete(registry.engines, eng.name)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	eng.closed = true
	eng.ops, eng.ids, eng.idem, eng.owned, eng.tombs = nil, nil, nil, nil, nil
	eng.expiry.reset()
	eng.due.reset()
	eng.tombHeap.reset()
	eng.msgs, eng.blobs = nil, nil
	eng.pending.reset()
	eng.leased.reset()
	eng.dead = 0
	eng.wakeReceivers()
}

// openEngines returns how many named engines the process holds (tests).
func openEngines() int {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return len(registry.engines)
}

// Engine is a reference to an in-memory engine: an operations store, a
// queue and a result store that share their data. Get one with Open (a
// named engine, shared with the URLs naming it) or New (a private one).
// The engine and all its data go when the last reference goes: the
// Engine's own (released by Close) and that of every handle it handed out
// (released by the handle's Close). It is safe for concurrent use.
type Engine struct {
	eng    *engine
	mu     sync.Mutex
	closed bool
}

// Open returns a reference to the engine named name, making an empty one
// if this process has none. The URLs "mem:NAME" open handles on the same
// engine, so that an Engine can hold it open between handles.
func Open(name string) *Engine { return &Engine{eng: acquireNamed(name)} }

// New returns a reference to a new private engine, which no URL reaches.
func New() *Engine { return &Engine{eng: newEngine("", false)} }

// Name returns the engine's name ("" for a private engine, and for the
// engine of the URL "mem:").
func (e *Engine) Name() string { return e.eng.name }

// ref takes a reference for a new handle; false once e is closed or the
// engine gone.
func (e *Engine) ref() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.closed && e.eng.acquire()
}

// Close releases the Engine's reference; the handles it handed out keep
// the engine until they are closed. Calling Close again does nothing.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		e.eng.release()
	}
	return nil
}

// Store returns a handle on the engine's operations store, which also
// implements opstore/driver.Transitioner, and engine.Atomic with the
// engine's queue. It holds a reference to the engine until its
// Close. After e.Close it is born closed.
func (e *Engine) Store() opdriver.Store { return newStore(e.eng, e.ref()) }

// QueueOptions configure one queue handle.
type QueueOptions struct {
	// MaxDeliveries dead-letters a message that has been delivered this
	// many times without an Ack, when this handle would deliver it again
	// (a Receive after its lease expired) or is Naked through one of its
	// deliveries. 0 (the default; negative values too) never does.
	MaxDeliveries int
	// DefaultLease is the lease of this handle's Receives called with
	// lease <= 0, and of InProgress called with lease <= 0. Default
	// DefaultLease (30s).
	DefaultLease time.Duration
}

func (o QueueOptions) withDefaults() QueueOptions {
	o.MaxDeliveries = max(o.MaxDeliveries, 0)
	if o.DefaultLease <= 0 {
		o.DefaultLease = DefaultLease
	}
	return o
}

// Queue returns a handle on the engine's queue. All the queue handles of
// one engine share one queue; the options are the handle's own. Closing a
// handle gives the leases of the deliveries it made back to the queue at
// once (the messages are delivered again, their attempt counts kept), and
// those deliveries can no longer be settled. It holds a reference to the
// engine until its Close. After e.Close it is born closed.
func (e *Engine) Queue(opts QueueOptions) qdriver.Queue {
	return newQueueHandle(e.eng, opts.withDefaults(), e.ref())
}

// ResultsOptions configure the signer of a result store handle.
type ResultsOptions struct {
	// Prefix is the URL path under which the signer's Handler serves its
	// signed URLs; it begins and ends with "/". Default "/blobs/".
	Prefix string
	// MaxURLLifetime bounds the expiry of signed URLs. Default 7 days.
	MaxURLLifetime time.Duration
}

// Results returns a handle on the engine's result store. It holds a
// reference to the engine until its Close. After e.Close it is born
// closed.
func (e *Engine) Results() rdriver.Store { return newResults(e.eng, e.ref()) }

// Signer returns a signer of URLs to results (a store of this engine's):
// arr's HMAC URLs under this engine's own MAC domain, with the engine's
// in-memory keyring, so that every signer of the engine verifies the
// others' URLs. It implements urlsign's Verifier: its handler serves them.
func (e *Engine) Signer(ctx context.Context, results *resultstore.Store, opts ResultsOptions) (*urlsign.Signer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h, err := urlsign.NewHMAC(ctx, e.eng.keys, urlsign.HMACOptions{Domain: macDomain, ExactQuery: true,
		Prefix: opts.Prefix, MaxURLLifetime: opts.MaxURLLifetime})
	if err != nil {
		return nil, err
	}
	return urlsign.New(h, results), nil
}

// macDomain separates this engine's URL signatures from other signers'.
const macDomain = "arr-mem-url-v1"

// ---- URL openers ----

func init() {
	arrengine.Register(Scheme, func(ctx context.Context, u *url.URL) (arrengine.Driver, error) {
		name, qo, ro, err := parseURL(u)
		if err != nil {
			return nil, err
		}
		if ro, err = ro.withDefaults(); err != nil {
			return nil, err
		}
		e := Open(name)
		return &engineDriver{e: e, qo: qo.withDefaults(), ro: ro, atom: e.Store().(*store)}, nil
	})
}

// engineDriver is the mem engine of a URL: all three ports, and one-step
// writes of an operation and its message.
type engineDriver struct {
	e    *Engine
	qo   QueueOptions
	ro   ResultsOptions
	atom *store
}

func (d *engineDriver) Caps() arrengine.Caps { return arrengine.Caps{AtomicSubmit: true} }
func (d *engineDriver) OpenStore(context.Context) (opdriver.Store, error) {
	return d.e.Store(), nil
}
func (d *engineDriver) OpenQueue(context.Context) (qdriver.Queue, error) { return d.e.Queue(d.qo), nil }
func (d *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	return d.e.Results(), nil
}
func (d *engineDriver) OpenSigner(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
	return d.e.Signer(ctx, results, d.ro)
}
func (d *engineDriver) Atomic() arrengine.Atomic { return d.atom }
func (d *engineDriver) Close() error {
	return errors.Join(d.atom.Close(), d.e.Close())
}

// parseURL returns the engine name of a mem: URL and the options of its
// query. Every opener accepts every option, so that one URL can name the
// engine for all three ports; each applies those of its port.
func parseURL(u *url.URL) (name string, qo QueueOptions, ro ResultsOptions, err error) {
	name = urlmux.Path(u)
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return "", qo, ro, fmt.Errorf("mem: URL parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		var perr error
		switch k {
		case "maxDeliveries":
			qo.MaxDeliveries, perr = strconv.Atoi(v)
			if perr == nil && qo.MaxDeliveries < 0 {
				perr = errors.New("must not be negative")
			}
		case "defaultLease":
			qo.DefaultLease, perr = time.ParseDuration(v)
			if perr == nil && qo.DefaultLease <= 0 {
				perr = errors.New("must be positive")
			}
		case "prefix":
			ro.Prefix = v
			perr = urlsign.ValidatePrefix(v)
		case "maxURLLifetime":
			ro.MaxURLLifetime, perr = time.ParseDuration(v)
			if perr == nil && ro.MaxURLLifetime <= 0 {
				perr = errors.New("must be positive")
			}
		default:
			return "", qo, ro, fmt.Errorf("mem: unknown URL parameter %q (known: maxDeliveries, defaultLease, prefix, maxURLLifetime)", k)
		}
		if perr != nil {
			return "", qo, ro, fmt.Errorf("mem: URL parameter %s=%q: %v", k, v, perr)
		}
	}
	return name, qo, ro, nil
}
