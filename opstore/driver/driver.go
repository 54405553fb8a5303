// Package driver defines the interface an operations store driver
// implements. Users use the portable type in package opstore; drivers live in
// the engine packages (embedded, mem, natsjs, postgres) and must pass the
// conformance suite in package opstore/opstoretest. What an engine does
// across ports (an operation and its queue message in one write) is
// package engine's, not this port's.
package driver

import (
	"context"
	"errors"
	"time"

	"github.com/arrhq/arr/operation"
)

// Errors a driver returns; they may be wrapped.
var (
	// ErrNotFound: no operation has that id (or it has been deleted, and
	// no tombstone of it is kept; see ErrGone).
	ErrNotFound = errors.New("opstore: operation not found")
	// ErrConflict: an Update's Version does not match the stored one.
	ErrConflict = errors.New("opstore: version conflict")
	// ErrExists: Create of an id that is already stored (or whose
	// tombstone is; see ErrGone).
	ErrExists = errors.New("opstore: operation already exists")
	// ErrGone: Get or GetRequest of an id whose operation DeleteExpired
	// deleted and whose tombstone is still kept (see Store.DeleteExpired).
	// It is distinct from ErrNotFound: errors.Is(err, ErrNotFound) is false
	// for it, so a caller that tells the two apart (410 against 404) checks
	// both.
	ErrGone = errors.New("opstore: operation expired and deleted")
)

// ListOptions selects and pages operations for List.
type ListOptions struct {
	// Status, when not empty, keeps only operations in one of these states.
	Status []operation.Status
	// Owner, when not empty, keeps only the operations whose Owner it is
	// (compared byte for byte; any UTF-8 string, NUL included, is an
	// owner). Drivers index owners: a page costs the same whatever the
	// number of other owners' operations. With Status as well, both
	// filters apply; such a page may cost as much as the owner's
	// operations in other states.
	Owner string
	// After, when not empty, is the cursor returned by the previous page:
	// List returns operations whose ID sorts after it.
	After string
	// Limit is the page size; drivers treat Limit <= 0 as 100.
	Limit int
}

// Store is an operations store.
//
// Every method is safe for concurrent use. Every write is durable when it
// returns nil: it survives a kill -9 of the process (and, for drivers that
// say so, a power loss).
type Store interface {
	// Create stores op with Version 1, and req (nil: no request is kept;
	// GetRequest then answers ErrNotFound), in one atomic durable write.
	// From then until DeleteExpired deletes it, an operation with an Owner
	// is in List's pages for that Owner, and in no other owner's.
	//
	// If op.IdempotencyKey is not empty and another operation already holds
	// that key, nothing is written and Create returns that operation and
	// created == false. Otherwise it returns a copy of op as stored and
	// created == true. The stored ID is op.ID, except that a driver whose
	// idempotency key and operation are separate writes may store the
	// operation under the id a failed earlier Create claimed the key for
	// (so that that Create's late write cannot make a second operation);
	// callers use the returned operation's ID. Creating an ID that already exists, or that has a
	// tombstone (see DeleteExpired), is ErrExists.
	Create(ctx context.Context, op *operation.Operation, req *operation.Request) (stored *operation.Operation, created bool, err error)

	// Get returns the operation, or ErrGone while the id has a tombstone
	// (see DeleteExpired), or ErrNotFound.
	Get(ctx context.Context, id string) (*operation.Operation, error)

	// GetRequest returns the request stored with the operation, or ErrGone
	// while the id has a tombstone, or ErrNotFound.
	GetRequest(ctx context.Context, id string) (*operation.Request, error)

	// Update replaces the stored operation with op if the stored Version
	// equals op.Version, and then stores Version+1 and sets op.Version to it.
	// A mismatch is ErrConflict; a missing operation is ErrNotFound (also
	// for an id with a tombstone: only Get and GetRequest say ErrGone). The
	// idempotency key and the owner of an operation never change: a
	// different IdempotencyKey or Owner in op is ignored and the stored one
	// kept (an operation created without an owner keeps none). The same
	// holds for every other write of an existing operation (Transitioner,
	// LazyUpdater, engine.Atomic's TransitionEnqueue).
	Update(ctx context.Context, op *operation.Operation) error

	// List returns operations in ascending ID order (creation order) that
	// match opts, and the cursor for the next page ("" on the last page).
	List(ctx context.Context, opts ListOptions) (ops []*operation.Operation, next string, err error)

	// DeleteExpired deletes up to limit operations whose ExpiresAt is not
	// zero and is before now, with their requests and idempotency keys, and
	// returns the operations it deleted, as they were stored (so that the
	// caller can delete their results). A limit <= 0 deletes nothing.
	//
	// Tombstones: when a deleted operation's TombstoneUntil is after its
	// ExpiresAt and after now, DeleteExpired keeps a tombstone of its id,
	// written with the deletion, until TombstoneUntil: until then Get and
	// GetRequest of the id answer ErrGone instead of ErrNotFound, and
	// Create of the id answers ErrExists. Otherwise no tombstone is kept.
	//
	// Each call also purges the tombstones whose TombstoneUntil is before
	// now, limit of them (all of them when there are fewer). They are
	// neither returned nor counted toward the limit of operations, so a
	// caller that calls at least once per period, and again while a call
	// returns limit operations, purges at least as many tombstones as it
	// makes. A tombstone whose time has passed but that is not purged yet
	// may answer either ErrGone or ErrNotFound (drivers may compare
	// TombstoneUntil with their own clock). The deletion of an operation
	// is a change for Watch; the purge of its tombstone need not be.
	DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error)

	// Watch returns a channel that receives a value (coalesced: the channel
	// has a buffer of one and sends never block) after every committed
	// change of the operation id, including its deletion, until stop is
	// called. Changes committed by any process that shares the store are
	// seen. A caller subscribes first and then reads the operation, so that
	// no change is missed between the read and the wait. Watching an id
	// that does not exist yet is allowed: its creation is a change.
	Watch(ctx context.Context, id string) (changed <-chan struct{}, stop func(), err error)

	// Close releases the store. Operations after Close fail.
	Close() error
}

// LazyUpdater is implemented by stores that can apply an Update without
// waiting for it to be durable: the update is visible at once, with the
// same version check, and becomes durable with the store's next durable
// write; a crash before that may lose it. The worker uses it for writes
// whose loss a redelivery repairs: the running state and progress reports.
type LazyUpdater interface {
	UpdateLazy(ctx context.Context, op *operation.Operation) error
}

// Transitioner is implemented by stores that can read, change and write
// an operation in one step under their own lock, saving the second read of
// a version-checked Update. TransitionOp calls change on a copy of the
// stored operation (change must not call the store), writes the result
// unless change returns an error (which it returns with the changed copy),
// lazily (see LazyUpdater) when lazy is set, and returns the written
// operation with its new Version (and the stored ID, IdempotencyKey and
// Owner, whatever change set). It returns ErrNotFound for an unknown id.
type Transitioner interface {
	TransitionOp(ctx context.Context, id string, change func(*operation.Operation) error, lazy bool) (*operation.Operation, error)
}

// Syncer is implemented by stores with lazy writes (LazyUpdater,
// Transitioner with lazy set): Sync makes every write applied before it
// durable. The worker syncs the lazy running state of an attempt that runs
// for a while, so that a crash during it is recorded as an interrupted
// attempt.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Outbox is implemented by every store: it finds the operations whose
// callbacks are due. Callbacks live in the operation record
// (Operation.Callbacks), so the transition that owes one and its outbox
// entry are one write, atomic on every store; Outbox is the index over
// Operation.CallbackDueAt that finds them again.
type Outbox interface {
	// DueCallbacks returns up to limit operations whose CallbackDueAt is
	// not zero and not after now, earliest CallbackDueAt first (ties in
	// any order). Every write of an operation (Create, Update, UpdateLazy,
	// TransitionOp, engine.Atomic's writes) keeps the index current, and
	// DeleteExpired removes its operations from it. A driver whose index
	// is a write of its own, apart from the operation's (NATS), says in
	// its package documentation how an index entry a crash lost is
	// repaired. A limit <= 0 returns nothing.
	DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error)
}
