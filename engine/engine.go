// Package engine is where the ports meet the engines that implement them.
// An engine (the embedded Pebble database, PostgreSQL, NATS JetStream, a
// directory of files, an S3 bucket, memory) is opened once from a URL and
// hands out the ports it implements — operations store, queue, result
// store — with the facts about what it can do (Caps) decided when it is
// opened. Two ports opened from URLs that name the same engine share it.
package engine

import (
	"context"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/queue"
)

// Atomic is what an engine that holds both an operations store and a queue
// can do in one durable write. The core uses it when the operations store
// and the queue it is given are the same engine's.
type Atomic interface {
	// SubmitAtomic is the store's Create plus the Enqueue of msg, in one
	// durable write, so that an operation is never stored without its
	// queue message. When op's idempotency key is held, nothing is written
	// and the holder is returned with created == false.
	SubmitAtomic(ctx context.Context, op *operation.Operation, req *operation.Request, msg queue.Message) (stored *operation.Operation, created bool, err error)
	// TransitionEnqueue is the store's Transition (change applied to the
	// current operation; an error from change writes nothing and is
	// returned with the changed copy) plus the Enqueue of msg(op) for the
	// changed operation, in one durable write.
	TransitionEnqueue(ctx context.Context, id string, change func(*operation.Operation) error, msg func(*operation.Operation) queue.Message) (*operation.Operation, error)
}
