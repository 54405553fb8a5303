package arr

import (
	"context"
	"errors"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/resultstore"
)

// ErrNoResult is returned by OpenResult and ResultURL for an operation
// that has not succeeded.
var ErrNoResult = errors.New("arr: the operation has no result")

// ErrNoSigner is returned by ResultURL of a Client configured without a
// Signer.
var ErrNoSigner = errors.New("arr: no signer of result URLs configured")

// ResultURL signs a URL to a succeeded operation's result, valid for its
// route's ResultURLTTL but never past the operation's own expiry, and
// returns it with its expiry. The URL may be relative (see URLSigner).
func (c *Client) ResultURL(ctx context.Context, op *operation.Operation) (string, time.Time, error) {
	if op == nil || op.Status != operation.Succeeded || op.Result == nil {
		return "", time.Time{}, ErrNoResult
	}
	if c.cfg.Signer == nil {
		return "", time.Time{}, ErrNoSigner
	}
	exp := time.Now().Add(c.policy(op.Route).resultURLTTL).UTC().Truncate(time.Second)
	if !op.ExpiresAt.IsZero() && op.ExpiresAt.Before(exp) {
		exp = op.ExpiresAt.UTC().Truncate(time.Second)
	}
	u, err := c.cfg.Signer.SignedURLTyped(ctx, op.Result.Key, op.Result.ContentType, exp)
	return u, exp, err
}

// OpenResult opens the result of a succeeded operation. The caller closes
// the reader.
func (c *Client) OpenResult(ctx context.Context, op *operation.Operation) (resultstore.Reader, error) {
	if op == nil || op.Status != operation.Succeeded || op.Result == nil {
		return nil, ErrNoResult
	}
	return c.cfg.Results.Open(ctx, op.Result.Key)
}
