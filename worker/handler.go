// Package worker is the delivery loop: it takes deliveries from the queue,
// runs the route's Handler under a lease and a timeout, reports each
// attempt's outcome to the core (package arr), which decides the
// operation's next state, and settles the delivery as the core says.
//
// The handler types live in package arr; the names here are the same
// types, so that handlers written against package worker keep compiling.
package worker

import arr "github.com/arrhq/arr"

// The handler API: see package arr.
type (
	Task        = arr.Task
	Progress    = arr.Progress
	Result      = arr.Result
	Handler     = arr.Handler
	HandlerFunc = arr.HandlerFunc
)

// Echo is arr.Echo, the seed's handler.
var Echo = arr.Echo

// Permanent, IsPermanent, RetryAfter and RetryDelay: see package arr.
var (
	Permanent   = arr.Permanent
	IsPermanent = arr.IsPermanent
	RetryAfter  = arr.RetryAfter
	RetryDelay  = arr.RetryDelay
)
