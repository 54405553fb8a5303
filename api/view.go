package api

import (
	"context"
	"time"

	"github.com/arrhq/arr/operation"
)

// opView is the operation JSON of the v1 contract.
type opView struct {
	ID              string             `json:"id"`
	Status          operation.Status   `json:"status"`
	CreatedAt       time.Time          `json:"createdAt"`
	UpdatedAt       time.Time          `json:"updatedAt"`
	PercentComplete int                `json:"percentComplete"`
	Message         string             `json:"message,omitempty"`
	Attempts        int                `json:"attempts"`
	Error           *operation.Problem `json:"error,omitempty"`
	Result          *resultView        `json:"result,omitempty"`
	ExpiresAt       *time.Time         `json:"expiresAt,omitempty"`
	Links           links              `json:"links"`
}

type resultView struct {
	Href        string    `json:"href"`
	ContentType string    `json:"contentType"`
	Size        int64     `json:"size"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

type links struct {
	Self   string `json:"self"`
	Result string `json:"result"`
	Events string `json:"events"`
}

// view renders op for a client at base. A succeeded operation's result href
// is a freshly signed URL; "" when it could not be signed.
func (s *Server) view(ctx context.Context, base string, op *operation.Operation) *opView {
	self := base + "/v1/operations/" + op.ID
	v := &opView{
		ID: op.ID, Status: op.Status, CreatedAt: op.CreatedAt, UpdatedAt: op.UpdatedAt,
		PercentComplete: op.PercentComplete, Message: op.Message, Attempts: op.Attempts, Error: op.Error,
		Links: links{Self: self, Result: self + "/result", Events: self + "/events"},
	}
	if !op.ExpiresAt.IsZero() {
		t := op.ExpiresAt
		v.ExpiresAt = &t
	}
	if op.Status == operation.Succeeded && op.Result != nil {
		href, exp, _ := s.signedResultURL(ctx, base, op)
		v.Result = &resultView{Href: href, ContentType: op.Result.ContentType, Size: op.Result.Size, ExpiresAt: exp}
	}
	return v
}

// signedResultURL signs a URL to op's result, valid for ResultURLTTL (but
// not past the operation's own expiry), absolute against base.
func (s *Server) signedResultURL(ctx context.Context, base string, op *operation.Operation) (string, time.Time, error) {
	exp := time.Now().Add(s.cfg.ResultURLTTL).UTC().Truncate(time.Second)
	if !op.ExpiresAt.IsZero() && op.ExpiresAt.Before(exp) {
		exp = op.ExpiresAt.UTC().Truncate(time.Second)
	}
	u, err := s.cfg.Results.SignedURL(ctx, op.Result.Key, exp)
	if err != nil {
		return "", exp, err
	}
	if len(u) > 0 && u[0] == '/' {
		u = base + u
	}
	return u, exp, nil
}
