// Package config reads the YAML configuration file of arr serve: the
// server's settings, the routes that accept requests and the handlers that
// run them, and the defaults the routes share.
//
// A file looks like this (examples/arr.yaml has one with every key):
//
//	server:
//	  addr: 127.0.0.1:8080
//	defaults:
//	  timeout: 5m
//	  retention: 7d
//	routes:
//	  - path: /v1/reports
//	    handler: forward
//	    forward:
//	      url: http://127.0.0.1:9000/reports
//	  - path: /v1/customers
//	    handler: echo
//	    schemaFile: customer.schema.json
//
// Load and Parse check everything they can without running anything:
// unknown keys, types, durations, methods, path patterns and their
// conflicts, handlers, URLs, media types, JSON Schemas. Every error names
// the file, the line and the key, e.g.
//
//	arr.yaml:12: routes[1].timeout: "10x" is not a duration (use e.g. 30s, 10m, 24h, 7d)
//
// and all of a file's errors are reported at once.
package config

import (
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// File is a parsed configuration file.
type File struct {
	// Path is the file's name, as given to Load or Parse; messages start
	// with it, and relative schemaFile and exec.dir paths are relative to
	// its directory.
	Path string `yaml:"-"`
	// Server holds the settings of the server. Each one left out keeps
	// the value of its command-line flag, or the flag's default.
	Server Server `yaml:"server"`
	// Defaults apply to every route that leaves a setting at zero (see
	// File.Effective). A setting left out of both keeps the server's
	// built-in default, given with each RouteSettings field.
	Defaults RouteSettings `yaml:"defaults"`
	// Routes are the submit routes, in the file's order.
	Routes []Route `yaml:"routes"`
	// Auth says how callers are authenticated (docs/auth.md).
	Auth Auth `yaml:"auth"`
}

// Server holds the settings of arr serve. A zero value means "not set in
// the file": the command-line flag, or the flag's default, applies.
type Server struct {
	// Addr is the listen address, host:port. Default 127.0.0.1:8080.
	Addr string `yaml:"addr"`
	// AdminAddr, when set, is the admin listener's host:port: /metrics,
	// pprof and the probes are served there, and /metrics no longer on
	// Addr. Default: none.
	AdminAddr string `yaml:"adminAddr"`
	// Data is the data directory: the embedded store, result files and
	// signing keys. Default arr-data.
	Data string `yaml:"data"`
	// PublicURL is the scheme://host[:port][/prefix] of absolute links.
	// Default: https://$WEBSITE_HOSTNAME when set, else the request's Host.
	PublicURL string `yaml:"publicURL"`
	// AllowedHosts are the Hosts (host[:port]) the api answers for besides
	// the loopback ones, when links are built from the request's Host (no
	// publicURL); other Hosts get 421. Default: none.
	AllowedHosts []string `yaml:"allowedHosts"`
	// TrustedProxies are the CIDR prefixes (or IPs) of the proxies whose
	// Forwarded and X-Forwarded-* headers are believed. Default: none.
	TrustedProxies []string `yaml:"trustedProxies"`
	// AllowedOrigins are the origins (scheme://host[:port]) whose browsers
	// may send state-changing requests cross-site. Default: none.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// Store is the operations store URL. Default embedded:{data}/db.
	Store string `yaml:"store"`
	// Queue is the queue URL. Default embedded:{data}/db.
	Queue string `yaml:"queue"`
	// Results is the result store URL. Default embedded:{data}/db;
	// file:DIR keeps one file per result.
	Results string `yaml:"results"`
	// Workers is how many operations run at once; -1 runs no workers (an
	// api-only process). Default 16. A pointer, as 0 is a value ("the
	// default").
	Workers *int `yaml:"workers"`
	// MaxBody is the largest accepted request body. Default 1MiB. Routes
	// may set their own (RouteSettings.MaxBody).
	MaxBody ByteSize `yaml:"maxBody"`
	// MaxQueue is the number of queued operations at which submits get
	// 503. Default 1000000.
	MaxQueue int64 `yaml:"maxQueue"`
	// ResultURLTTL is the lifetime of signed result URLs. Default 10m.
	// Routes may set their own (RouteSettings.ResultTTL).
	ResultURLTTL Duration `yaml:"resultURLTTL"`
	// SyncWait is the longest wait of the seed's OnPending=Synchronous.
	// Default 127s.
	SyncWait Duration `yaml:"syncWait"`
	// MaxWait caps long-poll waits (?wait=, Prefer: wait=). Default 60s.
	MaxWait Duration `yaml:"maxWait"`
	// ShutdownGrace is how long running handlers may finish after
	// SIGTERM. Default 30s.
	ShutdownGrace Duration `yaml:"shutdownGrace"`
	// Lease is how long a worker holds a delivery; it renews the lease
	// every Lease/3 while the handler runs. Default 30s.
	Lease Duration `yaml:"lease"`
	// MaxInterruptions is how many attempts of an operation may be cut
	// short by a worker that died or lost its lease before the operation
	// fails (urn:arr:problem:attempts-exhausted); they do not count toward
	// maxAttempts. Default 10.
	MaxInterruptions int `yaml:"maxInterruptions"`
	// MaxResult bounds a result; a larger one fails the operation without
	// retries (urn:arr:problem:result-too-large). Default 64MiB: the
	// default result store (embedded) holds a result in memory while it
	// writes it; file: results stream, so a larger limit suits them.
	MaxResult ByteSize `yaml:"maxResult"`
	// JanitorInterval is how often expired operations, their results and
	// past tombstones are deleted. Default 1m.
	JanitorInterval Duration `yaml:"janitorInterval"`
	// Callbacks configures callbacks for every route (docs/callbacks.md).
	Callbacks ServerCallbacks `yaml:"callbacks"`
	// Forward turns on gateway mode: a request to a path no route
	// matches is forwarded to this upstream URL (absolute http or https)
	// as an operation. Default: off (such requests are 404).
	Forward string `yaml:"forward"`
	// SeedRoutes keeps the seed's routes, POST
	// /api/AsyncProcessingWorkAcceptor and POST /v1/echo, beside the
	// file's. Default true; set false to free their paths.
	SeedRoutes *bool `yaml:"seedRoutes"`
}

// RouteSettings are the settings a route may set and File.Defaults may
// give to all routes. Zero means "not set"; the built-in default given with
// each field applies when neither the route nor the defaults set it.
type RouteSettings struct {
	// Timeout bounds one attempt of the handler. Default 10m.
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts is how many attempts of an operation may fail (a handler
	// error or a timeout) before it fails; attempts cut short by a worker
	// that died or lost its lease do not count. Default 3.
	MaxAttempts int `yaml:"maxAttempts"`
	// Backoff is the delay before the first retry; it doubles for each
	// retry after that. Default 1s.
	Backoff Duration `yaml:"backoff"`
	// MaxBackoff caps the delay between retries. Default 5m.
	MaxBackoff Duration `yaml:"maxBackoff"`
	// Concurrency caps how many of the route's operations run at once,
	// within the server's workers. Default 0: no per-route limit. (As
	// zero means "not set", a route cannot lift a limit set in defaults.)
	Concurrency int `yaml:"concurrency"`
	// ResultTTL is the lifetime of the route's signed result URLs.
	// Default: server.resultURLTTL (10m).
	ResultTTL Duration `yaml:"resultTTL"`
	// Retention is how long a finished operation and its result are kept.
	// Default 24h.
	Retention Duration `yaml:"retention"`
	// Tombstone is how long after an operation is deleted (at the end of
	// its retention) its status answers 410 Gone instead of 404. Default:
	// the server's.
	Tombstone Duration `yaml:"tombstone"`
	// MaxBody is the route's largest accepted request body. Default:
	// server.maxBody (1MiB).
	MaxBody ByteSize `yaml:"maxBody"`
}

// The built-in handlers; any other Route.Handler names a Go handler.
const (
	HandlerEcho    = "echo"    // the result is the request's body
	HandlerForward = "forward" // replay the request to Route.Forward.URL
	HandlerExec    = "exec"    // run Route.Exec.Command
)

// Route is a submit route: a request matching Method and Path is answered
// 202 and becomes an operation that a worker runs with Handler.
type Route struct {
	// Name names the route in operations, metrics and logs. It matches
	// [a-z0-9][a-z0-9._-]* and is unique in the file. Default: derived
	// from the method and path, e.g. POST /v1/reports is
	// "post-v1-reports".
	Name string `yaml:"name"`
	// Method is the HTTP method; methods are case-sensitive. "*" or "ANY"
	// match any method (Parse sets both to "*"). Default POST.
	Method string `yaml:"method"`
	// Path is a net/http ServeMux path pattern: /v1/reports, a wildcard
	// /v1/items/{id}, a trailing-slash prefix /api/ or /files/{path...}.
	// It starts with /, and may not be under the paths of arr's own api
	// (see Reserved). Required.
	Path string `yaml:"path"`
	// Handler runs the route's operations: echo, forward, exec, or the
	// name of a Go handler the program registers (Parse's knownGo).
	// Required.
	Handler string `yaml:"handler"`
	// Forward configures the forward handler; required with it, refused
	// with any other.
	Forward *Forward `yaml:"forward"`
	// Exec configures the exec handler; required with it, refused with
	// any other.
	Exec *Exec `yaml:"exec"`
	// MediaTypes are the accepted Content-Types, without parameters, e.g.
	// [application/json]; a request with another is 415. Parse lower-cases
	// them. Default: any, or [application/json] when the route has a
	// schema.
	MediaTypes []string `yaml:"mediaTypes"`
	// Callers lists who may submit to the route: principals by name
	// (an API key's name, a JWT subject) and "tenant:NAME" for every
	// principal of a tenant; others get 403. Admins always may. Default:
	// every authenticated caller.
	Callers []string `yaml:"callers"`
	// Schema is a JSON Schema for the body, written inline in YAML or
	// JSON syntax; a body that does not conform is 400. It implies a JSON
	// body. Draft 2020-12 unless the schema's $schema says otherwise;
	// "format" is asserted. Parse replaces the YAML value by its JSON form
	// (map[string]any, []any, string, int, float64, bool, nil). Default:
	// none.
	Schema any `yaml:"schema"`
	// DropHeaders names request headers not to store with the route's
	// operations (so not to pass to its handler), beyond those arr never
	// stores: credentials, hop-by-hop and proxy headers, names with
	// anything but letters, digits and '-' (see arr.StoredHeaders).
	// Default: none.
	DropHeaders []string `yaml:"dropHeaders"`
	// KeepHeaders, when given, is the route's allow-list: only these
	// request headers are stored (so passed to its handler), and never a
	// credential, hop-by-hop or proxy header among them (forward.credentials
	// keeps credentials, encrypted). Default: every header but those.
	KeepHeaders []string `yaml:"keepHeaders"`
	// SchemaFile is the path of a JSON Schema file (JSON, or YAML when it
	// ends in .yaml or .yml), as Schema but kept apart; relative to the
	// config file's directory, and Parse rewrites it so (joined to that
	// directory). At most one of Schema and SchemaFile. Default: none.
	SchemaFile string `yaml:"schemaFile"`
	// InlineResults serves the route's results with Content-Disposition:
	// inline instead of attachment, so that a browser shows them; they
	// keep the sandboxing Content-Security-Policy and nosniff. Default
	// false.
	InlineResults bool `yaml:"inlineResults"`
	// Callbacks are the route's callbacks (docs/callbacks.md). Default:
	// none, and requests may name the targets server.callbacks.allow
	// lists.
	Callbacks *RouteCallbacks `yaml:"callbacks"`
	// RouteSettings are the route's own settings; File.Effective fills
	// the ones left at zero from File.Defaults.
	RouteSettings `yaml:",inline"`
	// Line is the route's line in the file.
	Line int `yaml:"-"`

	schema *jsonschema.Schema // compiled from Schema or SchemaFile by Parse
}

// Forward configures the forward handler.
type Forward struct {
	// URL is the upstream the request is replayed to: an absolute http or
	// https URL. Required.
	URL string `yaml:"url"`
	// Header are headers set on the upstream request, replacing the
	// client's of the same name (e.g. Authorization). Default: none.
	Header map[string]string `yaml:"header"`
	// Credentials names the caller's credential headers passed on to the
	// upstream (e.g. [Authorization]), which arr otherwise never stores:
	// they are stored encrypted, with a key arr keeps in
	// {data}/credential-keys.json. Hop-by-hop headers cannot be named.
	// Default: none.
	Credentials []string `yaml:"credentials"`
	// KeepSetCookie keeps the upstream's Set-Cookie headers in the
	// operation's result, where whoever may read the operation sees them.
	// Default false: they are dropped.
	KeepSetCookie bool `yaml:"keepSetCookie"`
}

// Exec configures the exec handler: the command gets the request's
// body on stdin, and its stdout is the result.
type Exec struct {
	// Command is the program and its arguments, run without a shell (use
	// ["sh", "-c", "..."] for one); a program without a slash is looked
	// up in $PATH. Required.
	Command []string `yaml:"command"`
	// Dir is the command's working directory; relative to the config
	// file's directory, and Parse rewrites it so (joined to that
	// directory). Default: the server's working directory.
	Dir string `yaml:"dir"`
	// Env are environment variables set for the command. It gets none of
	// the server's environment but PATH, HOME, LANG, TZ and those named
	// by PassEnv. Default: none.
	Env map[string]string `yaml:"env"`
	// PassEnv names variables of the server's environment the command
	// gets too (when set). Default: none.
	PassEnv []string `yaml:"passEnv"`
	// ContentType is the media type of the result (stdout), e.g.
	// "text/plain; charset=utf-8". Default: application/octet-stream.
	ContentType string `yaml:"contentType"`
	// KillGrace is how long the command has to exit after SIGTERM (on a
	// timeout or cancel) before it is killed. Default 10s.
	KillGrace Duration `yaml:"killGrace"`
	// PermanentExitCodes are exit codes that fail the operation at once,
	// without retries; any other non-zero code is retried. Default: none.
	PermanentExitCodes []int `yaml:"permanentExitCodes"`
}

// Reserved are the paths of arr's own api. A route's path may not be one
// of them nor under one (for those ending in /, anything under them);
// they are compared case-insensitively, as the seed's /api routes are.
var Reserved = []string{
	"/v1/operations",
	"/healthz",
	"/readyz",
	"/metrics",
	"/openapi.json",
	"/api/RequestStatus/",
	"/blobs/", // signed result URLs (urlsign.DefaultPrefix)
}

// seedRoutes are the seed's routes kept when Server.SeedRoutes is not
// false; the first is matched case-insensitively.
var seedRoutes = []struct{ method, path string }{
	{"POST", "/api/AsyncProcessingWorkAcceptor"},
	{"POST", "/v1/echo"},
}

// Pattern returns the route's net/http ServeMux pattern: "METHOD PATH",
// or PATH alone when the route matches any method.
func (r *Route) Pattern() string {
	if r.Method == "*" || r.Method == "" {
		return r.Path
	}
	return r.Method + " " + r.Path
}

// HasSchema reports whether Parse compiled a JSON Schema for the route's
// body, so that Validate checks something.
func (r *Route) HasSchema() bool { return r.schema != nil }

// Effective returns r's settings with f.Defaults filling the ones r leaves
// at zero. Settings zero in both are left at zero: the server's built-in
// defaults apply to them.
func (f *File) Effective(r *Route) RouteSettings {
	s, d := r.RouteSettings, f.Defaults
	fill(&s.Timeout, d.Timeout)
	fill(&s.MaxAttempts, d.MaxAttempts)
	fill(&s.Backoff, d.Backoff)
	fill(&s.MaxBackoff, d.MaxBackoff)
	fill(&s.Concurrency, d.Concurrency)
	fill(&s.ResultTTL, d.ResultTTL)
	fill(&s.Retention, d.Retention)
	fill(&s.Tombstone, d.Tombstone)
	fill(&s.MaxBody, d.MaxBody)
	return s
}

func fill[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// reserved returns the entry of Reserved that path is, or is under.
func reserved(path string) (string, bool) {
	lit := path
	if i := strings.IndexByte(lit, '{'); i >= 0 {
		lit = lit[:i]
	}
	lit = strings.ToLower(lit)
	for _, r := range Reserved {
		lr := strings.ToLower(r)
		if strings.HasSuffix(lr, "/") {
			if strings.HasPrefix(lit, lr) {
				return r, true
			}
		} else if lit == lr || strings.HasPrefix(lit, lr+"/") {
			return r, true
		}
	}
	return "", false
}

// ServerCallbacks configures callbacks for every route.
type ServerCallbacks struct {
	// Allow lists the targets requests may name with X-Callback-Url on
	// every route that has no allow of its own: host, host:port,
	// *.domain or *; its exact entries (no wildcard) may also be
	// loopback, private or link-local addresses, which callbacks
	// otherwise never reach. The -callback-allow flag, when given,
	// replaces it. Default: none.
	Allow []string `yaml:"allow"`
	// MaxAge is how long after its event a callback is retried. Default
	// 24h.
	MaxAge Duration `yaml:"maxAge"`
	// MinBackoff and MaxBackoff space the attempts: MinBackoff doubling
	// per attempt up to MaxBackoff, with jitter, and at least what a
	// Retry-After asks. Default 5s and 1h.
	MinBackoff Duration `yaml:"minBackoff"`
	MaxBackoff Duration `yaml:"maxBackoff"`
	// Timeout bounds one attempt. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

// RouteCallbacks are a route's callbacks.
type RouteCallbacks struct {
	// Targets are called back for each of the route's operations.
	Targets []CallbackTarget `yaml:"targets"`
	// Allow, when given, replaces server.callbacks.allow for the route:
	// the targets its requests may name with X-Callback-Url ([] for
	// none).
	Allow *[]string `yaml:"allow"`
	// Every calls a request's target on every change of status, not only
	// when the operation finishes. Default false.
	Every bool `yaml:"every"`
}

// CallbackTarget is a callback target of a route.
type CallbackTarget struct {
	// URL is the target, absolute http or https.
	URL string `yaml:"url"`
	// Every calls it on every change of status, not only when the
	// operation finishes. Default false.
	Every bool `yaml:"every"`
}
