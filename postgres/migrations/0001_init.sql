-- 0001: the operations store and the queue. Applied with search_path set
-- to the target schema (see migrate.go); every name is prefixed with arr_
-- so that the tables can share a schema with an application's own.

-- One row per operation. doc is the JSON of operation.Operation without
-- its Version and IdempotencyKey, which are the columns; status, expires_at
-- and tombstone_until repeat fields of doc for the queries.
CREATE TABLE arr_operations (
    id              text COLLATE "C" PRIMARY KEY,
    version         bigint NOT NULL,
    status          text NOT NULL,
    idempotency_key text COLLATE "C" UNIQUE,
    expires_at      timestamptz,
    tombstone_until timestamptz,
    doc             json NOT NULL
);
-- List with a status filter walks one (status, id) range per status.
CREATE INDEX arr_operations_status_id ON arr_operations (status, id);
-- DeleteExpired walks expires_at up to its now.
CREATE INDEX arr_operations_expires_at ON arr_operations (expires_at) WHERE expires_at IS NOT NULL;

-- The request each operation was submitted with; deleted with it.
CREATE TABLE arr_requests (
    id          text COLLATE "C" PRIMARY KEY REFERENCES arr_operations (id) ON DELETE CASCADE,
    method      text NOT NULL,
    path        text NOT NULL,
    raw_query   text NOT NULL,
    header      json,
    body        bytea,
    host        text NOT NULL,
    remote_addr text NOT NULL,
    tls         boolean NOT NULL
);

-- Ids of deleted operations that answer ErrGone until "until".
CREATE TABLE arr_tombstones (
    id    text COLLATE "C" PRIMARY KEY,
    until timestamptz NOT NULL
);
CREATE INDEX arr_tombstones_until ON arr_tombstones (until);

-- The work queue: one row per message not yet acked. visible_at is when
-- the message may be delivered next: its enqueue delay or Nak backoff when
-- lease_token is null, the end of its lease when not. attempt counts the
-- deliveries so far. Dead letters stay, with dead set, until the id is
-- enqueued again.
CREATE TABLE arr_queue (
    id          text COLLATE "C" PRIMARY KEY,
    body        bytea NOT NULL,
    attempt     integer NOT NULL DEFAULT 0,
    visible_at  timestamptz NOT NULL,
    lease_token uuid,
    dead        boolean NOT NULL DEFAULT false,
    dead_reason text,
    dead_at     timestamptz,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
-- Receive takes the earliest visible live messages.
CREATE INDEX arr_queue_visible_at ON arr_queue (visible_at) WHERE NOT dead;

-- The sequence Store.Sync writes. setval writes a WAL record and
-- assigns the transaction an xid, so its synchronous commit flushes the
-- WAL up to its commit record, and with it every asynchronous (lazy)
-- commit before it. A transaction that only takes an xid writes no WAL
-- and commits without a flush. Nothing reads the sequence's value.
CREATE SEQUENCE arr_sync;
