package api

import (
	"context"
	"net/http"
	"time"

	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// opView is the operation JSON of the v1 contract.
type opView struct {
	ID              string           `json:"id"`
	Status          operation.Status `json:"status"`
	CreatedAt       time.Time        `json:"createdAt"`
	UpdatedAt       time.Time        `json:"updatedAt"`
	PercentComplete int              `json:"percentComplete"`
	Message         string           `json:"message,omitempty"`
	Attempts        []attemptView    `json:"attempts"`
	Error           *apiProblem      `json:"error,omitempty"`
	Result          *resultView      `json:"result,omitempty"`
	// ResourceLocation, on a succeeded operation only, is an arr URL that
	// answers 200 with the result's bytes (…/result?redirect=false): the
	// Operation-Location pattern's final GET, on arr's own host whatever
	// host result.href is on.
	ResourceLocation string         `json:"resourceLocation,omitempty"`
	ExpiresAt        *time.Time     `json:"expiresAt,omitempty"`
	Links            links          `json:"links"`
	Callbacks        []callbackView `json:"callbacks,omitempty"`
}

// apiProblem is a problem as the api renders it: RFC 9457's members plus
// code and message (see problem.AppendJSON).
type apiProblem operation.Problem

// MarshalJSON encodes p as problem.AppendJSON does.
func (p *apiProblem) MarshalJSON() ([]byte, error) {
	return problem.AppendJSON(nil, (*operation.Problem)(p)), nil
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
	Number    int         `json:"number"`
	Outcome   string      `json:"outcome"`
	StartedAt time.Time   `json:"startedAt,omitzero"`
	EndedAt   time.Time   `json:"endedAt,omitzero"`
	Error     *apiProblem `json:"error,omitempty"`
}

// attempts lists op's attempts, oldest first: its stored History (the
// attempts that failed or were interrupted), then the attempt that is
// running, or that succeeded or was canceled, which the History does not
// hold.
func attempts(op *operation.Operation) []attemptView {
	out := make([]attemptView, 0, len(op.History)+1)
	last := 0
	for _, a := range op.History {
		out = append(out, attemptView{Number: a.Number, Outcome: a.Outcome, StartedAt: a.StartedAt, EndedAt: a.EndedAt, Error: (*apiProblem)(a.Error)})
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
	self := monitorURL(base, op.ID)
	v := &opView{
		ID: op.ID, Status: op.Status, CreatedAt: op.CreatedAt, UpdatedAt: op.UpdatedAt,
		PercentComplete: op.PercentComplete, Message: op.Message, Attempts: attempts(op), Error: (*apiProblem)(op.Error),
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
		v.ResourceLocation = resultLocation(base, op.ID)
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

// The links of an operation, absolute against base.

// monitorURL is the status monitor (links.self): 200 while not finished,
// 303 to the result when succeeded.
func monitorURL(base, id string) string { return base + "/v1/operations/" + id }

// operationLocation is the monitor that never redirects: 200 with the
// operation JSON in every state. The Operation-Location of a 202.
func operationLocation(base, id string) string { return monitorURL(base, id) + "?redirect=false" }

// resultLocation is the status-code URL of a v1 operation: 202 while not
// finished, 200 with the result's bytes on success, a 4xx problem on
// failure or cancel. The Location of a v1 route's 202, and a succeeded
// operation's resourceLocation.
func resultLocation(base, id string) string { return monitorURL(base, id) + "/result?redirect=false" }

// seedLocation is the status-code URL of an operation of the seed's
// route: its status URL with the options that make it one
// (OnPending=Accepted: 202 while not finished; OnComplete=Stream: 200
// with the bytes on success). The Location of the seed route's 202.
func seedLocation(base, id string) string {
	return base + "/api/RequestStatus/" + id + "?OnPending=Accepted&OnComplete=Stream"
}
