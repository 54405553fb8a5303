// Package mem is an in-memory engine for arr: an operations store, a work
// queue and a result store that live in the process's memory, for tests
// and for embedding arr in a program that needs no durability. Nothing is
// durable: a process exit loses everything, and so does closing the last
// handle on an engine.
//
// It passes the conformance suites of the three ports (opstore/opstoretest,
// queue/queuetest, resultstore/resultstoretest) and implements the
// optional opstore/driver.Transitioner, and the engine's one-step writes
// of an operation and its queue message (engine.Atomic). It has no lazy writes
// (LazyUpdater, LazyAcker, LazyPutter): with nothing durable there is
// nothing to defer.
//
// # URLs
//
// Importing the package registers the engine scheme "mem" with
// engine.Register (engine.Open hands out the three ports of one URL):
//
//	mem:                      the engine named "" (the process's default)
//	mem:NAME                  the engine named NAME
//	mem:NAME?maxDeliveries=5&defaultLease=1m
//	mem:NAME?prefix=/results/&maxURLLifetime=24h
//
// Every store, queue and result store opened from URLs with the same name
// shares one engine. Engines are reference counted: each handle holds a
// reference until its Close, and when the last one goes the engine and its
// data go with it; a later URL naming it starts an empty engine. To keep
// an engine's data across handles that come and go (as the conformance
// suites' reopen tests do), hold a reference with Open.
//
// Query options, all optional; every opener accepts every option (so one
// URL can serve all three ports) and applies those of its port:
//
//   - maxDeliveries (queue): dead-letter a message once it has been
//     delivered this many times without an Ack; default 0, never.
//   - defaultLease (queue): the lease of a Receive or InProgress called
//     with a lease <= 0, a Go duration; default 30s.
//   - prefix (results): the URL path the result store's Handler serves
//     signed URLs under; default /blobs/.
//   - maxURLLifetime (results): the longest lifetime of a signed URL, a Go
//     duration; default 7 days (168h).
//
// Unknown options, and options given twice, are an error. The queue
// options belong to the handle that was opened with them, not to the
// engine: each queue handle dead-letters by its own maxDeliveries the
// messages it would deliver again or that its deliveries Nak.
//
// # Queue
//
// Delivery is at least once, under leases, as the queue port describes.
// Receives block without polling: an Enqueue or a Nak wakes them, and a
// timer set for the next known event (a delayed message becoming ready, a
// lease expiring) does the rest. Closing a queue handle ends its blocked
// Receives with queue/driver.ErrClosed and gives the leases of its
// deliveries back to the queue at once, as a restart of a durable engine
// drops them: the messages are delivered again with their attempt counts
// kept, and the old deliveries can no longer be settled.
//
// # Results
//
// Results are kept whole in memory. Keys are those the file driver
// accepts (fileresult.ValidateKey). Signed URLs have the file driver's
// form and are served by the result store's Handler (it implements
// resultstore/driver.Server), signed with a keyring the engine makes from
// crypto/rand when it starts and never writes anywhere: a URL is valid on
// every handle of its engine, until it expires or the engine goes.
//
// Handles are safe for concurrent use. The engine runs no goroutines of
// its own; a Receive waiting when its handle closes returns at once.
package mem
