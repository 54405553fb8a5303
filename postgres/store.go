package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/watch"
	"github.com/arrhq/arr/operation"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// Store is the operations store (opstore/driver.Store,
// driver.AtomicSubmitter, driver.LazyUpdater, driver.Syncer and
// driver.Outbox) on a DB.
// Every write is one statement or one transaction, and returns after its
// commit (with the server's synchronous_commit, on by default: after the
// WAL is flushed), except UpdateLazy's, which commits asynchronously.
//
// It does not implement driver.Transitioner: the change is Go code, so a
// transition needs the row at the client before its write, two round trips
// whether they are a Get and a version-checked Update (what
// opstore.Store.Transition does without a Transitioner) or a SELECT … FOR
// UPDATE and an UPDATE in one transaction, which would hold the row lock
// across a round trip and add BEGIN and COMMIT to no gain.
type Store struct {
	db        *DB
	closed    atomic.Bool
	closeOnce sync.Once

	watchMu  sync.Mutex
	watching map[*watch.Watcher]func() // the store's watches, ended by Close
}

var (
	_ opdriver.Store       = (*Store)(nil)
	_ engine.Atomic        = (*Store)(nil)
	_ opdriver.LazyUpdater = (*Store)(nil)
	_ opdriver.Syncer      = (*Store)(nil)
	_ opdriver.Outbox      = (*Store)(nil)
)

// Querier is what SubmitTx writes through: a pgx.Tx (or a *pgxpool.Pool,
// *pgx.Conn or *pgxpool.Conn, whose statement is then its own transaction).
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close releases the store's reference to its DB, and its watchers.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.watchMu.Lock()
		for _, unwatch := range s.watching {
			unwatch()
		}
		s.watching = nil
		s.watchMu.Unlock()
		s.db.release()
	})
	return nil
}

// DB returns the DB the store is on.
func (s *Store) DB() *DB { return s.db }

// ---- encoding ----

// encodeOp is the JSON of op without Version, IdempotencyKey and Owner,
// which live in their own columns.
func encodeOp(op *operation.Operation) ([]byte, error) {
	c := *op
	c.Version, c.IdempotencyKey, c.Owner = 0, "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("postgres: encoding operation %s: %w", op.ID, err)
	}
	return b, nil
}

// decodeOp decodes doc and sets the fields its columns hold (owner: nil
// for none).
func decodeOp(doc []byte, version int64, key *string, owner []byte) (*operation.Operation, error) {
	op := new(operation.Operation)
	if err := json.Unmarshal(doc, op); err != nil {
		return nil, fmt.Errorf("postgres: decoding operation: %w", err)
	}
	op.Version = version
	op.IdempotencyKey = ""
	if key != nil {
		op.IdempotencyKey = *key
	}
	op.Owner = string(owner)
	return op, nil
}

// ownerArg is an owner for the nullable bytea column: nil when empty.
func ownerArg(owner string) any {
	if owner == "" {
		return nil
	}
	return []byte(owner)
}

// tsArg is a time for a nullable timestamptz: nil when zero.
func tsArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// dueArg is CallbackDueAt for the nullable timestamptz callback_due: nil
// when zero, else rounded up to the microsecond (the column's precision;
// pgx truncates), so that a row the index finds at now (which pgx
// truncates) is never due after now.
func dueArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if c := t.Truncate(time.Microsecond); !c.Equal(t) {
		t = c.Add(time.Microsecond)
	}
	return t
}

func strArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func checkOp(op *operation.Operation) error {
	if op == nil || op.ID == "" {
		return errors.New("postgres: operation has no ID")
	}
	if !op.Status.Valid() {
		return fmt.Errorf("postgres: operation %s has invalid status %q", op.ID, op.Status)
	}
	return nil
}

// ---- writes ----

// Create: see opstore/driver.Store.Create.
func (s *Store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	return s.create(ctx, s.db.pool, op, req, nil)
}

// SubmitAtomic creates op and req and enqueues msg on the queue of the
// same schema in one transaction (one statement): see engine.Atomic.
func (s *Store) SubmitAtomic(ctx context.Context, op *operation.Operation, req *operation.Request, msg qdriver.Message) (*operation.Operation, bool, error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	if msg.ID == "" {
		return nil, false, errors.New("postgres: message has no ID")
	}
	return s.create(ctx, s.db.pool, op, req, &msg)
}

// TransitionEnqueue reads the operation, applies change, and writes it
// (conditionally on its version, retrying from a fresh read on a conflict)
// and enqueues msg(op) on the queue of the same schema in one
// transaction: see engine.Atomic.
func (s *Store) TransitionEnqueue(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) qdriver.Message) (*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	for {
		op, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		version, key, owner := op.Version, op.IdempotencyKey, op.Owner
		if err := change(op); err != nil {
			return op, err
		}
		op.ID, op.Version, op.IdempotencyKey, op.Owner = id, version, key, owner
		op.UpdatedAt = time.Now().UTC()
		m := msg(op)
		if m.ID != id {
			return nil, fmt.Errorf("postgres: message %q is not operation %s's", m.ID, id)
		}
		args, err := enqueueArgs([]qdriver.Message{m}, s.db.qChan)
		if err != nil {
			return nil, err
		}
		err = pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
			if err := s.updateOn(ctx, tx, op, s.db.sql.update); err != nil {
				return err
			}
			var n int64
			if err := tx.QueryRow(ctx, s.db.sql.enqueue, args).Scan(&n); err != nil {
				return fmt.Errorf("postgres: enqueuing: %w", err)
			}
			return nil
		})
		if errors.Is(err, opdriver.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return op, nil
	}
}

// SubmitTx writes op (with Version 1), req (nil: none) and the queue
// message msg inside the caller's transaction tx, so that they commit or
// roll back with the caller's own writes: a program records its own rows
// and the arr operation that works on them atomically. tx must be on the
// database of s (any connection to it: a pool of the program's own will
// do); the message goes to the queue in the schema of s, which a Queue
// opened on the same URL receives. The NOTIFYs that wake watchers and
// receivers are delivered when tx commits, and not at all when it rolls
// back.
//
// The results are Create's: when op.IdempotencyKey is held (by a committed
// operation, or one written earlier in tx) nothing is written and the
// holder is returned with created == false; an id that exists or has a
// tombstone is opstore/driver.ErrExists. Neither aborts tx: SubmitTx never
// makes a statement fail on a conflict. An error of the database itself
// (a lost connection, a serialization failure under REPEATABLE READ or
// SERIALIZABLE) leaves tx to be rolled back, as any failed statement does.
//
// When another transaction holds the same id or idempotency key without
// having committed yet, SubmitTx waits for it, as PostgreSQL's unique
// checks do.
func (s *Store) SubmitTx(ctx context.Context, tx Querier, op *operation.Operation, req *operation.Request, msg qdriver.Message) (stored *operation.Operation, created bool, err error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	if msg.ID == "" {
		return nil, false, errors.New("postgres: message has no ID")
	}
	return s.create(ctx, tx, op, req, &msg)
}

// create is Create, plus the Enqueue of msg when it is not nil, in one
// statement on db.
func (s *Store) create(ctx context.Context, db Querier, op *operation.Operation, req *operation.Request, msg *qdriver.Message) (*operation.Operation, bool, error) {
	if err := checkOp(op); err != nil {
		return nil, false, err
	}
	stored := op.Clone()
	stored.Version = 1
	doc, err := encodeOp(stored)
	if err != nil {
		return nil, false, err
	}
	args := pgx.NamedArgs{
		"id": op.ID, "status": string(op.Status), "key": strArg(op.IdempotencyKey),
		"expires": tsArg(op.ExpiresAt), "tombstone": tsArg(op.TombstoneUntil), "due": dueArg(op.CallbackDueAt),
		"doc": doc, "owner": ownerArg(op.Owner), "ops_chan": s.db.opsChan,
	}
	hasReq, hasMsg := 0, 0
	if req != nil {
		hasReq = 1
		var header []byte
		if req.Header != nil {
			if header, err = json.Marshal(req.Header); err != nil {
				return nil, false, fmt.Errorf("postgres: encoding request header: %w", err)
			}
		}
		body := req.Body
		if body == nil {
			body = []byte{}
		}
		args["method"], args["path"], args["raw_query"], args["header"] = req.Method, req.Path, req.RawQuery, header
		args["body"], args["host"], args["remote_addr"], args["tls"] = body, req.Host, req.RemoteAddr, req.TLS
	}
	if msg != nil {
		hasMsg = 1
		body := msg.Body
		if body == nil {
			body = []byte{}
		}
		args["msg_id"], args["msg_body"], args["msg_delay"] = msg.ID, body, micros(msg.Delay)
		args["queue_chan"] = s.db.qChan
	}
	sql := s.db.sql.create[hasReq][hasMsg]
	// A few rounds: a conflict whose cause is deleted before it is read
	// (an expired holder) is retried.
	for range 5 {
		var inserted, notified int64
		if err := db.QueryRow(ctx, sql, args).Scan(&inserted, &notified); err != nil {
			return nil, false, fmt.Errorf("postgres: creating operation %s: %w", op.ID, err)
		}
		if inserted == 1 {
			return stored, true, nil
		}
		// Not inserted: the key is held, or the id exists or is gone.
		if op.IdempotencyKey != "" {
			holder, err := s.scanOp(db.QueryRow(ctx, s.db.sql.holder, pgx.NamedArgs{"key": op.IdempotencyKey}))
			if err == nil {
				return holder, false, nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return nil, false, fmt.Errorf("postgres: reading the holder of an idempotency key: %w", err)
			}
		}
		var taken bool
		if err := db.QueryRow(ctx, s.db.sql.existsOrGone, pgx.NamedArgs{"id": op.ID}).Scan(&taken); err != nil {
			return nil, false, fmt.Errorf("postgres: reading operation %s: %w", op.ID, err)
		}
		if taken {
			return nil, false, fmt.Errorf("%w: %s", opdriver.ErrExists, op.ID)
		}
	}
	return nil, false, fmt.Errorf("postgres: creating operation %s: conflicts kept vanishing", op.ID)
}

// scanOp scans id, version, idempotency_key, doc, owner.
func (s *Store) scanOp(row pgx.Row) (*operation.Operation, error) {
	var (
		id      string
		version int64
		key     *string
		doc     []byte
		owner   []byte
	)
	if err := row.Scan(&id, &version, &key, &doc, &owner); err != nil {
		return nil, err
	}
	return decodeOp(doc, version, key, owner)
}

// micros is d in microseconds, never negative.
func micros(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(d.Microseconds())
}

// Update: see opstore/driver.Store.Update. One statement: the version check
// and the write are atomic.
func (s *Store) Update(ctx context.Context, op *operation.Operation) error {
	return s.update(ctx, op, s.db.sql.update)
}

// UpdateLazy: see opstore/driver.LazyUpdater. It is Update's statement,
// with the same version check and NOTIFY, committed with
// synchronous_commit off for its own transaction: it returns once the
// write is committed and visible to every session, without waiting for the
// WAL flush. The write becomes durable when the WAL writer flushes it (at
// most 3 × wal_writer_delay later, 600ms by default) or, at once, with the
// next synchronous commit that writes anything, from any session (every
// durable write of the store and the queue, and Sync): WAL is flushed in
// order, so a crash of the PostgreSQL server may lose lazy writes that
// were not flushed yet, never a lazy write without the durable writes made
// after it. A crash of the arr process alone loses nothing.
func (s *Store) UpdateLazy(ctx context.Context, op *operation.Operation) error {
	return s.update(ctx, op, s.db.sql.updateLazy)
}

// Sync: see opstore/driver.Syncer. It makes every lazy write (UpdateLazy,
// and the queue's AckLazy) that returned before it durable, with one
// synchronous commit that writes WAL: PostgreSQL flushes the WAL up to that
// commit's record, which lies after every earlier commit record. The
// statement is a setval of the sequence arr_sync (so the user needs UPDATE
// on it; the user that migrates the schema owns it). With synchronous_commit
// off for the server or the user, durable writes and Sync are no more
// durable than lazy ones.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.db.pool.Exec(ctx, s.db.sql.sync, pgx.NamedArgs{"seq": s.db.ident + ".arr_sync"}); err != nil {
		return fmt.Errorf("postgres: sync: %w", err)
	}
	return nil
}

func (s *Store) update(ctx context.Context, op *operation.Operation, sql string) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.updateOn(ctx, s.db.pool, op, sql)
}

// updateOn is update through db (the pool, or a transaction).
func (s *Store) updateOn(ctx context.Context, db Querier, op *operation.Operation, sql string) error {
	if err := checkOp(op); err != nil {
		return err
	}
	doc, err := encodeOp(op) // without Owner: the column keeps Create's
	if err != nil {
		return err
	}
	var (
		version  *int64
		notified int64
	)
	err = db.QueryRow(ctx, sql, pgx.NamedArgs{
		"id": op.ID, "version": op.Version, "status": string(op.Status),
		"expires": tsArg(op.ExpiresAt), "tombstone": tsArg(op.TombstoneUntil), "due": dueArg(op.CallbackDueAt),
		"doc": doc, "ops_chan": s.db.opsChan,
	}).Scan(&version, &notified)
	if err != nil {
		return fmt.Errorf("postgres: updating operation %s: %w", op.ID, err)
	}
	if version != nil {
		op.Version = *version
		return nil
	}
	var exists bool
	if err := db.QueryRow(ctx, s.db.sql.exists, pgx.NamedArgs{"id": op.ID}).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: reading operation %s: %w", op.ID, err)
	}
	if !exists {
		return fmt.Errorf("%w: %s", opdriver.ErrNotFound, op.ID)
	}
	return fmt.Errorf("%w: %s: update was from version %d", opdriver.ErrConflict, op.ID, op.Version)
}

// ---- reads ----

// Get: see opstore/driver.Store.Get.
func (s *Store) Get(ctx context.Context, id string) (*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var (
		version *int64
		key     *string
		doc     []byte
		owner   []byte
		gone    bool
	)
	if err := s.db.pool.QueryRow(ctx, s.db.sql.get, pgx.NamedArgs{"id": id}).Scan(&version, &key, &doc, &owner, &gone); err != nil {
		return nil, fmt.Errorf("postgres: reading operation %s: %w", id, err)
	}
	if version == nil {
		if gone {
			return nil, fmt.Errorf("%w: %s", opdriver.ErrGone, id)
		}
		return nil, fmt.Errorf("%w: %s", opdriver.ErrNotFound, id)
	}
	return decodeOp(doc, *version, key, owner)
}

// GetRequest: see opstore/driver.Store.GetRequest.
func (s *Store) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var (
		hasOp, hasReq, gone              bool
		method, path, rawQuery, host, ra *string
		header, body                     []byte
		tls                              *bool
	)
	err := s.db.pool.QueryRow(ctx, s.db.sql.getRequest, pgx.NamedArgs{"id": id}).
		Scan(&hasOp, &hasReq, &method, &path, &rawQuery, &header, &body, &host, &ra, &tls, &gone)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading request of %s: %w", id, err)
	}
	switch {
	case !hasOp && gone:
		return nil, fmt.Errorf("%w: %s", opdriver.ErrGone, id)
	case !hasOp || !hasReq:
		return nil, fmt.Errorf("%w: request of %s", opdriver.ErrNotFound, id)
	}
	req := &operation.Request{Method: *method, Path: *path, RawQuery: *rawQuery, Body: body, Host: *host, RemoteAddr: *ra, TLS: *tls}
	if len(header) > 0 {
		var h http.Header
		if err := json.Unmarshal(header, &h); err != nil {
			return nil, fmt.Errorf("postgres: decoding request header of %s: %w", id, err)
		}
		req.Header = h
	}
	return req, nil
}

const defaultListLimit = 100

// List: see opstore/driver.Store.List. Without a filter it walks the
// primary key from the cursor; with one, it merges one walk of the
// (status, id) index per status.
func (s *Store) List(ctx context.Context, opts opdriver.ListOptions) ([]*operation.Operation, string, error) {
	if err := s.check(); err != nil {
		return nil, "", err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	args := pgx.NamedArgs{"after": opts.After, "n": limit + 1}
	var sql string
	cols := "SELECT id, version, idempotency_key, doc, owner "
	switch {
	case opts.Owner != "":
		// One walk of the (owner, id) index from the cursor; a status
		// filter is checked on the owner's rows.
		args["owner"] = []byte(opts.Owner)
		where := " WHERE owner = @owner AND id > @after"
		if len(opts.Status) > 0 {
			sts := make([]string, len(opts.Status))
			for i, st := range opts.Status {
				sts[i] = string(st)
			}
			args["statuses"] = sts
			where += " AND status = ANY(@statuses::text[])"
		}
		sql = cols + s.db.sql.listFrom + where + " ORDER BY id LIMIT @n"
	case len(opts.Status) == 0:
		sql = cols + s.db.sql.listFrom + " WHERE id > @after ORDER BY id LIMIT @n"
	default:
		statuses := slices.Clone(opts.Status)
		slices.Sort(statuses)
		statuses = slices.Compact(statuses)
		parts := make([]string, len(statuses))
		for i, st := range statuses {
			name := fmt.Sprintf("st%d", i)
			args[name] = string(st)
			parts[i] = fmt.Sprintf("(%s%s WHERE status = @%s AND id > @after ORDER BY id LIMIT @n)", cols, s.db.sql.listFrom, name)
		}
		sql = "SELECT * FROM (" + strings.Join(parts, " UNION ALL ") + ") u ORDER BY id LIMIT @n"
	}
	rows, err := s.db.pool.Query(ctx, sql, args)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: listing operations: %w", err)
	}
	defer rows.Close()
	var ops []*operation.Operation
	for rows.Next() {
		op, err := s.scanOp(rows)
		if err != nil {
			return nil, "", err
		}
		ops = append(ops, op)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("postgres: listing operations: %w", err)
	}
	next := ""
	if len(ops) > limit {
		ops = ops[:limit]
		next = ops[limit-1].ID
	}
	return ops, next, nil
}

// DeleteExpired: see opstore/driver.Store.DeleteExpired. One transaction
// purges up to limit tombstones whose time has passed, then deletes up to
// limit expired operations (their requests cascade), writes the tombstones
// they leave and notifies their watchers. Rows another transaction has
// locked are skipped, so that several janitors can run at once.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var ops []*operation.Operation
	err := pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		ops = nil
		args := pgx.NamedArgs{"now": now, "limit": limit, "ops_chan": s.db.opsChan}
		if _, err := tx.Exec(ctx, s.db.sql.purgeTombstones, args); err != nil {
			return fmt.Errorf("postgres: purging tombstones: %w", err)
		}
		rows, err := tx.Query(ctx, s.db.sql.deleteExpired, args)
		if err != nil {
			return fmt.Errorf("postgres: deleting expired operations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id       string
				version  int64
				key      *string
				doc      []byte
				owner    []byte
				notified int64
			)
			if err := rows.Scan(&id, &version, &key, &doc, &owner, &notified); err != nil {
				return err
			}
			op, err := decodeOp(doc, version, key, owner)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return ops, nil
}

// DueCallbacks: see opstore/driver.Outbox. The column callback_due repeats
// the operation's CallbackDueAt (NULL when zero) and is written by the
// same statement as its doc on every write (Create, SubmitAtomic,
// SubmitTx, Update, UpdateLazy, TransitionEnqueue), so the index is never
// behind the operation it points to; DeleteExpired deletes the row, and
// with it the entry. One statement walks the partial index on
// callback_due up to now.
//
// The column holds microseconds (CallbackDueAt rounded up): operations
// due within the same microsecond are one tie for the index, returned in
// order of their exact CallbackDueAt within the page, and an operation
// due less than a microsecond before now may wait for the next call.
func (s *Store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.pool.Query(ctx, s.db.sql.dueCallbacks, pgx.NamedArgs{"now": now, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("postgres: reading due callbacks: %w", err)
	}
	defer rows.Close()
	var ops []*operation.Operation
	for rows.Next() {
		op, err := s.scanOp(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: reading due callbacks: %w", err)
		}
		// The index is exact for the rows this build wrote; a row that a
		// build with CallbackDueAt in doc but no column wrote was indexed
		// by migration 0003 to the nearest microsecond, so check.
		if !op.CallbackDueAt.IsZero() && !op.CallbackDueAt.After(now) {
			ops = append(ops, op)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading due callbacks: %w", err)
	}
	slices.SortStableFunc(ops, func(a, b *operation.Operation) int { return a.CallbackDueAt.Compare(b.CallbackDueAt) })
	return ops, nil
}

// Watch: see opstore/driver.Store.Watch. Every write NOTIFYs the id in its
// transaction; the DB's one LISTEN connection fans the notifications out.
// Watch returns once that connection listens, so a change committed after
// Watch returns is seen; after a reconnect every watcher is woken.
func (s *Store) Watch(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	w, unwatch := s.db.lis.hub.Add(id)
	if err := s.db.lis.ensure(ctx); err != nil {
		unwatch()
		return nil, nil, err
	}
	s.watchMu.Lock()
	if s.watching == nil {
		s.watching = map[*watch.Watcher]func(){}
	}
	s.watching[w] = unwatch
	s.watchMu.Unlock()
	return w.C, sync.OnceFunc(func() {
		s.watchMu.Lock()
		delete(s.watching, w)
		s.watchMu.Unlock()
		unwatch()
	}), nil
}
