package server

import (
	"context"
	"fmt"

	arr "github.com/arrhq/arr"
)

// Route is a submit route and the way its operations run; see arr.Route,
// the one route model.
type Route = arr.Route

// CallbackTarget is a callback target of a route: see arr.CallbackTarget.
type CallbackTarget = arr.CallbackTarget

// ServeMux collects routes, the way net/http's ServeMux collects
// handlers; give it to Config.Mux.
type ServeMux struct {
	routes []Route
}

// NewServeMux returns an empty ServeMux.
func NewServeMux() *ServeMux { return &ServeMux{} }

// Handle registers h for pattern (see arr.Route.Pattern) with the default
// settings.
func (m *ServeMux) Handle(pattern string, h arr.Handler) {
	m.HandleRoute(Route{Pattern: pattern, Handler: h})
}

// HandleFunc registers f for pattern.
func (m *ServeMux) HandleFunc(pattern string, f func(ctx context.Context, t *arr.Task, p arr.Progress) (*arr.Result, error)) {
	m.Handle(pattern, arr.HandlerFunc(f))
}

// HandleRoute registers a route with its settings. Invalid routes are
// reported by New.
func (m *ServeMux) HandleRoute(r Route) { m.routes = append(m.routes, r) }

// Routes returns the registered routes.
func (m *ServeMux) Routes() []Route { return append([]Route(nil), m.routes...) }

// checkHandlers refuses a route without a handler: a process that runs
// workers must be able to run every route's operations.
func checkHandlers(routes []Route) error {
	for _, r := range routes {
		if r.Handler == nil {
			return fmt.Errorf("route %q has no handler", r.Pattern)
		}
	}
	return nil
}
