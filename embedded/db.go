package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/internal/watch"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Options configures a DB. The zero value is ready to use: every field
// documents its default.
type Options struct {
	// MaxDeliveries dead-letters a message that has been delivered this many
	// times without an Ack, instead of delivering it again (after an expired
	// lease or a Nak). Default 0: unlimited. The worker decides retries from
	// the operation's own Attempts, so the queue's limit is only a backstop
	// against messages that crash the process before the worker can record
	// an attempt. Negative values mean 0.
	MaxDeliveries int

	// DefaultLease is the lease of a Receive called with lease <= 0.
	// Default 30s.
	DefaultLease time.Duration

	// CacheSize is the size in bytes of Pebble's block cache for table
	// blocks. Pebble charges its memtables to the same cache, so Open sizes
	// the cache at CacheSize + 2×MemTableSize. Default 32 MiB.
	CacheSize int64

	// MemTableSize is the size in bytes of one Pebble memtable; Pebble keeps
	// one being written and usually at most one being flushed, so this
	// bounds the memory that buffers recent writes. Default 16 MiB.
	MemTableSize uint64

	// OpCacheBytes bounds the memory of the cache of recently written
	// operation records (the reads that follow a write skip Pebble): about
	// this many bytes, each record counted as its encoded size plus 512
	// bytes, and at most 8192 records; a record over a 64th of it is not
	// cached. Default DefaultOpCacheBytes (8 MiB).
	OpCacheBytes int64

	// Logger receives Pebble's errors, and its informational messages at
	// debug level. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultLease        = 30 * time.Second
	defaultCacheSize    = 32 << 20
	valueSeparationMin  = 512 // bytes; operation records are smaller
	defaultMemTableSize = 16 << 20
)

func (o Options) withDefaults() Options {
	if o.MaxDeliveries < 0 {
		o.MaxDeliveries = 0
	}
	if o.DefaultLease <= 0 {
		o.DefaultLease = defaultLease
	}
	if o.CacheSize <= 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.OpCacheBytes <= 0 {
		o.OpCacheBytes = DefaultOpCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ErrClosed is returned by the store's methods after Close. (The queue's
// methods return queue/driver.ErrClosed.)
var ErrClosed = errors.New("embedded: closed")

// nStripes is the number of striped locks that serialize read-check-write
// sequences on one operation id, idempotency key or message id.
const nStripes = 16384

// DB is one Pebble database in a directory, holding an operations store and
// a queue. It is safe for concurrent use.
//
// A DB is reference counted: Open holds one reference, released by Close,
// and every Store and Queue it hands out holds one, released by that
// handle's Close. The database closes when the last reference goes.
type DB struct {
	dir  string
	opts Options
	pdb  *pebble.DB

	locks [nStripes]sync.Mutex
	watch watch.Hub
	// opCeil and msgCeil bound the operation and message keys ever
	// created, to skip the existence reads of new UUIDv7 ids.
	opCeil, msgCeil ceiling
	// ops caches the latest records of recently written operations.
	ops opCache
	q   *queueState
	// health is what Pebble's events say of the storage (health.go).
	health *health
	// due is the floor of the callback outbox index's live keys, so that
	// DueCallbacks seeks past the deletions earlier attempts left rather
	// than stepping over them (see dueFloor).
	due dueFloor

	// results is the state of the result store: its key ceiling, chunk
	// generations and open readers.
	results resultsState

	refs      int           // guarded by registry.mu
	closing   chan struct{} // closed when the last reference goes
	gate      sync.RWMutex  // held shared by operations, exclusively by the final close
	closed    bool          // guarded by gate
	closeOnce sync.Once     // Open's reference
	closeErr  error
}

// registry holds the DBs open in this process by absolute directory, so that
// URL openers of one directory share one DB (Pebble locks its directory).
var registry struct {
	mu  sync.Mutex
	dbs map[string]*DB
}

// Open opens (creating if needed) the database in dir. A directory can be
// open only once per process: Open fails if this process has it open
// already, but engines opened from URLs naming the directory share the DB
// that Open returned.
func Open(dir string, opts Options) (*DB, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.dbs[abs] != nil {
		return nil, fmt.Errorf("embedded: %s is already open in this process", abs)
	}
	return openLocked(abs, opts)
}

// openLocked opens dir and registers it with one reference.
// registry.mu is held.
func openLocked(abs string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	// Memtables are charged to the block cache: without room for them,
	// nothing would be cached at all.
	cache := pebble.NewCache(opts.CacheSize + 2*int64(opts.MemTableSize))
	defer cache.Unref()
	h := &health{log: &sampler{}, stallLog: &sampler{}}
	po := &pebble.Options{
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		Logger:             pebbleLogger{l: opts.Logger, errs: &sampler{}},
		EventListener:      h.listener(opts.Logger),
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Request bodies and results go to blob files at flush, so that
	// compactions move references to them instead of rewriting the bytes.
	po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: valueSeparationMin,
			MaxBlobReferenceDepth: 10, RewriteMinimumAge: 5 * time.Minute, TargetGarbageRatio: 0.3}
	}
	// Bloom filters on every level: Create's existence checks are point
	// reads of keys that are usually absent.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	pdb, err := pebble.Open(abs, po)
	if err != nil {
		return nil, fmt.Errorf("embedded: opening %s: %w", abs, err)
	}
	db := &DB{dir: abs, opts: opts, pdb: pdb, health: h, closing: make(chan struct{}), refs: 1}
	if err := db.checkFormat(); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	// The operation ceiling covers the ids of tombstones too, so that a
	// Create above it needs no read of either.
	if err := firstErr(db.opCeil.load(pdb, pOp), db.opCeil.loadAlso(pdb, pGone, pOp), db.msgCeil.load(pdb, pMsg)); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	db.ops.maxBytes = opts.OpCacheBytes
	if err := db.openResults(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if db.q, err = newQueueState(db); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	if registry.dbs == nil {
		registry.dbs = map[string]*DB{}
	}
	registry.dbs[abs] = db
	return db, nil
}

func (db *DB) checkFormat() error {
	v, closer, err := db.pdb.Get(metaFormatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		if err := db.pdb.Set(metaFormatKey, []byte(strconv.Itoa(formatVersion)), pebble.Sync); err != nil {
			return fmt.Errorf("embedded: writing format version: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded: reading format version: %w", err)
	}
	defer closer.Close()
	if string(v) != strconv.Itoa(formatVersion) {
		return fmt.Errorf("embedded: %s has layout version %q; this build reads version %d", db.dir, v, formatVersion)
	}
	return nil
}

// Dir returns the absolute directory of the database.
func (db *DB) Dir() string { return db.dir }

// Close releases Open's reference; the database closes when the Stores and
// Queues handed out are closed too. Calling Close again does nothing.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { db.closeErr = db.release() })
	return db.closeErr
}

// acquire takes a reference for a new handle; it reports false when the DB
// is closed for good.
func (db *DB) acquire() bool {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if db.refs == 0 {
		return false
	}
	db.refs++
	return true
}

// release drops a reference and closes the database with the last one.
func (db *DB) release() error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if db.refs == 0 {
		return nil
	}
	db.refs--
	if db.refs > 0 {
		return nil
	}
	if registry.dbs[db.dir] == db {
		delete(registry.dbs, db.dir)
	}
	close(db.closing)
	db.gate.Lock()
	db.closed = true
	db.gate.Unlock()
	db.results.closeReaders()
	db.q.stopAlarm()
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("embedded: closing %s: %w", db.dir, err)
	}
	return nil
}

// begin admits one operation, or fails once the database is closed; end
// must follow. Operations never nest begin.
func (db *DB) begin(closedErr error) error {
	db.gate.RLock()
	if db.closed {
		db.gate.RUnlock()
		return closedErr
	}
	return nil
}

func (db *DB) end() { db.gate.RUnlock() }

// Store returns the DB's operations store, which also implements
// engine.Atomic (one-step writes with the DB's queue). It holds a reference
// to the DB until its Close.
func (db *DB) Store() opdriver.Store {
	s := &store{db: db}
	if !db.acquire() {
		s.closed.Store(true)
	}
	return s
}

// Queue returns the DB's queue. It holds a reference to the DB until its
// Close. All the Queues of one DB are the same queue.
func (db *DB) Queue() qdriver.Queue {
	h := &queueHandle{db: db, closed: make(chan struct{})}
	if !db.acquire() {
		h.once.Do(func() { close(h.closed) })
	}
	return h
}

// ---- striped locks ----

// stripe hashes s (FNV-1a) to a stripe.
func stripe(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h % nStripes
}

// lockStripes locks the stripes of keys in a global order and returns them
// for unlockStripes.
func (db *DB) lockStripes(keys ...string) []uint32 {
	idx := make([]uint32, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, stripe(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		db.locks[i].Lock()
	}
	return idx
}

func (db *DB) unlockStripes(idx []uint32) {
	for _, i := range idx {
		db.locks[i].Unlock()
	}
}

// ---- Pebble logging ----

// pebbleLogger logs Pebble's lines: its informational ones at debug
// level, its errors at most once a second (a flush failing on a full disk
// is retried at once, and would log as often), and its fatal errors before
// the process exits (see fatal).
type pebbleLogger struct {
	l    *slog.Logger
	errs *sampler
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.errs.Error(p.l, fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	fatal(p.l, fmt.Sprintf(format, args...))
}

// ---- URL openers ----

func init() { engine.Register("embedded", openEngine) }

// openEngine opens the engine embedded:DIR names: the DB in DIR, shared
// with every other URL of DIR in this process. The signer's query
// parameters (keyFile, prefix, maxURLLifetime) are taken out before the
// DB's are read.
func openEngine(ctx context.Context, u *url.URL) (engine.Driver, error) {
	q := u.Query()
	signer := url.Values{}
	for _, k := range signerParams {
		if q.Has(k) {
			signer[k] = q[k]
			q.Del(k)
		}
	}
	dbURL := *u
	dbURL.RawQuery = q.Encode()
	db, err := openURL(&dbURL)
	if err != nil {
		return nil, err
	}
	return &engineDriver{db: db, signer: signer, atom: db.Store().(*store)}, nil // owns openURL's reference
}

// engineDriver is the embedded engine: operations, queue and results in
// one Pebble database, whose WAL is one ordered log.
type engineDriver struct {
	db     *DB
	signer url.Values // the signer's URL parameters
	atom   *store     // the one-step writes
}

func (e *engineDriver) Caps() engine.Caps {
	return engine.Caps{AtomicSubmit: true, ResultsInLog: true}
}

func (e *engineDriver) OpenStore(context.Context) (opdriver.Store, error) { return e.db.Store(), nil }
func (e *engineDriver) OpenQueue(context.Context) (qdriver.Queue, error)  { return e.db.Queue(), nil }
func (e *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	if !e.db.acquire() {
		return nil, ErrClosed
	}
	return &Results{db: e.db}, nil // owns the reference
}
func (e *engineDriver) OpenSigner(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
	return openSigner(ctx, e.db, e.signer, results)
}
func (e *engineDriver) Atomic() engine.Atomic { return e.atom }

func (e *engineDriver) Close() error {
	return errors.Join(e.atom.Close(), e.db.release())
}

// openURL returns the DB a URL names with a reference for the caller,
// opening it or sharing the one this process has open. The query may set
// maxDeliveries, defaultLease (a Go duration), cacheSize and memTableSize
// (bytes). On a DB already open, maxDeliveries and defaultLease replace the
// current values; cacheSize and memTableSize must match how it was opened.
func openURL(u *url.URL) (*DB, error) {
	dir := urlmux.Path(u)
	if dir == "" {
		return nil, fmt.Errorf("embedded: URL %q names no directory (want embedded:./dir or embedded:///abs/dir)", u.Redacted())
	}
	var (
		opts                       Options
		setMax, setLease, setCache bool
		setMemTable                bool
	)
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "maxDeliveries":
			opts.MaxDeliveries, err = strconv.Atoi(v)
			if err == nil && opts.MaxDeliveries < 0 {
				err = errors.New("must not be negative")
			}
			setMax = true
		case "defaultLease":
			opts.DefaultLease, err = time.ParseDuration(v)
			if err == nil && opts.DefaultLease <= 0 {
				err = errors.New("must be positive")
			}
			setLease = true
		case "cacheSize":
			opts.CacheSize, err = strconv.ParseInt(v, 10, 64)
			if err == nil && opts.CacheSize <= 0 {
				err = errors.New("must be positive")
			}
			setCache = true
		case "memTableSize":
			opts.MemTableSize, err = strconv.ParseUint(v, 10, 64)
			if err == nil && opts.MemTableSize == 0 {
				err = errors.New("must be positive")
			}
			setMemTable = true
		default:
			return nil, fmt.Errorf("embedded: unknown URL parameter %q (known: maxDeliveries, defaultLease, cacheSize, memTableSize)", k)
		}
		if err != nil {
			return nil, fmt.Errorf("embedded: URL parameter %s=%q: %v", k, v, err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	db := registry.dbs[abs]
	if db == nil {
		return openLocked(abs, opts)
	}
	if setCache && opts.CacheSize != db.opts.CacheSize {
		return nil, fmt.Errorf("embedded: %s is already open with cacheSize=%d", abs, db.opts.CacheSize)
	}
	if setMemTable && opts.MemTableSize != db.opts.MemTableSize {
		return nil, fmt.Errorf("embedded: %s is already open with memTableSize=%d", abs, db.opts.MemTableSize)
	}
	if setMax {
		db.q.maxDeliveries.Store(int64(opts.MaxDeliveries))
	}
	if setLease {
		db.q.defaultLease.Store(int64(opts.DefaultLease))
	}
	db.refs++
	return db, nil
}
