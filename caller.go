package arr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
)

// Anonymous is the principal of every request when the operator chose no
// authentication (arr then serves loopback only, unless told otherwise).
const Anonymous = "anonymous"

// Caller is who a request is made by. Every operation belongs to the
// principal that submitted it: a scoped Client call (one whose context
// carries a Caller, see WithCaller) sees, waits for, cancels and retries
// only the caller's own operations, and an idempotency key is the
// caller's own. An admin sees and acts on every operation.
type Caller struct {
	// Principal names the caller: an API key's name, a JWT subject (with
	// its issuer when several are trusted), a trusted proxy's user header,
	// or Anonymous.
	Principal string
	// Tenant groups principals (a JWT's tenant claim, an API key's tenant);
	// it is recorded on the operation. Default: the principal.
	Tenant string
	// Admin callers are not scoped: they see and act on all operations.
	Admin bool
}

// ErrBadPrincipal: a principal or tenant is empty, longer than 256 bytes,
// not UTF-8, or holds a control character.
var ErrBadPrincipal = errors.New("arr: a principal is 1 to 256 bytes of UTF-8 without control characters")

// Valid checks the caller's principal and tenant.
func (c Caller) Valid() error {
	for i, s := range []string{c.Principal, c.Tenant} {
		if i == 1 && s == "" {
			continue // the tenant defaults to the principal
		}
		if s == "" || len(s) > 256 || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return ErrBadPrincipal
		}
	}
	return nil
}

type callerKey struct{}

// WithCaller returns a context that makes Client calls made with it
// scoped to c. A context without a Caller is the program's own (the
// janitor, a Go program embedding arr, a test): its calls are not scoped.
func WithCaller(ctx context.Context, c Caller) context.Context {
	if c.Tenant == "" {
		c.Tenant = c.Principal
	}
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the Caller of ctx, if it has one.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// visible reports whether a call made with ctx may see op: an unscoped
// call sees every operation, a scoped one its principal's own. An
// operation with no owner (submitted by a program without a caller, or
// stored before arr recorded owners) belongs to Anonymous.
func visible(ctx context.Context, op *operation.Operation) bool {
	owner, scoped := scope(ctx)
	return !scoped || op.Owner == owner || (op.Owner == "" && owner == Anonymous)
}

// ownerKey is the idempotency key as stored: keys are the caller's own,
// so the stored key carries the owner. Anonymous and unowned keys are
// stored bare, as they were before keys were scoped. The owner holds no
// control character (Caller.Valid) and a key none either, so the newline
// makes the pair unambiguous.
func ownerKey(owner, key string) string {
	if key == "" || owner == "" || owner == Anonymous {
		return key
	}
	return owner + "\n" + key
}

// errHidden is a scoped call's answer for another principal's operation:
// it is reported as not found (never as forbidden, which would tell that
// the id exists).
var errHidden = fmt.Errorf("%w (or not the caller's)", opstore.ErrNotFound)

// scope is the owner filter of a call made with ctx: "" for an unscoped
// call (no caller, or an admin), else the caller's principal.
func scope(ctx context.Context) (owner string, scoped bool) {
	c, ok := CallerFrom(ctx)
	if !ok || c.Admin {
		return "", false
	}
	return c.Principal, true
}
