// Package embedded is arr's default engine: an operations store
// (opstore/driver.Store), a queue (queue/driver.Queue) and a result store
// on one Pebble database in one directory, pure Go, no other process, with
// one-step writes of an operation and its message (engine.Atomic).
//
//	db, err := embedded.Open("./arr-data", embedded.Options{})
//	store, q := opstore.New(db.Store()), queue.New(db.Queue())
//
// or by URL, after importing the package, as an engine (package engine):
//
//	e, err := engine.Open(ctx, "embedded:./arr-data?maxDeliveries=5")
//	store, err := e.Store(ctx) // and e.Queue(ctx), e.Results(ctx), e.Atomic()
//
// URLs naming the same directory share one DB in a process (Pebble locks its
// directory); the DB closes when its last Store, Queue, engine and Open
// reference is closed. URL parameters: maxDeliveries, defaultLease (a Go duration),
// cacheSize and memTableSize (bytes); see Options.
//
// # Durability and group commit
//
// Every write that the driver interfaces call durable — Create, Update,
// DeleteExpired, SubmitAtomic, Enqueue, Ack, Nak, Term — is one Pebble batch
// committed with pebble.Sync: it is in the fsynced write-ahead log before the
// call returns, so it survives a kill -9 and a power loss. A submit (the
// operation, its request, its idempotency key, its status, owner, expiry
// and callback index entries and its queue message) is a single batch, so
// an operation is never durable without its message. Pebble's commit
// pipeline merges the synced batches that arrive while an fsync is in
// flight into the next fsync, so concurrent submits share fsyncs (see
// BenchmarkSubmit against BenchmarkSubmitSerial).
//
// Read-check-write sequences (the version check of Update, the idempotency
// key and existence checks of Create, the already-queued check of Enqueue)
// run under in-process striped locks keyed by operation id, idempotency key
// and message id, taken in a global order. A single process owns the
// directory, so no other writer exists.
//
// # On-disk layout
//
// Keys start with a one-byte prefix; ids and idempotency keys are stored as
// their bytes; times are big-endian uint64 Unix nanoseconds, so keys sort by
// time. Pebble prefix-compresses keys within blocks and compresses blocks
// with Snappy.
//
//	!format                      layout version ("1")
//	o<id>                        operation: 0x02 + the binary record of
//	                             encodeOp (see below), or 0x03 + the same
//	                             with owner and tenant when either is set;
//	                             0x01 + JSON of operation.Operation is still
//	                             read
//	r<id>                        request: 0x02, uvarint-prefixed method, path,
//	                             query, host, remote address, one byte TLS
//	                             (0/1), headers (count, then name + values),
//	                             then the raw body (kept out of o<id> so that
//	                             status reads never load bodies); 0x01, the
//	                             same without host, remote address and TLS,
//	                             is still read
//	k<idempotency key>           id of the operation holding the key
//	s<status>\x00<id>            (empty) status index, for List's filters
//	w<len><owner><id>            (empty) owner index, for List's owner
//	                             filter: the owner's length (uvarint), its
//	                             bytes, the id; written with the operation,
//	                             deleted with it
//	x<expiresAt><id>             (empty) expiry index, for DeleteExpired
//	c<callbackDueAt><id>         (empty) callback outbox index, for
//	                             DueCallbacks: one entry per operation whose
//	                             CallbackDueAt is set, written, moved and
//	                             deleted in the batch that writes or
//	                             deletes the operation
//	g<id>                        tombstone of a deleted operation: the time
//	                             (8 bytes) until which Get answers ErrGone
//	t<until><id>                 (empty) tombstone index by time, for
//	                             DeleteExpired's purge
//	q<readyAt><message id>       queue entry: 0x01, uvarint delivery count, body
//	m<message id>                readyAt (8 bytes) of the message's q entry,
//	                             or "D" when it is dead: one point read tells
//	                             Enqueue whether an id is queued, dead or new
//	d<message id>                dead letter: 0x01, deadAt, uvarint delivery
//	                             count, uvarint-prefixed reason, body
//	b<result key>                result (the result store embedded:DIR):
//	                             0x01, uvarint-prefixed content type and ETag,
//	                             modTime, then the bytes (results up to 4 KiB,
//	                             and every result written before chunks);
//	                             or the header of a larger one: 0x02, content
//	                             type, ETag, modTime, uvarint size and chunk
//	                             size, generation (BE64)
//	b<result key>\x00<gen><i>    chunk i (BE32) of generation gen (BE64) of
//	                             a result: 256 KiB, the last one shorter
//	u<gen><result key>           (empty) marker of chunks being written,
//	                             deleted with the header's write; Open
//	                             deletes the chunks of the markers a crash
//	                             left
//
// The operation record (v2) is
//
//	0x02 | id | route | status | flags | createdAt | updatedAt | percent |
//	message | attempts | [error] | [result] | idempotencyKey | requestHash |
//	[expiresAt] | [tombstoneUntil] (flag 0x40) | [attemptStartedAt] (flag
//	0x80) | nMeta { key | value } | version | [ext]
//
// with uvarint-prefixed strings, varint numbers and times as varint Unix
// nanoseconds; the flags byte says which bracketed parts are present and
// which times are zero. ext (flag 0x20) is a uvarint-prefixed JSON object
// of the fields few operations set — Failures, Interruptions, History,
// Result.StatusCode and Result.Header, Error.Extensions — written only
// when one of them is set, so the common record has no JSON in it.
// Extension values come back as JSON decodes them into an any (numbers as
// float64); times come back in UTC. A v3 record (0x03) adds owner and
// tenant after requestHash; a v4 record (0x04) is a v3 record followed by
// the callbacks part (CallbackURL, CallbackDueAt and each Callback, binary:
// an operation that calls back is written again at each attempt; see
// appendCallbacks).
//
// Values of 512 bytes and more (bodies, results) are separated into blob
// files at flush, so compactions move references, not the bytes. Recently
// written operation records are also cached in memory, bounded in bytes
// (Options.OpCacheBytes; see opCache), and
// the highest operation and message keys bound which new ids need an
// existence read at all (see ceiling).
//
// List without a filter walks o<…> from the cursor; with a status filter it
// merges one walk of s<status>\x00<…> per status; with an owner it walks
// that owner's w<…> entries (and checks the status of each, when both are
// given); it reads the records from the same snapshot. DeleteExpired walks x<…> up to now.
// DueCallbacks walks c<…> up to now, inclusive, earliest first, and reads
// the records from the same snapshot.
//
// # Tombstones
//
// When DeleteExpired deletes an operation whose TombstoneUntil is after its
// ExpiresAt and after now, the same batch writes g<id> and t<until><id>.
// Get and GetRequest read g<id> only after they miss the operation (the
// hot path pays nothing) and answer ErrGone while until is ahead of the
// clock; Create of such an id is ErrExists (and a tombstone whose time has
// passed but is not purged yet is deleted in the Create's batch). Every
// DeleteExpired call first walks t<…> up to now and deletes up to limit
// tombstones (separately from the limit of operations; they are not
// returned), so the tombstones on disk (about 100 bytes each, before
// compression) are bounded by the deletions made during one tombstone
// period (TombstoneUntil − ExpiresAt), plus one janitor interval. The ceiling of operation ids is loaded from g<…> as
// well as o<…>, so that a new id above it still needs no read at all.
//
// # The queue
//
// Entries are ordered by the time they become deliverable. Receive scans
// from an in-memory watermark, below which every entry is either deleted or
// leased, so it never walks the tombstones that acked entries leave behind
// (the classic LSM-queue pitfall): an Ack deletes an entry the watermark has
// already passed. An Enqueue or Nak whose entry sorts below the watermark
// (clock steps) lowers it.
//
// Leases live only in memory, one small record per message in flight, with
// a heap by expiry; an expired lease is redelivered from memory. A crash
// loses the leases, which makes the leased messages deliverable again (at
// least once). On delivery, the entry's delivery count is rewritten without
// an fsync; the next synced write makes it durable. A Nak rewrites the entry
// at its new ready time, durably. Term, or a delivery beyond MaxDeliveries,
// moves the entry to d<id>. Enqueue of an id that has a dead letter revives
// it (the dead letter is removed).
//
// Memory is O(messages in flight), not O(queue length). Open counts the
// m<…> entries (queued and dead) once for Stats. Stats counts the delayed
// end of the queue (entries ready after now) only when the latest ready time
// ever written is still ahead, so it costs nothing while no message is
// delayed and O(delayed messages) otherwise.
//
// A Receive that finds nothing waits; it never polls. Each message that
// becomes deliverable (Enqueue, Nak) signals one waiting Receive, oldest
// first, rather than all of them, so idle workers do not stampede; one shared
// alarm fires at the next known event (a delayed entry's ready time, the
// first lease expiry) and signals one waiter, which re-arms it. A Receive
// that stops at its max with more deliverable passes the signal on.
//
// Watch is an in-process notification sent after a change is committed.
package embedded
