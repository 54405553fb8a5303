package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/callback"
	"github.com/arrhq/arr/operation"
)

// Problem types of callbacks.
const (
	ProblemInvalidCallback    = "urn:arr:problem:invalid-callback"
	ProblemCallbackNotAllowed = "urn:arr:problem:callback-not-allowed"
	ProblemNoCallbacks        = "urn:arr:problem:callbacks-not-configured"
)

// callbackView is one callback of the operation JSON.
type callbackView struct {
	ID            string    `json:"id"`
	URL           string    `json:"url"`
	Event         string    `json:"event"`
	State         string    `json:"state"`
	Attempts      int       `json:"attempts"`
	LastStatus    int       `json:"lastStatus,omitempty"`
	LastError     string    `json:"lastError,omitempty"`
	LastAttemptAt time.Time `json:"lastAttemptAt,omitzero"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	DeliveredAt   time.Time `json:"deliveredAt,omitzero"`
}

// callbackViews renders op's callbacks for the caller of ctx. A route's
// targets are the operator's: a caller who is not an admin sees their
// scheme, host and path, not their query (which may hold a token).
func callbackViews(ctx context.Context, op *operation.Operation) []callbackView {
	if len(op.Callbacks) == 0 {
		return nil
	}
	c, _ := arr.CallerFrom(ctx)
	out := make([]callbackView, 0, len(op.Callbacks))
	for _, cb := range op.Callbacks {
		target := cb.URL
		if cb.Secret == arr.RouteSecretScope(op.Route) && !c.Admin {
			if u, err := url.Parse(target); err == nil {
				u.RawQuery, u.User, u.Fragment = "", nil, ""
				target = u.String()
			}
		}
		v := callbackView{ID: cb.ID, URL: target, Event: cb.Event, State: cb.State, Attempts: cb.Attempts,
			LastStatus: cb.LastStatus, LastError: cb.LastError, LastAttemptAt: cb.LastAt, DeliveredAt: cb.DeliveredAt}
		if cb.State == operation.CallbackPending {
			v.NextAttemptAt = cb.NextAt
		}
		out = append(out, v)
	}
	return out
}

// callbackURL reads X-Callback-Url: one value at most.
func callbackURL(w http.ResponseWriter, r *http.Request) (string, bool) {
	vs := r.Header.Values("X-Callback-Url")
	if len(vs) > 1 {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidCallback, "Invalid X-Callback-Url", "send one X-Callback-Url")
		return "", false
	}
	if len(vs) == 0 {
		return "", true
	}
	return vs[0], true
}

// submitCallbackError answers a Submit error of the callback URL; false
// when err is not one.
func submitCallbackError(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, arr.ErrBadCallbackURL):
		writeProblem(w, http.StatusBadRequest, ProblemInvalidCallback, "Invalid X-Callback-Url", err.Error())
	case errors.Is(err, arr.ErrCallbackNotAllowed):
		writeProblem(w, http.StatusBadRequest, ProblemCallbackNotAllowed, "Callback target not allowed",
			"this route does not call back to that target: the operator allows request callbacks per target (-callback-allow)")
	default:
		return false
	}
	return true
}

// redeliver serves POST /v1/operations/{id}/callbacks/redeliver: the
// operation's delivered and failed callbacks are sent again, under their
// ids.
func (s *Server) redeliver(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return
	}
	op, err := s.c.RedeliverCallbacks(r.Context(), id)
	if err != nil {
		s.storeError(w, id, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), s.base(r), op))
}

// callbackSecret serves GET /v1/callbacks/secret: the secrets that sign
// the caller's requested callbacks; an admin may ask for a route's
// (?route=NAME) or another principal's (?principal=NAME).
func (s *Server) callbackSecret(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	if s.cfg.CallbackSecrets == nil {
		writeProblem(w, http.StatusNotFound, ProblemNoCallbacks, "Callbacks not configured",
			"callbacks are not configured here: routes have no callback targets, and requests may name none")
		return
	}
	c, _ := arr.CallerFrom(r.Context())
	q := r.URL.Query()
	scope := arr.PrincipalSecretScope(c.Principal)
	route, principal := q.Get("route"), q.Get("principal")
	switch {
	case route != "" && principal != "":
		writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid parameters", "ask for a route's secret or a principal's, not both")
		return
	case (route != "" || principal != "" && principal != c.Principal) && !c.Admin:
		writeProblem(w, http.StatusForbidden, ProblemForbidden, "Forbidden", "only an admin may read a route's or another principal's callback secret")
		return
	case route != "":
		if !slices.ContainsFunc(s.c.Routes(), func(r arr.Route) bool { return r.Name == route }) {
			writeProblem(w, http.StatusNotFound, ProblemNotFound, "No such route", "no route is named "+strconv.Quote(route))
			return
		}
		scope = arr.RouteSecretScope(route)
	case principal != "":
		scope = arr.PrincipalSecretScope(principal)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		Scope   string            `json:"scope"`
		Secrets []callback.Secret `json:"secrets"`
	}{scope, s.cfg.CallbackSecrets.For(r.Context(), scope)})
}

// RenderOperation is the operation JSON a callback carries: as the status
// monitor renders it for an admin, with links absolute against base.
func (s *Server) RenderOperation(ctx context.Context, base string, op *operation.Operation) ([]byte, error) {
	ctx = arr.WithCaller(ctx, arr.Caller{Principal: op.Owner, Tenant: op.Tenant})
	v := s.view(ctx, base, op)
	return v.appendJSON(nil), nil
}
