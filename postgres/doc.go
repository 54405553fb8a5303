// Package postgres is arr's PostgreSQL engine: an operations store
// (opstore/driver.Store, with one-step writes of an operation and its message: engine.Atomic) and a work queue
// (queue/driver.Queue) in one schema of a PostgreSQL database (13 or
// later), on github.com/jackc/pgx/v5. Any number of arr processes may
// share the schema: api processes, workers, or both.
//
// Open the engine by URL (package engine), after importing the package
// for its side effect:
//
//	e, err := engine.Open(ctx, "postgres://arr@db.internal:5432/app?sslmode=verify-full&schema=arr&maxDeliveries=10")
//	store, err := e.Store(ctx) // and e.Queue(ctx), e.Atomic()
//
// or with Open, for a program that also wants the pool (for its own
// transactions, see Store.SubmitTx):
//
//	db, err := postgres.Open(ctx, url)
//	store, q := db.Store(), db.Queue()
//
// Both schemes, postgres:// and postgresql://, are registered for both
// ports. A store and a queue opened by URL in one process on the same
// database, user, connection parameters and schema share one pool and
// one listening connection (queue parameters may differ); the pool closes
// with the last of them.
//
// # URL parameters
//
// arr reads these and removes them before the URL goes to pgx:
//
//   - schema: the schema holding arr's tables (default "arr"); created if
//     missing. Tables are named arr_*, so the schema may be shared with an
//     application's own tables (e.g. schema=public).
//   - maxDeliveries (queue): dead-letter a message delivered this many
//     times without an Ack, instead of delivering it again after a Nak or an
//     expired lease. Default 0: unlimited. The worker decides retries from
//     the operation's own attempts; this is only a backstop.
//   - defaultLease (queue): a Go duration, the lease of a Receive or
//     InProgress called with lease <= 0. Default 30s.
//   - pollInterval (queue): a Go duration, the longest a Receive with
//     nothing to take waits before it looks again without a notification
//     (a safety net; see below). Default 5s.
//   - auth: where every connection's password comes from, by a name a
//     package registered with RegisterAuth: "entra" (package
//     postgres/entra, linked by the arr binary) makes it a Microsoft Entra
//     access token from azidentity's DefaultAzureCredential, for Azure
//     Database for PostgreSQL with no password anywhere. Default: none (the
//     URL, PGPASSWORD or .pgpass, as pgx reads them).
//
// Every other parameter is pgx's (and libpq's): sslmode, sslrootcert,
// connect_timeout, application_name, target_session_attrs, and the pool's
// pool_max_conns (default: the larger of 4 and the number of CPUs),
// pool_min_conns, pool_max_conn_lifetime, pool_max_conn_idle_time,
// pool_health_check_period, and default_query_exec_mode. A password may
// be in the URL or, better, in PGPASSWORD or a .pgpass file (pgx reads
// both); the environment variables PGHOST, PGUSER and so on fill what the
// URL leaves out.
//
// The listening connection is a plain session: a pooler in transaction
// mode (PgBouncer's pool_mode=transaction) cannot carry LISTEN, and its
// prepared statements need default_query_exec_mode=exec or
// simple_protocol. Point arr at PostgreSQL directly, or at a
// session-mode pool.
//
// # Schema and migrations
//
// Opening a DB applies the migrations embedded in the binary
// (migrations/NNNN_name.sql) that the schema's arr_migrations table does
// not list, all in one transaction under a transaction-scoped advisory
// lock on the schema's name: processes that start at once apply each
// migration exactly once, the others wait and then find nothing to do,
// and a failure applies nothing. A schema migrated by a newer arr (a
// version this binary does not know) is refused. The user needs CREATE on
// the database (for the schema) or on the schema.
//
//	arr_operations  id (text, "C" collation: byte order) primary key,
//	                version, status, idempotency_key (unique),
//	                expires_at, tombstone_until, owner (bytea, indexed
//	                with id), callback_due (CallbackDueAt, indexed where
//	                not NULL: the callback outbox, driver.Outbox), doc: the
//	                JSON of the operation without its version, key and
//	                owner
//	arr_requests    the request of each operation, its body as bytea;
//	                deleted with the operation (ON DELETE CASCADE)
//	arr_tombstones  ids of deleted operations that answer ErrGone, until
//	arr_queue       id primary key, body, attempt, visible_at,
//	                lease_token, dead, dead_reason, dead_at, enqueued_at
//	arr_sync        a sequence whose setval is Sync's WAL write
//	                (its value means nothing)
//
// # Durability and atomicity
//
// Every write is one statement (Create, SubmitAtomic, Update, Enqueue,
// Ack, Nak, InProgress, Term) or one transaction (DeleteExpired) and
// returns after its commit. With synchronous_commit on (PostgreSQL's
// default) the commit is in the flushed WAL, so a 202 survives a crash of
// arr and of the database server; with synchronous replication, of the
// primary too. Create writes the operation, its request and (SubmitAtomic,
// SubmitTx) its queue message in one statement, so an operation is never
// committed without its message. Update is compare-and-set on version in
// its WHERE clause. Idempotency keys and ids are claimed with INSERT …
// ON CONFLICT DO NOTHING, so concurrent creates with one key create one
// operation and the others return it, and no conflict aborts a caller's
// transaction.
//
// # Lazy writes and Sync
//
// The store implements opstore/driver.LazyUpdater and driver.Syncer, and
// the queue's deliveries queue/driver.LazyAcker: UpdateLazy and AckLazy
// run Update's and Ack's statement (the same version or lease-token
// check, the same NOTIFY) with set_config('synchronous_commit', 'off',
// true) in its WHERE clause, so that its own transaction commits
// asynchronously (in the same round trip, on the same pool; the setting
// ends with the transaction). The write is committed, visible to every
// session and notified when the call returns; only the WAL flush is
// deferred, to the WAL writer (within 3 × wal_writer_delay, 600ms by
// default) or to the next synchronous commit of any session, whichever
// comes first: the store's and the queue's durable writes, and Sync, which
// commits a setval of the sequence arr_sync (a transaction that writes WAL,
// so its commit flushes the WAL up to its record and every earlier commit
// with it; one that only takes an xid writes no WAL and would not flush).
// The worker writes a first delivery's running state and progress reports
// lazily, syncs the running state of an attempt that lasts, and acks
// lazily after the durable terminal state.
//
// A crash of arr loses nothing (lazy writes are committed). A crash of the
// PostgreSQL server (or of its machine) may lose the lazy writes of its
// last moments, and only those: the WAL is flushed in order, so no lazy
// write is lost while a durable write made after it is kept. The worker
// repairs such a loss by redelivery: a lost running state leaves the
// operation pending, to be started again; a lost ack brings the message
// back, and its redelivery finds the durable terminal state and is acked
// without running. With synchronous_commit off for the server or the user,
// every write is as lazy as these. Under synchronous replication, lazy
// writes do not wait for the standbys; Sync and durable writes do, and
// cover the lazy writes before them.
//
// The store does not implement driver.Transitioner: the change is Go code,
// so a transition needs the row at the client before its write, two round
// trips whether a Get and a version-checked Update (opstore's Transition)
// or a SELECT … FOR UPDATE and an UPDATE in one transaction, which would
// add BEGIN and COMMIT and hold the row lock across a round trip.
//
// Timestamps are stored as timestamptz, to the microsecond: DeleteExpired
// compares ExpiresAt with its now at that precision (an operation that
// expires less than a microsecond before now may wait for the next call).
// The operation itself keeps its times to the nanosecond.
//
// # Change notification (Watch)
//
// Every write NOTIFYs, in its own transaction, the channel
// "arr.<schema>.ops" (a digest replaces the schema in channel names that
// would pass 63 bytes) with the operation's id (so the notification is sent
// when, and only if, the write commits, from whichever process made it).
// Each DB holds one LISTEN connection, opened by its first Watch or
// Receive, which fans notifications out to per-id channels (buffer one,
// non-blocking sends). Watch returns once that connection listens, so the
// caller's read that follows cannot miss a change. When the connection
// drops, notifications sent meanwhile are lost: on reconnecting it wakes
// every watcher, which reads again. A dead TCP peer is noticed by TCP
// keepalives (pgx's dialer enables them), not sooner.
//
// # The queue
//
// Receive claims with
//
//	UPDATE … WHERE id IN (SELECT … WHERE NOT dead AND visible_at <= now()
//	ORDER BY visible_at LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …
//
// giving each message a fresh random lease token, attempt+1 and
// visible_at = now() + lease. Ack, Nak, InProgress and Term name the
// token; a message that has been delivered again since (or settled)
// carries another, and the call fails with ErrLeaseLost. Leases and
// delays use the database's clock, so workers on several machines agree
// on them whatever their own clocks say. A message whose lease expired on
// its last allowed delivery (maxDeliveries) is dead-lettered by the next
// Receive instead of delivered, and counted as dead by Stats meanwhile.
// Dead letters stay in the table (dead, dead_reason, dead_at) until their
// id is enqueued again, which revives them.
//
// A Receive with nothing to take waits for a NOTIFY on
// "arr.<schema>.queue" (sent by Enqueue, by a Nak that makes a message
// visible, by a closing queue releasing its leases), for the earliest
// visible_at in the table (a delay, a backoff, a lease's end), or for
// pollInterval, whichever comes first; all in-process Receives of a DB
// wake together and race for the rows with SKIP LOCKED.
//
// Close of a Queue ends the leases of its unsettled deliveries at once
// (they are delivered again, to any process, and count as a delivery for
// maxDeliveries). A process that dies leaves its leases to run out.
//
// Stats counts the table in one scan: O(queue length). The api calls it on
// every submit; for queues of millions of messages that is a cost to
// watch.
//
// # Limits
//
// The optional driver interface Transitioner is not implemented (a
// transition is Get plus a version-checked Update; see above). Operation ids,
// message ids and idempotency keys longer than about 2,700 bytes exceed
// PostgreSQL's B-tree entry limit and fail to store (arr's ids are
// 36-byte UUIDs).
package postgres
