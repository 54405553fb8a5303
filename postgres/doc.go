// Package postgres is arr's PostgreSQL engine: an operations store
// (opstore/driver.Store and driver.AtomicSubmitter) and a work queue
// (queue/driver.Queue) in one schema of a PostgreSQL database (13 or
// later), on github.com/jackc/pgx/v5. Any number of arr processes may
// share the schema: api processes, workers, or both.
//
// Open by URL, after importing the package for its side effect:
//
//	opstore.OpenStore(ctx, "postgres://arr@db.internal:5432/app?sslmode=verify-full&schema=arr")
//	queue.OpenQueue(ctx, "postgres://arr@db.internal:5432/app?sslmode=verify-full&schema=arr&maxDeliveries=10")
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
//	                expires_at, tombstone_until, doc: the JSON of the
//	                operation without its version and key
//	arr_requests    the request of each operation, its body as bytea;
//	                deleted with the operation (ON DELETE CASCADE)
//	arr_tombstones  ids of deleted operations that answer ErrGone, until
//	arr_queue       id primary key, body, attempt, visible_at,
//	                lease_token, dead, dead_reason, dead_at, enqueued_at
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
// Optional driver interfaces not implemented: LazyUpdater and Transitioner
// (every update is a synchronous commit, and a transition is Get plus a
// version-checked Update), LazyAcker (every Ack commits). Operation ids,
// message ids and idempotency keys longer than about 2,700 bytes exceed
// PostgreSQL's B-tree entry limit and fail to store (arr's ids are
// 36-byte UUIDs).
package postgres
