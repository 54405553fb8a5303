package server

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/worker"
)

// Route is a submit route and the way its operations run: requests that
// match Pattern are answered 202 and become operations that Handler runs.
// Every field but Pattern and Handler has a default, given in its comment.
type Route struct {
	// Pattern is "[METHOD ]PATH": PATH is a net/http ServeMux path pattern
	// (/v1/reports, /v1/items/{id}, or a prefix ending in /); METHOD is an
	// HTTP method or * for any. Unlike net/http, a pattern without a method
	// means POST, since a submit route creates an operation.
	Pattern string
	// Handler runs the route's operations.
	Handler worker.Handler
	// Name names the route in operations, metrics and logs. Default: made
	// from the pattern ("POST /v1/reports" → "post-v1-reports").
	Name string
	// MediaTypes lists the accepted Content-Types; others are 415. Default:
	// any.
	MediaTypes []string
	// Validate checks the body before anything is stored; an error is a 400
	// whose detail is its text. Default: no check.
	Validate func(body []byte) error
	// MaxBodyBytes bounds the body; larger ones are 413. Default: the api's
	// (Config.API.MaxBodyBytes, 1 MiB).
	MaxBodyBytes int64
	// Timeout bounds one attempt. Default: Config.Worker.Timeout (10m).
	Timeout time.Duration
	// MaxAttempts is how many attempts may fail before the operation fails.
	// Default: Config.Worker.MaxAttempts (3).
	MaxAttempts int
	// Backoff is the delay before retry number n. Default:
	// Config.Worker.Backoff (1s doubling to 5m, ±25% jitter).
	Backoff func(n int) time.Duration
	// Concurrency bounds how many of the route's operations each worker
	// process runs at once. Default 0: only the pool's limit.
	Concurrency int
	// ResultURLTTL is the lifetime of the route's signed result URLs.
	// Default: Config.API.ResultURLTTL (10m).
	ResultURLTTL time.Duration
	// Retention is how long a finished operation and its result are kept.
	// Default: Config.Worker.Retention (24h).
	Retention time.Duration
	// Tombstone is how long after its deletion the operation's status
	// answers 410 Gone before it answers 404. Default:
	// Config.Worker.Tombstone (7 days).
	Tombstone time.Duration

	seed, caseInsensitive, builtin bool
}

// ServeMux collects routes, the way net/http's ServeMux collects
// handlers; give it to Config.Mux.
type ServeMux struct {
	routes []Route
}

// NewServeMux returns an empty ServeMux.
func NewServeMux() *ServeMux { return &ServeMux{} }

// Handle registers h for pattern (see Route.Pattern) with the default
// settings.
func (m *ServeMux) Handle(pattern string, h worker.Handler) {
	m.HandleRoute(Route{Pattern: pattern, Handler: h})
}

// HandleFunc registers f for pattern.
func (m *ServeMux) HandleFunc(pattern string, f func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error)) {
	m.Handle(pattern, worker.HandlerFunc(f))
}

// HandleRoute registers a route with its settings. Invalid routes are
// reported by New.
func (m *ServeMux) HandleRoute(r Route) { m.routes = append(m.routes, r) }

// Routes returns the registered routes.
func (m *ServeMux) Routes() []Route { return append([]Route(nil), m.routes...) }

// SeedRoutes are the seed's routes, run by worker.Echo:
// POST /api/AsyncProcessingWorkAcceptor (any case; the seed's customer
// rule; the seed's Location) and POST /v1/echo.
func SeedRoutes() []Route {
	seed, echo := api.SeedRoute(), api.EchoRoute()
	return []Route{
		{Pattern: "POST " + seed.Path, Name: seed.Name, Handler: worker.Echo, MediaTypes: seed.MediaTypes,
			Validate: seed.Validate, seed: true, caseInsensitive: true, builtin: true},
		{Pattern: "POST " + echo.Path, Name: echo.Name, Handler: worker.Echo, builtin: true},
	}
}

// ParsePattern splits a route pattern into its method (POST when absent,
// * for any) and path, and checks both.
func ParsePattern(pattern string) (method, path string, err error) {
	pattern = strings.TrimSpace(pattern)
	method, path, found := strings.Cut(pattern, " ")
	if !found {
		method, path = http.MethodPost, pattern
	}
	path = strings.TrimSpace(path)
	method = strings.ToUpper(method)
	if method != "*" && !token.MatchString(method) {
		return "", "", fmt.Errorf("route %q: %q is not an HTTP method", pattern, method)
	}
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("route %q: the path must start with /", pattern)
	}
	return method, path, nil
}

var token = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// RouteName makes a route's default name from its method and path.
func RouteName(method, path string) string {
	var b strings.Builder
	if method == "*" {
		method = "any"
	}
	b.WriteString(strings.ToLower(method))
	dash := true
	for _, c := range strings.ToLower(path) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_'
		switch {
		case ok:
			if dash {
				b.WriteByte('-')
			}
			b.WriteRune(c)
			dash = false
		default:
			dash = true
		}
	}
	return b.String()
}

// buildRoutes turns routes into the api's routes and the worker's handlers
// and policies. Names must be unique (the seed's two routes share "echo").
func buildRoutes(routes []Route) ([]api.Route, map[string]worker.Handler, map[string]worker.Policy, error) {
	var ars []api.Route
	handlers := map[string]worker.Handler{}
	policies := map[string]worker.Policy{}
	seen := map[string]*Route{}
	for _, r := range routes {
		method, path, err := ParsePattern(r.Pattern)
		if err != nil {
			return nil, nil, nil, err
		}
		if r.Handler == nil {
			return nil, nil, nil, fmt.Errorf("route %q has no handler", r.Pattern)
		}
		name := r.Name
		if name == "" {
			name = RouteName(method, path)
		}
		if prev := seen[name]; prev != nil && !(prev.builtin && r.builtin) {
			return nil, nil, nil, fmt.Errorf("two routes are named %q", name)
		}
		seen[name] = &r
		ars = append(ars, api.Route{Name: name, Method: method, Path: path, Seed: r.seed, CaseInsensitive: r.caseInsensitive,
			MediaTypes: r.MediaTypes, Validate: r.Validate, MaxBodyBytes: r.MaxBodyBytes,
			ResultURLTTL: r.ResultURLTTL, Retention: r.Retention, Tombstone: r.Tombstone})
		handlers[name] = r.Handler
		policies[name] = worker.Policy{Timeout: r.Timeout, MaxAttempts: r.MaxAttempts, Backoff: r.Backoff,
			Concurrency: r.Concurrency, Retention: r.Retention, Tombstone: r.Tombstone}
	}
	return ars, handlers, policies, nil
}
