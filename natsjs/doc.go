// Package natsjs is arr's NATS JetStream engine: an operations store
// (opstore/driver.Store, on a JetStream key-value bucket) and a work queue
// (queue/driver.Queue, on work-queue streams with a durable pull consumer).
// It needs nats-server 2.9 or later with JetStream; it uses nothing newer
// (no per-message TTL, scheduled messages, batch publish or multi-filter
// consumers).
//
// Import it for its side effect and open the engine by URL (package
// engine):
//
//	e, err := engine.Open(ctx, "nats://127.0.0.1:4222,127.0.0.1:4223?prefix=arr&replicas=3&ackWait=30s")
//	store, err := e.Store(ctx) // and e.Queue(ctx)
//
// or over a connection of your own with OpenStore and OpenQueue.
//
// # URL
//
// The host part lists the servers, comma-separated (each host:port). User
// information is used as user and password ("nats://u:p@host"), or as a
// token when it has no password ("nats://tok@host"). Query parameters:
//
//	prefix         names the streams and the bucket (letters, digits, '-',
//	               '_'; default "arr"): streams <prefix>_work,
//	               <prefix>_delay, <prefix>_dead and bucket <prefix>_ops
//	               (stream KV_<prefix>_ops). Two arr deployments on one
//	               server use different prefixes.
//	replicas       replicas of every stream, consumer and bucket created
//	               (1 to 5, default 1). Existing ones are not changed.
//	ackWait        (alias defaultLease) the queue's default lease, and how
//	               long after a holder dies the server redelivers its
//	               message (a Go duration, default 30s). It is the work
//	               consumer's AckWait; the consumer is updated to it on open.
//	maxDeliveries  the queue dead-letters a message delivered that many
//	               times without an Ack (default 0: never).
//	creds          a NATS credentials file (JWT + nkey seed).
//	tls_ca         a PEM file of the CAs that verify the servers'
//	               certificates (default: the system's roots).
//	tls_cert       with tls_key: a PEM client certificate and its key,
//	tls_key        for servers that verify clients (mutual TLS).
//	tls_required   true: connect only with TLS. Any tls_ parameter, or
//	               the scheme tls:// ("tls://host:4222?…", the NATS
//	               clients' spelling), makes the connection require TLS
//	               1.2 or later, verifying the server's certificate; a
//	               server without TLS is then refused.
//
// Drivers opened by URL in one process share one connection per server
// list, credentials and TLS settings; it closes with the last of them. It reconnects
// forever.
//
// # Queue
//
// Messages of the work stream (WorkQueue retention, subject
// <prefix>.work.<id token>) are delivered by one durable pull consumer
// (explicit acks, AckWait = ackWait, no MaxDeliver: the driver
// dead-letters itself). The stream keeps at most one message per subject
// and refuses a second one (DiscardNewPerSubject), so an Enqueue of an ID
// that is queued or leased is refused by the server and is a no-op, even
// across processes and crashes, and once the message is acked the ID is
// free again. Publishes also carry a fresh Nats-Msg-Id.
//
// A lease is kept by the client: a timer per delivery sends InProgress
// every ackWait/3 while the delivery is held, and when the lease that
// Receive (or InProgress) asked for ends unsettled it naks the message
// (or dead-letters it at maxDeliveries). If the holding process dies, the
// server redelivers after ackWait. Attempt is the server's delivery count
// plus the attempts carried in an Arr-Base header by a message that went
// through the delay stream.
//
// Delays: a message enqueued with a Delay, or naked with a delay, is
// written to the delay stream (subject <prefix>.delay.<id token>, one per
// subject) with its due time; a mover goroutine in every open queue pulls
// from the delay stream's durable consumer, naks early messages with the
// remaining delay, and publishes due ones to the work stream before
// acking them. A delayed message is late by at most the mover's pull
// cycle (about 1s), or by 5s when it reached a mover that was just closed.
// An Enqueue checks the other stream first, so a duplicate of a delayed
// message is a no-op. A Nak with a delay that finds a copy of its message
// in the delay stream keeps that copy when it is not yet due (an earlier
// Nak whose ack was lost), and waits for the mover to ack it when it is
// due (it is the copy the naked delivery was moved from) before it writes
// its own and acks the delivery.
//
// Dead letters (Term, maxDeliveries) are written to the dead stream
// (limits retention, one per subject, newest kept), then removed from
// the work stream. An Enqueue of a dead letter's ID purges it and queues
// the message again.
//
// Stats: Ready is the consumer's undelivered messages, InFlight its
// delivered unacked ones (a message naked for immediate redelivery counts
// there until redelivered), Delayed and Dead the delay and dead streams'
// message counts. Close naks every delivery it holds, so that another
// receiver gets them at once.
//
// Costs: an Enqueue is two leader reads (the other stream, the dead
// stream) and a publish; Ack, Nak(0), InProgress and Term wait for the
// server's confirmation; a Nak with a delay and a Term are a publish and
// an ack.
//
// Limits: an Ack, Nak or Term that fails after the delivery was settled
// locally is not retried; the server redelivers the message after
// ackWait. An Ack sent by a process after its lease was lost on the
// server (a GC pause longer than ackWait) is not detected as
// ErrLeaseLost. A crash between the two writes of a delayed Nak or a
// Term leaves the message in both streams; the per-subject limit makes
// the mover drop the extra copy. A concurrent Enqueue and delayed Nak of
// one ID may leave it queued twice (at-least-once).
//
// # Operations store
//
// One KV bucket (<prefix>_ops, history 1, file storage) holds, per
// operation id token and idempotency key token:
//
//	o.<id>                 the operation, as JSON (every field, with the
//	                       problem extensions); Version is arr's counter
//	r.<id>                 the request, as JSON
//	k.<key>                the idempotency key: {id, done, at}
//	g.<id>                 tombstone: Unix nanoseconds until which Get says
//	                       ErrGone
//	x.<expires ns>.<id>    expiry index entry (no value)
//	t.<time ns>.<id>       purge entry: keys to purge at that time (the
//	                       tombstone, the delete markers of the operation
//	                       and key)
//	w.<owner>.<id>         owner index entry (no value), for List's owner
//	                       filter; the owner as a token (itself when it is
//	                       [A-Za-z0-9_-]+, else "=" and its base64url)
//	c.<id>                 callback index entry (no value): the operation
//	                       owes a callback (see "Callback outbox" below)
//
// Reads go to the stream leader (the bucket's direct gets are turned off),
// so a read sees every write acknowledged before it. Update is one
// revision-checked KV update; Create is: check the id (and tombstone),
// claim the idempotency key (KV create), put the request, the expiry
// entry, the owner entry and (when it owes a callback) the callback index
// entry, create the operation (KV create), mark the key done (revision
// checked). Updates never change the owner;
// DeleteExpired purges the owner entry with the operation's request. A concurrent Create with the same key waits for the claimer's
// operation and answers it; a claim whose operation does not appear
// within 10s (its Create died) is taken over with a revision check, and a
// claimer that was slower than that loses the key and deletes its
// operation when it marks the key. A crash inside Create can leave a
// request or an expiry entry without an operation (harmless: reached only
// through the operation, and purged by DeleteExpired respectively
// overwritten by a later Create of the id), an owner entry without an
// operation (skipped by List, which checks each operation's owner; a
// Create refused as ErrExists purges its entry) or a claimed key (taken
// over after 10s). Submit of an operation whose Create succeeded but whose
// Enqueue did not returns an error; there are no one-step writes
// (engine.Atomic): the core fails such an operation, or, for a retry, its
// janitor's sweep enqueues the lost message again.
//
// Cost: List lists the keys of every operation (names only, through an
// ephemeral ordered consumer) and then reads operations after the cursor
// until the page is full, filtering statuses as it reads: O(operations)
// per call, plus O(skipped) reads with a status filter. List with an owner
// asks the stream leader for the subjects under w.<owner>.> (stream info
// with a subject filter: no consumer, no message read) and reads those
// operations: O(the owner's operations). nats-server 2.10 and later find
// the subjects in a subject tree, so the cost does not depend on other
// owners' operations; 2.9 walks its in-memory map of every subject (it
// reads no message, but the walk grows with the store). DeleteExpired
// lists the expiry index (names only) and reads only candidates whose
// time has passed. There is no status index yet.
//
// # Callback outbox
//
// An operation's callbacks (its outbox) are fields of its record, so a
// transition and the callbacks it owes are one write. DueCallbacks finds
// the operations that owe one through the c.<id> index entries, a write of
// their own, kept so that no crash loses an owing operation from the
// index:
//
//   - Written ahead: every write of an operation that owes a callback
//     (Create, Update, TransitionOp) puts its entry first, and fails if
//     that put fails.
//   - Removed behind: a write that settles the last pending callback reads
//     the entry's revision before the operation write and, after it,
//     purges the entry through that revision only (a put since, by a later
//     write that owes again, is kept); best effort. DeleteExpired does the
//     same for the operations it deletes.
//   - Cleaned lazily: a crash or a failure between the two writes leaves a
//     stale entry (its operation owes nothing, or does not exist), which
//     DueCallbacks skips and removes. Before removing the entry of an
//     operation that owes nothing it rewrites the operation unchanged
//     (same bytes and Version, revision checked), so that a write in
//     progress that read the operation before, and put the entry, fails
//     its revision check and puts the entry again when it retries; such a
//     rewrite wakes the operation's watchers, which read it unchanged. The
//     entry of an operation that does not exist is kept for a minute, for
//     a Create in progress (one whose operation write takes more than 15s
//     puts the entry again after it); after that it is removed.
//
// So an operation that owes a callback always has its entry, except in
// one case: a Create whose operation write lands more than a minute
// after its entry (by the server's clock against the cleaning process's)
// and that then dies before it puts the entry again. Nothing repairs that
// entry. The rewrite guards against writes in other processes only as
// revision checks do (see "Clusters and nats-server versions").
//
// Cost: DueCallbacks asks the stream leader for the subjects under c.>
// (as List with an owner does) and reads every operation that owes a
// callback, due or not, whatever its limit: O(owing operations) reads per
// call. Only operations with an undelivered callback owe one, so these
// are few. A write that owes a callback costs one more put; one that
// settles the last costs a read and a purge.
//
// Watch registers a channel with the store's one KV watcher (an ordered
// consumer over o.>, headers only), started when the store opens: a Watch
// costs one leader read (the key's last sequence, so that an event the
// caller's next read already covers does not wake it) and no consumer. A
// reconnect wakes every watcher so that callers read again.
//
// # Clusters and nats-server versions
//
// nats-server before 2.9.21 checked a clustered (replicas > 1) stream's
// expected last subject sequence outside of Raft (nats-server#4320), so
// two concurrent revision-checked writes could both succeed. The store
// serializes its own revision-checked writes of a key within a process;
// writers in different processes racing on one operation need
// nats-server 2.9.21 or later with replicas > 1.
//
// # Durability
//
// Every write waits for the server's acknowledgement. A single
// nats-server fsyncs its file store only every two minutes by default,
// so a kill -9 or power loss of that server can lose acknowledged writes:
// run a single node with "jetstream { sync_interval: always }" (or
// replicas=3 on a cluster, where a write is acknowledged once a majority
// holds it).
package natsjs
