package arr

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/webhook"
)

// Callbacks: a transition that owes a callback writes its outbox entry
// into the operation in the same write (Operation.Callbacks, indexed by
// CallbackDueAt), so a crash between the transition and the delivery
// loses nothing. A dispatcher (package callback) finds the due entries
// (DueCallbacks), claims one attempt (ClaimCallback), sends it and
// records the outcome (RecordCallback). Delivery is at-least-once: a
// dispatcher that dies after sending leaves the entry due again once its
// claim lapses, and it is sent again under the same id.

// CallbackTarget is a callback every operation of a route makes.
type CallbackTarget struct {
	// URL is the target: an absolute http or https URL.
	URL string
	// Every calls the target on every change of the operation's status
	// (pending, running, and the terminal one); otherwise only when the
	// operation finishes (succeeded, failed or canceled).
	Every bool
}

// TargetPolicy says which callback targets a request may name
// (X-Callback-Url); webhook.AllowList is one.
type TargetPolicy interface {
	Names(u *url.URL) bool
}

// DefaultMaxCallbacks bounds the callbacks an operation keeps
// (Config.MaxCallbacks).
const DefaultMaxCallbacks = 32

// MaxCallbackURLBytes bounds a callback URL.
const MaxCallbackURLBytes = webhook.MaxURLLength

// Errors of a Submission's CallbackURL; compare with errors.Is.
var (
	// ErrBadCallbackURL: not an absolute http or https URL without user
	// information or fragment, of at most MaxCallbackURLBytes.
	ErrBadCallbackURL = errors.New("arr: bad callback URL")
	// ErrCallbackNotAllowed: the route does not let a request name that
	// target (Route.CallbackRequests, Config.CallbackRequests).
	ErrCallbackNotAllowed = errors.New("arr: the route takes no callback to that target")
	// ErrCallbackNotDue: ClaimCallback of a callback that is not pending
	// and due (delivered, given up, or claimed by another dispatcher).
	ErrCallbackNotDue = errors.New("arr: callback not due")
)

// ParseCallbackURL checks a callback URL (webhook.CheckURL: absolute
// http or https, a host, no user information, no fragment, at most
// MaxCallbackURLBytes). It says nothing of whether the target may be
// called (see TargetPolicy, and the sender's address rule).
func ParseCallbackURL(raw string) (*url.URL, error) {
	u, err := webhook.CheckURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCallbackURL, err)
	}
	return u, nil
}

// checkCallback checks the callback URL of a submission to route.
func (c *Client) checkCallback(route, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := ParseCallbackURL(raw)
	if err != nil {
		return err
	}
	if p := c.policy(route).requests; p == nil || !p.Names(u) {
		return fmt.Errorf("%w: %s", ErrCallbackNotAllowed, u.Host)
	}
	return nil
}

// RouteSecretScope is the scope of the secret that signs a route's
// callbacks, and PrincipalSecretScope that of the secret that signs the
// callbacks the principal's requests name: each route and each principal
// has its own, so that no caller can sign for another.
func RouteSecretScope(route string) string { return "route:" + route }

// PrincipalSecretScope: see RouteSecretScope. An operation without an
// owner is anonymous's (see visible).
func PrincipalSecretScope(principal string) string {
	if principal == "" {
		principal = Anonymous
	}
	return "principal:" + principal
}

// owe adds the callbacks op owes for its change from status from, due at
// now, and sets its CallbackDueAt. It is called in the change of every
// transition (see owing), so the entries are written with it.
func (c *Client) owe(op *operation.Operation, from operation.Status, now time.Time) {
	if op.Status == from {
		return
	}
	pol := c.policy(op.Route)
	terminal := op.Status.Terminal()
	add := func(target, scope string) {
		op.Callbacks = append(op.Callbacks, operation.Callback{ID: "msg_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", ""),
			URL: target, Event: string(op.Status), Secret: scope, CreatedAt: now, State: operation.CallbackPending, NextAt: now})
	}
	n := len(op.Callbacks)
	for _, t := range pol.callbacks {
		if terminal || t.Every {
			add(t.URL, RouteSecretScope(op.Route))
		}
	}
	if op.CallbackURL != "" && (terminal || pol.every) {
		add(op.CallbackURL, PrincipalSecretScope(op.Owner))
	}
	if len(op.Callbacks) == n {
		return
	}
	op.Callbacks = trimCallbacks(op.Callbacks, c.cfg.MaxCallbacks)
	op.CallbackDueAt = operation.DueAt(op.Callbacks)
}

// trimCallbacks keeps at most max entries: it drops the oldest finished
// ones (delivered, failed) first, then the oldest pending ones.
func trimCallbacks(cbs []operation.Callback, max int) []operation.Callback {
	for len(cbs) > max {
		i := 0
		for j, cb := range cbs {
			if cb.State != operation.CallbackPending {
				i = j
				break
			}
		}
		cbs = append(cbs[:i:i], cbs[i+1:]...)
	}
	return cbs
}

// owing wraps a transition's change so that the callbacks its status
// change owes are added to what it writes.
func (c *Client) owing(change func(*operation.Operation) error) func(*operation.Operation) error {
	if !c.callbacks {
		return change
	}
	return func(op *operation.Operation) error {
		from := op.Status
		if err := change(op); err != nil {
			return err
		}
		c.owe(op, from, time.Now().UTC())
		return nil
	}
}

// kick wakes the dispatchers of this process when op, as written, owes a
// callback now.
func (c *Client) kick(op *operation.Operation) {
	if op == nil || op.CallbackDueAt.IsZero() || op.CallbackDueAt.After(time.Now()) {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// CallbackWake receives a value (coalesced) when a transition of this
// process wrote a callback that is due at once; a dispatcher also polls
// DueCallbacks, for the callbacks other processes owe and those whose
// retry comes due.
func (c *Client) CallbackWake() <-chan struct{} { return c.wake }

// DueCallbacks returns up to limit operations with a callback due at now,
// earliest first, whoever owns them: it is the dispatcher's call, not a
// caller's.
func (c *Client) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	return c.cfg.Store.DueCallbacks(ctx, now, limit)
}

// ClaimCallback begins an attempt of the callback cbID of operation id,
// when it is pending and due at now: it counts the attempt and moves the
// callback's NextAt to now+lease, so that no other dispatcher takes it
// meanwhile and, should this one die, it is due again after lease. It
// returns the operation as written and the claimed callback; a callback
// that is not pending and due is ErrCallbackNotDue.
func (c *Client) ClaimCallback(ctx context.Context, id, cbID string, now time.Time, lease time.Duration) (*operation.Operation, operation.Callback, error) {
	var claimed operation.Callback
	op, err := c.cfg.Store.TransitionLazy(ctx, id, func(op *operation.Operation) error {
		i := callbackIndex(op, cbID)
		if i < 0 || op.Callbacks[i].State != operation.CallbackPending || op.Callbacks[i].NextAt.After(now) {
			return ErrCallbackNotDue
		}
		cb := &op.Callbacks[i]
		cb.Attempts++
		cb.NextAt = now.Add(lease).UTC().Truncate(time.Microsecond) // the claim's mark (see RecordCallback)
		op.CallbackDueAt = operation.DueAt(op.Callbacks)
		claimed = *cb
		return nil
	})
	if err != nil {
		return nil, operation.Callback{}, err
	}
	return op, claimed, nil
}

// CallbackResult is the outcome of one attempt of a callback.
type CallbackResult struct {
	// Delivered: the target answered 2xx.
	Delivered bool
	// Status is the target's HTTP status (0: no answer).
	Status int
	// Error says why it was not delivered (shown on the operation).
	Error string
	// Next is when to try again; zero gives up (the callback fails).
	Next time.Time
}

// RecordCallback records the outcome of the attempt ClaimCallback
// claimed (claimed is the callback it returned). When that claim is no
// longer the callback's latest (it lapsed and another dispatcher claimed
// the callback, or it was redelivered), or the callback is no longer
// pending, nothing changes.
//
// The claim is written lazily (a crash that loses it only sends the
// callback again), the outcome durably, so that a delivered callback is
// not sent again after a crash, and a claim that a crash made durable
// without its outcome is the only one that waits out its lease.
func (c *Client) RecordCallback(ctx context.Context, id string, claimed operation.Callback, at time.Time, res CallbackResult) error {
	_, err := c.cfg.Store.Transition(ctx, id, func(op *operation.Operation) error {
		i := callbackIndex(op, claimed.ID)
		if i < 0 || op.Callbacks[i].State != operation.CallbackPending || op.Callbacks[i].Attempts != claimed.Attempts ||
			!op.Callbacks[i].NextAt.Equal(claimed.NextAt) {
			return errSkip
		}
		cb := &op.Callbacks[i]
		cb.LastAt, cb.LastStatus, cb.LastError = at, res.Status, res.Error
		switch {
		case res.Delivered:
			cb.State, cb.DeliveredAt, cb.NextAt, cb.LastError = operation.CallbackDelivered, at, time.Time{}, ""
		case res.Next.IsZero():
			cb.State, cb.NextAt = operation.CallbackFailed, time.Time{}
		default:
			cb.NextAt = res.Next
		}
		op.CallbackDueAt = operation.DueAt(op.Callbacks)
		return nil
	})
	if errors.Is(err, errSkip) {
		return nil
	}
	return err
}

// RedeliverCallbacks puts the caller's operation's delivered and failed
// callbacks back to pending, due at once, under their ids (a receiver
// that deduplicates by webhook-id sees them as the same events), and
// returns the operation. Another caller's operation is not found.
func (c *Client) RedeliverCallbacks(ctx context.Context, id string) (*operation.Operation, error) {
	now := time.Now().UTC()
	op, err := c.cfg.Store.Transition(ctx, id, func(op *operation.Operation) error {
		if !visible(ctx, op) {
			return errHidden
		}
		if expired(op, now) {
			return errExpired
		}
		for i := range op.Callbacks {
			if cb := &op.Callbacks[i]; cb.State != operation.CallbackPending {
				cb.State, cb.NextAt, cb.RedeliveredAt = operation.CallbackPending, now, now
			}
		}
		op.CallbackDueAt = operation.DueAt(op.Callbacks)
		return nil
	})
	op, err = c.scoped(id, op, err)
	if err == nil {
		c.kick(op)
	}
	return op, err
}

func callbackIndex(op *operation.Operation, cbID string) int {
	for i := range op.Callbacks {
		if op.Callbacks[i].ID == cbID {
			return i
		}
	}
	return -1
}
