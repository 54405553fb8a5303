package arr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/arrhq/arr/operation"
)

// Task is what a handler gets: the operation's identity and the request
// that started it.
type Task struct {
	// ID is the operation id.
	ID string
	// Route is the name of the route that accepted the request.
	Route string
	// Attempt is 1 on the first run and grows with each retry.
	Attempt int
	// Request is the client's request: method, path, query, headers, body.
	Request *operation.Request
}

// Header returns the request's headers (never nil).
func (t *Task) Header() http.Header {
	if t.Request == nil || t.Request.Header == nil {
		return http.Header{}
	}
	return t.Request.Header
}

// Progress lets a handler report how far it has got; the status monitor,
// long-poll waiters and event streams see the report.
type Progress interface {
	// Report records percent (clamped to 0–100) and message. It is cheap
	// to call often: reports are coalesced and written at most a few times
	// a second.
	Report(percent int, message string)
}

// Result is what a handler returns on success: Body, or Reader when the
// result is streamed (a Reader that is also an io.Closer is closed). The
// worker stores it in the result store; a result larger than the pool's
// MaxResultBytes fails the attempt permanently.
type Result struct {
	// ContentType of the bytes. Default application/octet-stream.
	ContentType string
	Body        []byte
	Reader      io.Reader
	// StatusCode and Header, when set, are kept with the result and shown in
	// the status monitor (the forward handler's upstream status and
	// headers).
	StatusCode int
	Header     http.Header
}

// Handler runs one operation. ctx is canceled when the operation is
// canceled, when its attempt times out, or when the worker shuts down; a
// handler should return promptly then. An error makes the attempt fail: the
// operation is retried with backoff until its attempts run out, unless the
// error is Permanent. When the error is (or wraps) an *operation.Problem,
// that problem is what the status monitor shows; otherwise it is a
// urn:arr:problem:handler-failed problem whose detail is the error's text.
type Handler interface {
	Process(ctx context.Context, t *Task, p Progress) (*Result, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Task, p Progress) (*Result, error)

// Process calls f.
func (f HandlerFunc) Process(ctx context.Context, t *Task, p Progress) (*Result, error) {
	return f(ctx, t, p)
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the operation fails at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as worth retrying no sooner than delay from now (an
// upstream's Retry-After, say): the next attempt waits for the longer of
// delay and the route's backoff.
func RetryAfter(err error, delay time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err, delay}
}

// RetryDelay returns the delay err was marked with by RetryAfter.
func RetryDelay(err error) (time.Duration, bool) {
	var r retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// Echo is the seed's handler: the result is the request body, with the
// request's Content-Type (application/octet-stream when it had none).
var Echo Handler = HandlerFunc(func(ctx context.Context, t *Task, p Progress) (*Result, error) {
	ct := t.Header().Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	var body []byte
	if t.Request != nil {
		body = t.Request.Body
	}
	return &Result{ContentType: ct, Body: body}, nil
})
