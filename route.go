package arr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Route is a submit route and the way its operations run: requests that
// match Pattern are answered 202 and become operations that Handler runs.
// It is the one description of a route: the config file, the Go API
// (server.ServeMux) and the HTTP api all use it. Every field but Pattern
// and Handler has a default, given in its comment; a zero duration or
// count takes the Config's value.
type Route struct {
	// Pattern is "[METHOD ]PATH": PATH is a net/http ServeMux path pattern
	// (/v1/reports, /v1/items/{id}, or a prefix ending in /); METHOD is an
	// HTTP method or * for any. Unlike net/http, a pattern without a method
	// means POST, since a submit route creates an operation.
	Pattern string
	// Handler runs the route's operations. A process that runs no workers
	// (arr api) may leave it nil.
	Handler Handler
	// Name names the route in operations, metrics and logs. Default:
	// RouteName of the pattern's method and path ("POST /v1/reports" is
	// "post-v1-reports").
	Name string
	// MediaTypes lists the accepted Content-Types (without parameters);
	// others are 415. Default: any.
	MediaTypes []string
	// Validate checks the body before anything is stored; an error is a 400
	// whose detail is its text (and whose extension members are the
	// error's ProblemExtensions(), when it has that method). Default: no
	// check.
	Validate func(body []byte) error
	// MaxBodyBytes bounds the body; larger ones are 413. Default: the
	// api's (1 MiB).
	MaxBodyBytes int64
	// Timeout bounds one attempt. Default: Config.Timeout.
	Timeout time.Duration
	// MaxAttempts is how many attempts may fail before the operation fails.
	// Default: Config.MaxAttempts.
	MaxAttempts int
	// Backoff is the delay before retry number n. Default: Config.Backoff.
	Backoff func(n int) time.Duration
	// Concurrency bounds how many of the route's operations each worker
	// process runs at once. Default 0: only the pool's limit.
	Concurrency int
	// ResultURLTTL is the lifetime of the route's signed result URLs.
	// Default: Config.ResultURLTTL.
	ResultURLTTL time.Duration
	// Retention is how long a finished operation and its result are kept.
	// Default: Config.Retention.
	Retention time.Duration
	// Tombstone is how long after its deletion the operation's status
	// answers 410 Gone before it answers 404. Default: Config.Tombstone.
	Tombstone time.Duration
	// Seed makes the route answer as the seed's work acceptor: its 202's
	// Location is the seed's status URL, /api/RequestStatus/{id}, and the
	// operation carries the seed's RequestGUID, RequestSubmittedAt and
	// RequestStatusURL properties.
	Seed bool
	// CaseInsensitive matches the path regardless of ASCII case (the
	// seed's routes).
	CaseInsensitive bool
	// DropHeaders names request headers not to store, beyond those arr
	// never stores (see StoredHeaders). Default: none.
	DropHeaders []string
	// KeepHeaders, when not empty, is the route's allow-list of request
	// headers: only those it names are stored (and passed to the
	// handler), and still never a credential, hop-by-hop or proxy header
	// (ForwardCredentials keeps credentials, sealed). Default: every
	// header but those (see StoredHeaders).
	KeepHeaders []string
	// ForwardCredentials names the credential headers (Authorization,
	// Cookie, X-Api-Key…) that the route's operations keep, which arr
	// otherwise never stores: they are stored encrypted (see Credentials)
	// for the handler to pass on, to an upstream say (forward.Config's
	// Credentials). Hop-by-hop headers cannot be kept. Default: none.
	ForwardCredentials []string
	// Callers lists who may submit to the route: principals by name, and
	// "tenant:NAME" for every principal of a tenant. Others get
	// ErrRouteForbidden. Admins and the program itself (a context without
	// a Caller) may always. Default: every caller.
	Callers []string
	// InlineResults serves the route's results with Content-Disposition:
	// inline rather than attachment. Either way they carry a sandboxing
	// Content-Security-Policy and nosniff (urlsign.SetResultHeaders).
	InlineResults bool
	// Callbacks are the targets called back for each of the route's
	// operations (see CallbackTarget). Default: none.
	Callbacks []CallbackTarget
	// CallbackRequests says which targets a request may name with
	// X-Callback-Url. Default nil: Config.CallbackRequests.
	CallbackRequests TargetPolicy
	// CallbackEvery calls a request's target on every change of status,
	// not only when the operation finishes. Default false.
	CallbackEvery bool

	builtin bool // one of SeedRoutes: the two share the name "echo"
}

// Method and Path split the route's Pattern; see ParsePattern. They are
// valid once New accepted the route.
func (r *Route) Method() string { m, _, _ := ParsePattern(r.Pattern); return m }

// Path: see Method.
func (r *Route) Path() string { _, p, _ := ParsePattern(r.Pattern); return p }

// SeedRoutes are the seed's routes, run by Echo:
// POST /api/AsyncProcessingWorkAcceptor (any case; the seed's body rule,
// ValidateCustomer; the seed's Location) and POST /v1/echo.
func SeedRoutes() []Route {
	return []Route{
		{Pattern: "POST /api/AsyncProcessingWorkAcceptor", Name: "echo", Handler: Echo, MediaTypes: []string{"application/json"},
			Validate: ValidateCustomer, Seed: true, CaseInsensitive: true, builtin: true},
		{Pattern: "POST /v1/echo", Name: "echo", Handler: Echo, builtin: true},
	}
}

// ValidateCustomer is the seed's rule: a JSON object whose "id" and
// "customername" are non-empty strings.
func ValidateCustomer(body []byte) error {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the body is not a JSON object: %v", err)
	}
	for _, f := range []string{"id", "customername"} {
		raw, ok := v[f]
		if !ok {
			return fmt.Errorf("%q is required", f)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%q must be a string", f)
		}
		if s == "" {
			return fmt.Errorf("%q must not be empty", f)
		}
	}
	return nil
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

// RouteName makes a route's default name from its method and path: the
// lower-cased letters and digits, each run of anything else one dash;
// POST /v1/reports/{id} is post-v1-reports-id, * is "any".
func RouteName(method, path string) string {
	if method == "*" {
		method = "any"
	}
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(method + " " + path) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
		} else {
			dash = true
		}
	}
	return b.String()
}

// WithSeedRoutes returns routes followed by the SeedRoutes whose method
// and path (regardless of case) no route of routes takes, each given
// settings (nil: as they are).
func WithSeedRoutes(routes []Route, settings func(Route) Route) []Route {
	taken := map[string]bool{}
	for _, r := range routes {
		if m, p, err := ParsePattern(r.Pattern); err == nil {
			taken[m+" "+strings.ToLower(p)] = true
		}
	}
	out := append([]Route(nil), routes...)
	for _, r := range SeedRoutes() {
		if m, p, _ := ParsePattern(r.Pattern); !taken[m+" "+strings.ToLower(p)] {
			if settings != nil {
				r = settings(r)
			}
			out = append(out, r)
		}
	}
	return out
}

// policy is a route's lifecycle settings with the Config's defaults
// filled in.
type policy struct {
	timeout      time.Duration
	maxAttempts  int
	backoff      func(int) time.Duration
	resultURLTTL time.Duration
	retention    time.Duration
	tombstone    time.Duration
	callers      map[string]bool // nil: every caller
	callbacks    []CallbackTarget
	requests     TargetPolicy // nil: no request may name a target
	every        bool
	// maxHistoryBytes is Config.MaxHistoryBytes.
	maxHistoryBytes int
}

// allows reports whether the route takes submissions from c.
func (p *policy) allows(c Caller) bool {
	return p.callers == nil || c.Admin || p.callers[c.Principal] || p.callers["tenant:"+c.Tenant]
}

// resolveRoutes checks routes, fills in their names and returns them with
// the policy of each name.
func resolveRoutes(routes []Route, cfg *Config) ([]Route, map[string]*policy, error) {
	out := make([]Route, 0, len(routes))
	pols := map[string]*policy{}
	seen := map[string]*Route{}
	for _, r := range routes {
		method, path, err := ParsePattern(r.Pattern)
		if err != nil {
			return nil, nil, err
		}
		if r.Name == "" {
			r.Name = RouteName(method, path)
		}
		if err := checkHeaderNames(&r); err != nil {
			return nil, nil, err
		}
		if prev := seen[r.Name]; prev != nil && !(prev.builtin && r.builtin) {
			return nil, nil, fmt.Errorf("two routes are named %q", r.Name)
		}
		seen[r.Name] = &r
		out = append(out, r)
		pols[r.Name] = cfg.policyOf(&r)
	}
	return out, pols, nil
}

func (cfg *Config) policyOf(r *Route) *policy {
	p := &policy{timeout: cfg.Timeout, maxAttempts: cfg.MaxAttempts, backoff: cfg.Backoff,
		resultURLTTL: cfg.ResultURLTTL, retention: cfg.Retention, tombstone: cfg.Tombstone, requests: cfg.CallbackRequests,
		maxHistoryBytes: cfg.MaxHistoryBytes}
	if r == nil {
		return p
	}
	p.callbacks, p.every = r.Callbacks, r.CallbackEvery
	if r.CallbackRequests != nil {
		p.requests = r.CallbackRequests
	}
	if r.Timeout > 0 {
		p.timeout = r.Timeout
	}
	if r.MaxAttempts > 0 {
		p.maxAttempts = r.MaxAttempts
	}
	if r.Backoff != nil {
		p.backoff = r.Backoff
	}
	if r.ResultURLTTL > 0 {
		p.resultURLTTL = r.ResultURLTTL
	}
	if r.Retention > 0 {
		p.retention = r.Retention
	}
	if r.Tombstone > 0 {
		p.tombstone = r.Tombstone
	}
	if len(r.Callers) > 0 {
		p.callers = map[string]bool{}
		for _, c := range r.Callers {
			p.callers[c] = true
		}
	}
	return p
}
