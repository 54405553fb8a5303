package postgres

import "strings"

// queries holds the SQL of a DB, with its schema filled in. Parameters are
// pgx.NamedArgs (@name).
type queries struct {
	create [2][2]string // [has request][has message]
	holder, existsOrGone,
	get, getRequest,
	update, updateLazy, exists,
	purgeTombstones, deleteExpired, dueCallbacks, sync,
	enqueue, claim, nextVisible,
	ack, ackLazy, nak, inProgress, term, release, stats string
	listFrom string // "FROM {s}.arr_operations"
}

func makeQueries(schema string) queries {
	r := strings.NewReplacer("{s}", schema)
	var q queries
	for _, hasReq := range []int{0, 1} {
		for _, hasMsg := range []int{0, 1} {
			sql := createOp
			if hasReq == 1 {
				sql += createReq
			}
			if hasMsg == 1 {
				sql += createMsg
			}
			if hasMsg == 1 {
				sql += createEndMsg
			} else {
				sql += createEnd
			}
			q.create[hasReq][hasMsg] = r.Replace(sql)
		}
	}
	for dst, src := range map[*string]string{
		&q.holder:          `SELECT id, version, idempotency_key, doc, owner FROM {s}.arr_operations WHERE idempotency_key = @key`,
		&q.existsOrGone:    `SELECT EXISTS (SELECT 1 FROM {s}.arr_operations WHERE id = @id) OR EXISTS (SELECT 1 FROM {s}.arr_tombstones WHERE id = @id AND until > now())`,
		&q.get:             getOp,
		&q.getRequest:      getRequest,
		&q.update:          strings.Replace(updateOp, "{lazy}", "", 1),
		&q.updateLazy:      strings.Replace(updateOp, "{lazy}", lazyCommit, 1),
		&q.exists:          `SELECT EXISTS (SELECT 1 FROM {s}.arr_operations WHERE id = @id)`,
		&q.purgeTombstones: purgeTombstones,
		&q.sync:            syncWAL,
		&q.deleteExpired:   deleteExpired,
		&q.dueCallbacks:    dueCallbacks,
		&q.enqueue:         enqueue,
		&q.claim:           claim,
		&q.nextVisible:     `SELECT EXTRACT(EPOCH FROM min(visible_at) - now())::float8 FROM {s}.arr_queue WHERE NOT dead`,
		&q.ack:             `DELETE FROM {s}.arr_queue WHERE id = @id AND lease_token = @token AND NOT dead`,
		&q.ackLazy:         `DELETE FROM {s}.arr_queue WHERE id = @id AND lease_token = @token AND NOT dead` + lazyCommit,
		&q.nak:             nak,
		&q.inProgress:      `UPDATE {s}.arr_queue SET visible_at = now() + @lease::float8 * interval '1 microsecond' WHERE id = @id AND lease_token = @token AND NOT dead`,
		&q.term:            `UPDATE {s}.arr_queue SET dead = true, dead_reason = @reason, dead_at = now(), lease_token = NULL WHERE id = @id AND lease_token = @token AND NOT dead`,
		&q.release:         release,
		&q.stats:           stats,
		&q.listFrom:        `FROM {s}.arr_operations`,
	} {
		*dst = r.Replace(src)
	}
	return q
}

// Create: the operation unless its id or idempotency key is taken or its
// id has a live tombstone; then, only when it was inserted, the stale
// tombstone's removal, the request, the queue message, and the NOTIFYs.
// Data-modifying CTEs always run; the SELECT ones run because the final
// SELECT reads them.
const createOp = `WITH gone AS (
	SELECT 1 FROM {s}.arr_tombstones WHERE id = @id AND until > now()
), ins AS (
	INSERT INTO {s}.arr_operations (id, version, status, idempotency_key, expires_at, tombstone_until, callback_due, doc, owner)
	SELECT @id::text, 1, @status::text, @key::text, @expires::timestamptz, @tombstone::timestamptz, @due::timestamptz, @doc::json, @owner::bytea WHERE NOT EXISTS (SELECT 1 FROM gone)
	ON CONFLICT DO NOTHING
	RETURNING id
), stale AS (
	DELETE FROM {s}.arr_tombstones t USING ins WHERE t.id = ins.id
), n AS (
	SELECT pg_notify(@ops_chan::text, id) FROM ins
)`

const createReq = `, req AS (
	INSERT INTO {s}.arr_requests (id, method, path, raw_query, header, body, host, remote_addr, tls)
	SELECT id, @method::text, @path::text, @raw_query::text, @header::json, @body::bytea, @host::text, @remote_addr::text, @tls::boolean FROM ins
)`

const createMsg = `, msg AS (
	INSERT INTO {s}.arr_queue AS q (id, body, attempt, visible_at)
	SELECT @msg_id::text, @msg_body::bytea, 0, now() + @msg_delay::float8 * interval '1 microsecond' FROM ins
	ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, attempt = 0, visible_at = EXCLUDED.visible_at,
		lease_token = NULL, dead = false, dead_reason = NULL, dead_at = NULL, enqueued_at = now()
	WHERE q.dead
	RETURNING 1
), qn AS (
	SELECT pg_notify(@queue_chan::text, '') WHERE EXISTS (SELECT 1 FROM msg)
)`

const createEnd = `
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)`

const createEndMsg = `
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n) + (SELECT count(*) FROM qn)`

// Get reads the operation, and whether its id has a live tombstone when it
// is missing, in one statement.
const getOp = `SELECT o.version, o.idempotency_key, o.doc, o.owner,
	o.id IS NULL AND EXISTS (SELECT 1 FROM {s}.arr_tombstones t WHERE t.id = k.id AND t.until > now())
FROM (SELECT @id::text AS id) k LEFT JOIN {s}.arr_operations o ON o.id = k.id`

const getRequest = `SELECT o.id IS NOT NULL, r.id IS NOT NULL, r.method, r.path, r.raw_query, r.header, r.body, r.host, r.remote_addr, r.tls,
	o.id IS NULL AND EXISTS (SELECT 1 FROM {s}.arr_tombstones t WHERE t.id = k.id AND t.until > now())
FROM (SELECT @id::text AS id) k
	LEFT JOIN {s}.arr_operations o ON o.id = k.id
	LEFT JOIN {s}.arr_requests r ON r.id = k.id`

// lazyCommit, appended to the WHERE clause of a write, makes the
// statement's (implicit, single-statement) transaction commit
// asynchronously: set_config(…, true) sets synchronous_commit for the
// current transaction only, and PostgreSQL reads the setting when it
// writes the commit record (the setting reverts after the commit, so the
// pooled connection keeps the server's default). The function is volatile,
// so it is a per-row filter, never folded or hoisted: every row the
// statement writes passed it, so a statement that writes anything has
// run it before its commit; one that writes nothing has no xid and
// nothing to make durable. It costs no round trip and no second pool.
// The write is visible and NOTIFYs at its commit as any other: only the
// WAL flush is left to the WAL writer (within 3 × wal_writer_delay) or to
// the next synchronous commit, whichever comes first.
const lazyCommit = ` AND set_config('synchronous_commit', 'off', true) IS NOT NULL`

// Update is compare-and-set on version; the idempotency key and owner
// columns are never written, callback_due always is, with doc. {lazy} is
// "" or lazyCommit.
const updateOp = `WITH u AS (
	UPDATE {s}.arr_operations SET version = version + 1, status = @status, expires_at = @expires, tombstone_until = @tombstone,
		callback_due = @due, doc = @doc
	WHERE id = @id AND version = @version{lazy}
	RETURNING version
), n AS (
	SELECT pg_notify(@ops_chan::text, @id::text) FROM u
)
SELECT (SELECT version FROM u), (SELECT count(*) FROM n)`

// syncWAL is Store.Sync: a transaction that writes WAL (setval always
// logs the sequence) and has an xid (setval assigns one), so that its
// commit, synchronous unless the server or user set synchronous_commit
// off, flushes the WAL up to its commit record: every asynchronous commit
// that returned before it is earlier in the WAL, and flushed with it (and,
// under synchronous replication, waited for on the standbys with it). An
// xid alone (SELECT pg_current_xact_id()) is not enough: PostgreSQL
// commits a transaction that wrote no WAL asynchronously.
// @seq is the sequence's qualified name (a parameter: a schema's name may
// hold quotes).
const syncWAL = `SELECT setval(@seq::text::regclass, 1, false)`

const purgeTombstones = `DELETE FROM {s}.arr_tombstones WHERE id IN (
	SELECT id FROM {s}.arr_tombstones WHERE until < @now ORDER BY until LIMIT @limit FOR UPDATE SKIP LOCKED)`

// DeleteExpired deletes (requests cascade), writes tombstones, notifies.
const deleteExpired = `WITH d AS (
	DELETE FROM {s}.arr_operations WHERE id IN (
		SELECT id FROM {s}.arr_operations WHERE expires_at < @now ORDER BY expires_at LIMIT @limit FOR UPDATE SKIP LOCKED)
	RETURNING id, version, idempotency_key, doc, owner, expires_at, tombstone_until
), t AS (
	INSERT INTO {s}.arr_tombstones (id, until)
	SELECT id, tombstone_until FROM d WHERE tombstone_until > expires_at AND tombstone_until > @now
	ON CONFLICT (id) DO UPDATE SET until = EXCLUDED.until
), n AS (
	SELECT pg_notify(@ops_chan::text, id) FROM d
)
SELECT id, version, idempotency_key, doc, owner, (SELECT count(*) FROM n) FROM d`

// dueCallbacks walks the partial index on callback_due up to @now.
const dueCallbacks = `SELECT id, version, idempotency_key, doc, owner FROM {s}.arr_operations
WHERE callback_due <= @now ORDER BY callback_due LIMIT @limit`

// Enqueue inserts new ids, revives dead ones, leaves queued ones alone.
const enqueue = `WITH m AS (
	SELECT * FROM unnest(@ids::text[], @bodies::bytea[], @delays::float8[]) AS m(id, body, delay)
), ins AS (
	INSERT INTO {s}.arr_queue AS q (id, body, attempt, visible_at)
	SELECT id, body, 0, now() + delay * interval '1 microsecond' FROM m
	ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, attempt = 0, visible_at = EXCLUDED.visible_at,
		lease_token = NULL, dead = false, dead_reason = NULL, dead_at = NULL, enqueued_at = now()
	WHERE q.dead
	RETURNING 1
), n AS (
	SELECT pg_notify(@queue_chan::text, '') WHERE EXISTS (SELECT 1 FROM ins)
)
SELECT (SELECT count(*) FROM n)`

// claim leases up to @max visible messages with a fresh token each, and
// dead-letters instead those whose lease expired on their last allowed
// delivery (returned with dead set, for the caller to try again).
const claim = `WITH cand AS (
	SELECT id, attempt, lease_token IS NOT NULL AND @maxd::int > 0 AND attempt >= @maxd::int AS spent
	FROM {s}.arr_queue
	WHERE NOT dead AND visible_at <= now()
	ORDER BY visible_at
	LIMIT @max
	FOR UPDATE SKIP LOCKED
), dl AS (
	UPDATE {s}.arr_queue q SET dead = true, dead_at = now(), lease_token = NULL,
		dead_reason = 'lease expired on delivery ' || q.attempt || ' of at most ' || @maxd::int
	FROM cand WHERE q.id = cand.id AND cand.spent
	RETURNING q.id
), cl AS (
	UPDATE {s}.arr_queue q SET attempt = q.attempt + 1, lease_token = gen_random_uuid(),
		visible_at = now() + @lease::float8 * interval '1 microsecond'
	FROM cand WHERE q.id = cand.id AND NOT cand.spent
	RETURNING q.id, q.body, q.attempt, q.lease_token
)
SELECT id, body, attempt, lease_token, false FROM cl
UNION ALL
SELECT id, NULL, 0, NULL, true FROM dl`

// Nak gives the message back after @delay, or dead-letters it on its last
// allowed delivery.
const nak = `WITH u AS (
	UPDATE {s}.arr_queue SET lease_token = NULL,
		visible_at = now() + @delay::float8 * interval '1 microsecond',
		dead = (@maxd::int > 0 AND attempt >= @maxd::int),
		dead_at = CASE WHEN @maxd::int > 0 AND attempt >= @maxd::int THEN now() END,
		dead_reason = CASE WHEN @maxd::int > 0 AND attempt >= @maxd::int THEN 'naked on delivery ' || attempt || ' of at most ' || @maxd::int END
	WHERE id = @id AND lease_token = @token AND NOT dead
	RETURNING dead
), n AS (
	SELECT pg_notify(@queue_chan::text, '') WHERE EXISTS (SELECT 1 FROM u WHERE NOT u.dead)
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)`

// release ends the leases of a closing queue's unsettled deliveries now,
// as if they had expired.
const release = `WITH u AS (
	UPDATE {s}.arr_queue SET visible_at = now()
	WHERE lease_token = ANY(@tokens::uuid[]) AND NOT dead AND visible_at > now()
	RETURNING 1
), n AS (
	SELECT pg_notify(@queue_chan::text, '') WHERE EXISTS (SELECT 1 FROM u)
)
SELECT (SELECT count(*) FROM n)`

// stats counts by state; a message whose lease expired on its last allowed
// delivery counts as dead (the next Receive dead-letters it).
const stats = `SELECT
	count(*) FILTER (WHERE NOT dead AND visible_at <= now() AND NOT (lease_token IS NOT NULL AND @maxd::int > 0 AND attempt >= @maxd::int)),
	count(*) FILTER (WHERE NOT dead AND visible_at > now() AND lease_token IS NULL),
	count(*) FILTER (WHERE NOT dead AND visible_at > now() AND lease_token IS NOT NULL),
	count(*) FILTER (WHERE dead OR (visible_at <= now() AND lease_token IS NOT NULL AND @maxd::int > 0 AND attempt >= @maxd::int))
FROM {s}.arr_queue`
