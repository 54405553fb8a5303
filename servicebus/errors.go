package servicebus

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/arrhq/arr/queue/driver"
)

// Error is the error of a Service Bus call the queue made. It wraps the
// SDK's error and, for a lost lock, driver.ErrLeaseLost.
type Error struct {
	Op   string // "send", "schedule", "receive", "complete", "abandon", "dead-letter", "renew", "stats"
	ID   string // the message's ID, if the call was about one
	Code azservicebus.Code
	Err  error
}

func (e *Error) Error() string {
	s := "servicebus: " + e.Op
	if e.ID != "" {
		s += " " + e.ID
	}
	if e.Code == azservicebus.CodeLockLost {
		s += ": " + driver.ErrLeaseLost.Error()
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the SDK's error, and driver.ErrLeaseLost for a lost lock.
func (e *Error) Unwrap() []error {
	if e.Code == azservicebus.CodeLockLost {
		return []error{driver.ErrLeaseLost, e.Err}
	}
	return []error{e.Err}
}

// Retryable reports whether the same call may succeed if made again: the
// connection was lost, or the service timed out. A lost lock, a missing
// queue, a refused credential, a closed client or a bad message will not
// get better by retrying.
func (e *Error) Retryable() bool {
	return e.Code == azservicebus.CodeConnectionLost || e.Code == azservicebus.CodeTimeout
}

// IsRetryable reports whether err is a retryable *Error (see
// Error.Retryable).
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable()
}

// classify wraps an SDK error of op in *Error (nil stays nil; the
// caller's context errors are returned as they are).
func classify(op, id string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if id != "" {
			return fmt.Errorf("servicebus: %s %s: %w", op, id, err)
		}
		return err
	}
	e := &Error{Op: op, ID: id, Err: err}
	var se *azservicebus.Error
	if errors.As(err, &se) {
		e.Code = se.Code
	}
	return e
}
