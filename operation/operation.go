// Package operation holds the record of one asynchronous operation: its state
// machine, the request that started it, where its result is and, when it
// failed, the RFC 9457 problem that says why.
//
// These are plain data types shared by every port (opstore, queue,
// resultstore) and every driver; they hold no behaviour beyond validation.
package operation

import (
	"encoding/json"
	"net/http"
	"sort"
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
// and return it whole; they interpret only ID, Status, Version, ExpiresAt,
// IdempotencyKey and Owner.
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
	// AttemptStartedAt is when the last attempt (number Attempts) started.
	AttemptStartedAt time.Time `json:"attemptStartedAt,omitzero"`
	// Failures and Interruptions count the attempts since the operation was
	// submitted or last retried explicitly that ended in a handler error or
	// timeout (Failures), or that a worker crash or lost lease cut short
	// (Interruptions); each has its own limit.
	Failures      int `json:"failures,omitempty"`
	Interruptions int `json:"interruptions,omitempty"`
	// History records the attempts that ended, oldest first, up to
	// MaxHistory of them (older ones are dropped first).
	History []Attempt `json:"history,omitempty"`
	// HistoryDropped counts the attempts left out of History, by
	// MaxHistory or by the core's bound on its bytes.
	HistoryDropped int `json:"historyDropped,omitempty"`

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
	// TombstoneUntil, when after ExpiresAt, is how long the store remembers
	// the id of the deleted operation: until then Get answers ErrGone
	// instead of ErrNotFound.
	TombstoneUntil time.Time `json:"tombstoneUntil,omitzero"`

	// Owner is the principal that submitted the operation and Tenant its
	// tenant (see arr.Caller); empty for an operation a program submitted
	// without a caller. Stores index Owner for List.
	Owner  string `json:"owner,omitempty"`
	Tenant string `json:"tenant,omitempty"`

	// CallbackURL is the callback target the request named (X-Callback-Url),
	// "" when it named none. The route's own targets are the route's.
	CallbackURL string `json:"callbackUrl,omitempty"`

	// Callbacks is the operation's outbox: one entry per callback a
	// transition owed, written in the same write as that transition, and
	// kept (delivered, failed or pending) for the operation's life.
	Callbacks []Callback `json:"callbacks,omitempty"`

	// CallbackDueAt is the earliest NextAt of the pending Callbacks; zero
	// when none is pending. Stores index it (driver.Outbox.DueCallbacks).
	CallbackDueAt time.Time `json:"callbackDueAt,omitzero"`

	// RequestBytes is the size of the stored request as arr counts it
	// for its stored-bytes budgets (arr.RequestBytes); 0 for an operation
	// stored before arr recorded it.
	RequestBytes int64 `json:"requestBytes,omitempty"`

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
	c.Error = o.Error.Clone()
	if o.Result != nil {
		r := *o.Result
		r.Header = o.Result.Header.Clone()
		c.Result = &r
	}
	if o.History != nil {
		c.History = make([]Attempt, len(o.History))
		for i, a := range o.History {
			c.History[i] = a
			c.History[i].Error = a.Error.Clone()
		}
	}
	if o.Callbacks != nil {
		c.Callbacks = append([]Callback(nil), o.Callbacks...)
	}
	if o.Meta != nil {
		c.Meta = make(map[string]string, len(o.Meta))
		for k, v := range o.Meta {
			c.Meta[k] = v
		}
	}
	return &c
}

// Callback states.
const (
	// CallbackPending: an attempt is due at NextAt (or one is in flight).
	CallbackPending = "pending"
	// CallbackDelivered: the target answered 2xx.
	CallbackDelivered = "delivered"
	// CallbackFailed: no attempt will be made any more (out of time or
	// attempts, refused by arr's target rule, or the target answered 410).
	CallbackFailed = "failed"
)

// Callback is one callback an operation owes, or owed: an outbox entry. It
// holds no body: the event is rendered from the operation at each attempt,
// so that its links are fresh, under the same ID.
type Callback struct {
	// ID is the event's id (CloudEvents id, Standard Webhooks webhook-id),
	// the same on every attempt.
	ID string `json:"id"`
	// URL is the target.
	URL string `json:"url"`
	// Event is the status the operation entered (succeeded, failed, …).
	Event string `json:"event"`
	// Secret names the secret that signs it: "route:NAME" or
	// "principal:NAME".
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"createdAt"`
	State     string    `json:"state"`
	// Attempts is the number of attempts started.
	Attempts int `json:"attempts"`
	// NextAt is when the next attempt is due (pending only).
	NextAt time.Time `json:"nextAt,omitzero"`
	// LastStatus is the HTTP status of the last answer (0: none).
	LastStatus int `json:"lastStatus,omitempty"`
	// LastError says why the last attempt did not deliver.
	LastError   string    `json:"lastError,omitempty"`
	LastAt      time.Time `json:"lastAt,omitzero"`
	DeliveredAt time.Time `json:"deliveredAt,omitzero"`
	// RedeliveredAt is when a redelivery made it pending again (zero: it
	// was not): its attempts' time limit counts from then.
	RedeliveredAt time.Time `json:"redeliveredAt,omitzero"`
}

// DueAt is the earliest NextAt of cbs' pending entries, zero when none is
// pending: what Operation.CallbackDueAt must be.
func DueAt(cbs []Callback) time.Time {
	var due time.Time
	for _, c := range cbs {
		if c.State == CallbackPending && (due.IsZero() || c.NextAt.Before(due)) {
			due = c.NextAt
		}
	}
	return due
}

// MaxHistory bounds Operation.History.
const MaxHistory = 20

// Attempt outcomes.
const (
	// OutcomeFailed: the handler returned an error or timed out.
	OutcomeFailed = "failed"
	// OutcomeInterrupted: the worker died or lost its lease mid-attempt.
	OutcomeInterrupted = "interrupted"
	// OutcomeSucceeded and OutcomeCanceled end the operation.
	OutcomeSucceeded = "succeeded"
	OutcomeCanceled  = "canceled"
)

// Attempt is one run of a handler on an operation.
type Attempt struct {
	// Number is the attempt's number: 1 for the first start.
	Number    int       `json:"number"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	EndedAt   time.Time `json:"endedAt"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// Error says why the attempt did not succeed.
	Error *Problem `json:"error,omitempty"`
}

// AddAttempt appends a to o.History, dropping the oldest entries beyond
// MaxHistory (counted in HistoryDropped).
func (o *Operation) AddAttempt(a Attempt) {
	o.History = append(o.History, a)
	if n := len(o.History) - MaxHistory; n > 0 {
		o.History = append(o.History[:0:0], o.History[n:]...)
		o.HistoryDropped += n
	}
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
	// Host is the Host the client asked for, RemoteAddr the client's
	// address and TLS whether it came over TLS: what a forward handler needs
	// for X-Forwarded-Host, -For and -Proto.
	Host       string `json:"host,omitempty"`
	RemoteAddr string `json:"remoteAddr,omitempty"`
	TLS        bool   `json:"tls,omitempty"`
}

// Result says where a succeeded operation's result is kept.
type Result struct {
	// Key is the result's key in the result store.
	Key         string `json:"key"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	// ETag is the result store's entity tag for the bytes, when it has one.
	ETag string `json:"etag,omitempty"`
	// StatusCode and Header, when set, are the HTTP status and end-to-end
	// headers that came with the result (a forward handler's upstream
	// response).
	StatusCode int         `json:"statusCode,omitempty"`
	Header     http.Header `json:"header,omitempty"`
}

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Extensions are further members of the problem object (RFC 9457
	// §3.2), e.g. an upstream's status; they must not reuse the names above.
	Extensions map[string]any `json:"-"`
}

// Clone returns a deep copy of p (Extensions values are copied shallowly).
func (p *Problem) Clone() *Problem {
	if p == nil {
		return nil
	}
	c := *p
	if p.Extensions != nil {
		c.Extensions = make(map[string]any, len(p.Extensions))
		for k, v := range p.Extensions {
			c.Extensions[k] = v
		}
	}
	return &c
}

type problemJSON Problem

// MarshalJSON writes the members and the extensions in one object.
func (p Problem) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(problemJSON(p))
	if err != nil || len(p.Extensions) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(p.Extensions))
	for k := range p.Extensions {
		switch k {
		case "type", "title", "status", "detail", "instance":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = b[:len(b)-1]
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(p.Extensions[k])
		if err != nil {
			return nil, err
		}
		b = append(b, ',')
		b = append(b, kb...)
		b = append(b, ':')
		b = append(b, vb...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads the members and keeps the other keys as Extensions.
func (p *Problem) UnmarshalJSON(b []byte) error {
	var pj problemJSON
	if err := json.Unmarshal(b, &pj); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range []string{"type", "title", "status", "detail", "instance"} {
		delete(all, k)
	}
	*p = Problem(pj)
	if len(all) > 0 {
		p.Extensions = all
	}
	return nil
}

// Error makes a Problem usable as an error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}
