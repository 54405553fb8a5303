package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/arrhq/arr/engine"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// ErrClosed is returned by the store's methods after Close, and by Open's
// DB after its last reference is released. (The queue's methods return
// queue/driver.ErrClosed.)
var ErrClosed = errors.New("postgres: closed")

// Defaults of the URL parameters.
const (
	DefaultSchema       = "arr"
	DefaultLease        = 30 * time.Second
	DefaultPollInterval = 5 * time.Second
)

// arrParams are the URL query parameters arr reads itself and removes
// before the URL goes to pgx.
var arrParams = []string{"schema", "maxDeliveries", "defaultLease", "pollInterval", "auth"}

// config is a parsed URL.
type config struct {
	connString    string // the URL without arr's parameters, for pgxpool
	key           string // registry key: the canonical connString and the schema
	schema        string
	maxDeliveries int
	defaultLease  time.Duration
	pollInterval  time.Duration
	auth          string // a RegisterAuth name, or ""
}

// parseURL splits u into pgx's connection string and arr's parameters.
func parseURL(u *url.URL) (config, error) {
	c := config{schema: DefaultSchema, defaultLease: DefaultLease, pollInterval: DefaultPollInterval}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return c, fmt.Errorf("postgres: URL scheme %q, want postgres or postgresql", u.Scheme)
	}
	q := u.Query()
	for _, k := range arrParams {
		vs, ok := q[k]
		if !ok {
			continue
		}
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "schema":
			if v == "" {
				err = errors.New("must not be empty")
			} else if len(v) > 63 {
				err = errors.New("longer than PostgreSQL's 63-byte identifiers")
			}
			c.schema = v
		case "maxDeliveries":
			c.maxDeliveries, err = strconv.Atoi(v)
			if err == nil && c.maxDeliveries < 0 {
				err = errors.New("must not be negative")
			}
		case "defaultLease":
			c.defaultLease, err = time.ParseDuration(v)
			if err == nil && c.defaultLease <= 0 {
				err = errors.New("must be positive")
			}
		case "pollInterval":
			c.pollInterval, err = time.ParseDuration(v)
			if err == nil && c.pollInterval <= 0 {
				err = errors.New("must be positive")
			}
		case "auth":
			if v == "" {
				err = errors.New("must not be empty")
			}
			c.auth = v
		}
		if err != nil {
			return c, fmt.Errorf("postgres: URL parameter %s=%q: %v", k, v, err)
		}
		q.Del(k)
	}
	pu := *u
	pu.Scheme = "postgres"
	pu.RawQuery = q.Encode() // sorted: equal parameter sets give equal keys
	pu.Fragment, pu.RawFragment = "", ""
	c.connString = pu.String()
	c.key = c.connString + "\x00" + c.schema + "\x00" + c.auth
	return c, nil
}

// DB is a connection pool to one schema of a PostgreSQL database, holding
// an operations store (Store) and a queue (Queue). It is safe for
// concurrent use.
//
// A DB is reference counted: Open holds one reference, released by Close,
// and every Store and Queue it hands out holds one, released by that
// handle's Close. The pool and the listening connection close when the
// last reference goes.
type DB struct {
	cfg     config
	pool    *pgxpool.Pool
	ident   string // the schema as a quoted identifier
	engine  string // host, port, database and schema: what SubmitAtomic compares
	opsChan string // NOTIFY channel of operation changes (payload: the id)
	qChan   string // NOTIFY channel of queue wake-ups
	sql     queries

	refs       int  // guarded by registry.mu for registered DBs, by mu otherwise
	registered bool // in registry
	mu         sync.Mutex
	closed     bool

	lis listener

	password PasswordFunc // auth=…'s, or nil: the listening connection's password
}

// registry holds the DBs opened by URL in this process, so that a store and
// a queue opened on the same URL share one pool and one listener.
var registry struct {
	mu  sync.Mutex
	dbs map[string]*DB
}

// Open connects to the database urlstr names (a postgres:// or
// postgresql:// URL; see the package documentation for its parameters),
// applies arr's migrations to the schema, and returns a DB with its own
// pool, not shared with URL openers. Close releases it.
func Open(ctx context.Context, urlstr string) (*DB, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad URL: %w", err)
	}
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg)
}

func open(ctx context.Context, cfg config) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	warnSSLMode(cfg.connString, pcfg)
	var password PasswordFunc
	if cfg.auth != "" {
		if password, err = openAuth(ctx, cfg.auth); err != nil {
			return nil, err
		}
		pcfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			p, err := password(ctx)
			if err != nil {
				return fmt.Errorf("postgres: auth=%s: %w", cfg.auth, err)
			}
			cc.Password = p
			return nil
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{
		cfg:      cfg,
		pool:     pool,
		ident:    pgx.Identifier{cfg.schema}.Sanitize(),
		engine:   fmt.Sprintf("%s:%d/%s\x00%s", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database, cfg.schema),
		opsChan:  channelName(cfg.schema, "ops"),
		qChan:    channelName(cfg.schema, "queue"),
		refs:     1,
		password: password,
	}
	db.sql = makeQueries(db.ident)
	db.lis.init(db)
	if err := migrate(ctx, pool, cfg.schema); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// channelName is the NOTIFY channel of kind for schema: readable when it
// fits PostgreSQL's 63-byte identifiers, a digest of the schema otherwise.
func channelName(schema, kind string) string {
	if c := "arr." + schema + "." + kind; len(c) <= 63 {
		return c
	}
	h := sha256.Sum256([]byte(schema))
	return "arr." + hex.EncodeToString(h[:12]) + "." + kind
}

// openURL returns the DB a URL names with a reference for the caller,
// sharing the one this process opened on the same connection string and
// schema.
func openURL(ctx context.Context, u *url.URL) (*DB, config, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, cfg, err
	}
	registry.mu.Lock()
	if db := registry.dbs[cfg.key]; db != nil {
		db.refs++
		registry.mu.Unlock()
		return db, cfg, nil
	}
	registry.mu.Unlock()
	// Connect and migrate without the lock; another opener may win.
	db, err := open(ctx, cfg)
	if err != nil {
		return nil, cfg, err
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if other := registry.dbs[cfg.key]; other != nil {
		other.refs++
		go db.shutdown()
		return other, cfg, nil
	}
	if registry.dbs == nil {
		registry.dbs = map[string]*DB{}
	}
	db.registered = true
	registry.dbs[cfg.key] = db
	return db, cfg, nil
}

// Pool returns the DB's pool, for a program's own queries (and its own
// transactions, for Store.SubmitTx).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Schema returns the schema that holds arr's tables.
func (db *DB) Schema() string { return db.cfg.schema }

// Store returns the operations store of the DB; it holds a reference to the
// DB until its Close.
func (db *DB) Store() *Store {
	db.acquire()
	return &Store{db: db}
}

// Queue returns the queue of the DB, with the maxDeliveries, defaultLease
// and pollInterval of the URL the DB was opened with; it holds a reference
// to the DB until its Close.
func (db *DB) Queue() *Queue {
	db.acquire()
	return newQueue(db, db.cfg)
}

// Close releases Open's reference.
func (db *DB) Close() error {
	db.release()
	return nil
}

func (db *DB) acquire() {
	if db.registered {
		registry.mu.Lock()
		defer registry.mu.Unlock()
	} else {
		db.mu.Lock()
		defer db.mu.Unlock()
	}
	db.refs++
}

// release drops a reference and shuts the DB down with the last one.
func (db *DB) release() {
	last := false
	if db.registered {
		registry.mu.Lock()
		db.refs--
		if last = db.refs == 0; last {
			delete(registry.dbs, db.cfg.key)
		}
		registry.mu.Unlock()
	} else {
		db.mu.Lock()
		db.refs--
		last = db.refs == 0
		db.mu.Unlock()
	}
	if last {
		db.shutdown()
	}
}

// shutdown stops the listener and closes the pool.
func (db *DB) shutdown() {
	db.mu.Lock()
	db.closed = true
	db.mu.Unlock()
	db.lis.stop()
	db.pool.Close()
}

// isClosed reports whether the DB has shut down.
func (db *DB) isClosed() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.closed
}

// ---- the engine ----

func init() {
	for _, scheme := range []string{"postgres", "postgresql"} {
		engine.Register(scheme, func(ctx context.Context, u *url.URL) (engine.Driver, error) {
			db, cfg, err := openURL(ctx, u)
			if err != nil {
				return nil, err
			}
			return &engineDriver{db: db, cfg: cfg, atom: db.Store()}, nil // the driver owns openURL's reference
		})
	}
}

// engineDriver is the PostgreSQL engine of a URL: its operations store and
// its queue share a schema, so an operation and its message are written in
// one transaction.
type engineDriver struct {
	db   *DB
	cfg  config
	atom *Store // the one-step writes
}

func (e *engineDriver) Caps() engine.Caps { return engine.Caps{AtomicSubmit: true} }

func (e *engineDriver) OpenStore(context.Context) (opdriver.Store, error) { return e.db.Store(), nil }

// OpenQueue opens the queue with the maxDeliveries, defaultLease and
// pollInterval of the engine's URL.
func (e *engineDriver) OpenQueue(context.Context) (qdriver.Queue, error) {
	e.db.acquire()
	return newQueue(e.db, e.cfg), nil
}

func (e *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	return nil, engine.NoPort("postgres", "result store")
}

func (e *engineDriver) OpenSigner(context.Context, *resultstore.Store) (*urlsign.Signer, error) {
	return nil, engine.NoPort("postgres", "result store")
}

func (e *engineDriver) Atomic() engine.Atomic { return e.atom }

func (e *engineDriver) Close() error {
	err := e.atom.Close()
	e.db.release()
	return err
}
