// Package operation holds the record of one asynchronous operation: its state
// machine, the request that started it, where its result is and, when it
// failed, the RFC 9457 problem that says why.
//
// These are plain data types shared by every port (opstore, queue,
// resultstore) and every driver; they hold no behaviour beyond validation.
package operation

import (
	"net/http"
	"time"
)

// Status is the state of an operation. The only transitions are
//
//	pending → running → succeeded | failed | canceled
//	running → pending              (a retry after a failed attempt)
//	pending → canceled
//	failed  → pending              (an explicit retry)
type Status string

// The states of an operation.
const (
	Pending   Status = "pending"
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Canceled  Status = "canceled"
)

// Statuses lists every valid status, in state-machine order.
var Statuses = []Status{Pending, Running, Succeeded, Failed, Canceled}

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case Pending, Running, Succeeded, Failed, Canceled:
		return true
	}
	return false
}

// Terminal reports whether s is a final state: no handler will run again
// unless the operation is explicitly retried.
func (s Status) Terminal() bool { return s == Succeeded || s == Failed || s == Canceled }

// Operation is the stored record of one operation. Drivers store it whole
// and return it whole; they interpret only ID, Status, Version, ExpiresAt
// and IdempotencyKey.
type Operation struct {
	// ID is a UUIDv7 in its canonical 36-character form; it orders by
	// creation time.
	ID string `json:"id"`
	// Route names the configured route that accepted the request and whose
	// handler runs it.
	Route  string `json:"route"`
	Status Status `json:"status"`

	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`

	// PercentComplete (0–100) and Message are the handler's last progress
	// report.
	PercentComplete int    `json:"percentComplete"`
	Message         string `json:"message,omitempty"`

	// Attempts counts the times a handler started on this operation.
	Attempts int `json:"attempts"`

	// Error is set when Status is Failed or Canceled, and holds the last
	// attempt's error while a retry is pending.
	Error *Problem `json:"error,omitempty"`

	// Result is set when Status is Succeeded.
	Result *Result `json:"result,omitempty"`

	// IdempotencyKey, when not empty, is unique among the operations in a
	// store; RequestHash is the digest of the request that first used it.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	RequestHash    string `json:"requestHash,omitempty"`

	// ExpiresAt, when not zero, is when the store may delete the operation,
	// its request and its idempotency key.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`

	// Meta holds route-specific properties (the seed's RequestSubmittedAt
	// and RequestStatusURL, for example).
	Meta map[string]string `json:"meta,omitempty"`

	// Version is set by the store: 1 on create, incremented by every update.
	// Updates are conditional on it.
	Version int64 `json:"version"`
}

// Clone returns a deep copy of o.
func (o *Operation) Clone() *Operation {
	if o == nil {
		return nil
	}
	c := *o
	if o.Error != nil {
		e := *o.Error
		c.Error = &e
	}
	if o.Result != nil {
		r := *o.Result
		c.Result = &r
	}
	if o.Meta != nil {
		c.Meta = make(map[string]string, len(o.Meta))
		for k, v := range o.Meta {
			c.Meta[k] = v
		}
	}
	return &c
}

// Request is what the client sent to start an operation. The handler gets
// it; the store keeps it until the operation expires so that the operation
// can be run again.
type Request struct {
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawQuery string      `json:"rawQuery,omitempty"`
	Header   http.Header `json:"header,omitempty"`
	Body     []byte      `json:"body,omitempty"`
}

// Result says where a succeeded operation's result is kept.
type Result struct {
	// Key is the result's key in the result store.
	Key         string `json:"key"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	// ETag is the result store's entity tag for the bytes, when it has one.
	ETag string `json:"etag,omitempty"`
}

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// Error makes a Problem usable as an error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}
