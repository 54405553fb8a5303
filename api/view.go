package api

import (
	"context"
	"net/http"
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
	Attempts        []attemptView      `json:"attempts"`
	Error           *operation.Problem `json:"error,omitempty"`
	Result          *resultView        `json:"result,omitempty"`
	ExpiresAt       *time.Time         `json:"expiresAt,omitempty"`
	Links           links              `json:"links"`
	Callbacks       []callbackView     `json:"callbacks,omitempty"`
}

type resultView struct {
	Href        string      `json:"href"`
	ContentType string      `json:"contentType"`
	Size        int64       `json:"size"`
	ExpiresAt   time.Time   `json:"expiresAt"`
	StatusCode  int         `json:"statusCode,omitempty"`
	Headers     http.Header `json:"headers,omitempty"`
}

// attemptView is one attempt: those that did not succeed from the stored
// history, and the current or last one from the operation's state.
type attemptView struct {
	Number    int                `json:"number"`
	Outcome   string             `json:"outcome"`
	StartedAt time.Time          `json:"startedAt,omitzero"`
	EndedAt   time.Time          `json:"endedAt,omitzero"`
	Error     *operation.Problem `json:"error,omitempty"`
}

// attempts lists op's attempts, oldest first: its stored History (the
// attempts that failed or were interrupted), then the attempt that is
// running, or that succeeded or was canceled, which the History does not
// hold.
func attempts(op *operation.Operation) []attemptView {
	out := make([]attemptView, 0, len(op.History)+1)
	last := 0
	for _, a := range op.History {
		out = append(out, attemptView{Number: a.Number, Outcome: a.Outcome, StartedAt: a.StartedAt, EndedAt: a.EndedAt, Error: a.Error})
		last = a.Number
	}
	if op.Attempts > last {
		switch op.Status {
		case operation.Running:
			out = append(out, attemptView{Number: op.Attempts, Outcome: "running", StartedAt: op.AttemptStartedAt})
		case operation.Succeeded:
			out = append(out, attemptView{Number: op.Attempts, Outcome: operation.OutcomeSucceeded, StartedAt: op.AttemptStartedAt, EndedAt: op.UpdatedAt})
		case operation.Canceled:
			out = append(out, attemptView{Number: op.Attempts, Outcome: operation.OutcomeCanceled, StartedAt: op.AttemptStartedAt, EndedAt: op.UpdatedAt})
		}
	}
	return out
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
		PercentComplete: op.PercentComplete, Message: op.Message, Attempts: attempts(op), Error: op.Error,
		Links: links{Self: self, Result: self + "/result", Events: self + "/events"},
	}
	if !op.ExpiresAt.IsZero() {
		t := op.ExpiresAt
		v.ExpiresAt = &t
	}
	v.Callbacks = callbackViews(ctx, op)
	if op.Status == operation.Succeeded && op.Result != nil {
		href, exp, _ := s.signedResultURL(ctx, base, op)
		v.Result = &resultView{Href: href, ContentType: op.Result.ContentType, Size: op.Result.Size, ExpiresAt: exp,
			StatusCode: op.Result.StatusCode, Headers: op.Result.Header}
	}
	return v
}

// signedResultURL signs a URL to op's result (see arr.Client.ResultURL),
// absolute against base.
func (s *Server) signedResultURL(ctx context.Context, base string, op *operation.Operation) (string, time.Time, error) {
	u, exp, err := s.c.ResultURL(ctx, op)
	if err != nil {
		return "", exp, err
	}
	if len(u) > 0 && u[0] == '/' {
		u = base + u
	}
	return u, exp, nil
}
