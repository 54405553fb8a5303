package arr

import (
	"errors"

	"github.com/arrhq/arr/queue"
)

// Message is what arr puts on the queue for an operation: its id (the
// queue message's ID, so that enqueuing it again is a no-op while it is
// queued) and its route's name, so that a worker can apply the route's
// concurrency limit before it reads the operation.
//
// The body's wire format, owned by this file alone:
//
//	version 1: 0x01 route-name
//	legacy:    route-name (no version byte; what arr wrote before
//	           version 1, still read)
//
// A route name never starts with 0x01 (names are letters, digits, '.',
// '_' and '-'), so the two cannot be confused.
type Message struct {
	ID    string
	Route string
}

const messageV1 = 0x01

// errMessageVersion: a body of a later format than this build reads.
var errMessageVersion = errors.New("arr: queue message of an unknown format version")

// Encode returns the queue message of m.
func (m Message) Encode() queue.Message {
	b := make([]byte, 0, 1+len(m.Route))
	b = append(b, messageV1)
	b = append(b, m.Route...)
	return queue.Message{ID: m.ID, Body: b}
}

// DecodeMessage reads a queue message arr wrote.
func DecodeMessage(q queue.Message) (Message, error) {
	b := q.Body
	switch {
	case len(b) == 0:
		return Message{ID: q.ID}, nil
	case b[0] == messageV1:
		return Message{ID: q.ID, Route: string(b[1:])}, nil
	case b[0] < 0x20:
		return Message{ID: q.ID}, errMessageVersion
	}
	return Message{ID: q.ID, Route: string(b)}, nil
}
