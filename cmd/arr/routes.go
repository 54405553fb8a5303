package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/config"
	"github.com/arrhq/arr/handler/command"
	"github.com/arrhq/arr/handler/forward"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/webhook"
	"github.com/arrhq/arr/worker"
)

// execPIDDir is where the exec handler records the process groups it runs,
// under the data directory, so that the next start kills those a SIGKILLed
// arr left behind.
func execPIDDir(data string) string { return filepath.Join(data, "exec-groups") }

// routes builds the server's routes from the config file's (f may be nil),
// with the seed's routes given the file's defaults, and the gateway
// upstream (gateway may be ""): a "* /" route that forwards every request
// no other route takes.
func routes(f *config.File, gateway, data string, maxResult int64, creds *arr.Credentials) ([]server.Route, error) {
	var out []server.Route
	if f != nil {
		for i := range f.Routes {
			r := &f.Routes[i]
			h, err := handlerFor(r, data, maxResult, creds)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: route %s: %w", f.Path, r.Line, r.Name, err)
			}
			sr := withSettings(server.Route{Pattern: r.Method + " " + r.Path, Name: r.Name, Handler: h, MediaTypes: r.MediaTypes,
				Callers: r.Callers, DropHeaders: r.DropHeaders, KeepHeaders: r.KeepHeaders, InlineResults: r.InlineResults}, f.Effective(r))
			if r.Forward != nil {
				sr.ForwardCredentials = r.Forward.Credentials
			}
			if r.HasSchema() {
				sr.Validate = r.Validate
			}
			if cb := r.Callbacks; cb != nil {
				for _, t := range cb.Targets {
					sr.Callbacks = append(sr.Callbacks, arr.CallbackTarget{URL: t.URL, Every: t.Every})
				}
				sr.CallbackEvery = cb.Every
				if cb.Allow != nil {
					allow, _ := webhook.ParseAllowList(*cb.Allow...) // checked by config.Load
					sr.CallbackRequests = allow
				}
			}
			out = append(out, sr)
		}
	}
	if f != nil && (f.Server.SeedRoutes == nil || *f.Server.SeedRoutes) {
		// The seed's routes, with the file's defaults, unless a route of
		// the file takes their method and path.
		out = arr.WithSeedRoutes(out, func(r arr.Route) arr.Route { return withSettings(r, f.Defaults) })
	}
	if gateway != "" {
		h, err := forward.New(forward.Config{URL: gateway})
		if err != nil {
			return nil, fmt.Errorf("-forward: %w", err)
		}
		gw := server.Route{Pattern: "* /", Name: "gateway", Handler: h}
		if f != nil {
			// The file's defaults apply to the gateway route too.
			gw = withSettings(gw, f.Defaults)
		}
		out = append(out, gw)
	}
	return out, nil
}

// withSettings gives r a config file's route settings.
func withSettings(r server.Route, s config.RouteSettings) server.Route {
	r.MaxBodyBytes, r.Timeout, r.MaxAttempts = int64(s.MaxBody), s.Timeout.Std(), s.MaxAttempts
	r.Concurrency, r.ResultURLTTL = s.Concurrency, s.ResultTTL.Std()
	r.Retention, r.Tombstone = s.Retention.Std(), s.Tombstone.Std()
	if s.Backoff > 0 || s.MaxBackoff > 0 {
		first, limit := s.Backoff.Std(), s.MaxBackoff.Std()
		if first <= 0 {
			first = min(limit, time.Second)
		}
		if limit <= 0 {
			limit = max(first, 5*time.Minute)
		}
		r.Backoff = arr.ExponentialBackoff(first, limit)
	}
	return r
}

// handlerFor builds the handler a config route names.
// An exec command's stdout is bounded by the result limit, so that a
// runaway one is stopped before it fills the spool's disk.
func handlerFor(r *config.Route, data string, maxResult int64, creds *arr.Credentials) (worker.Handler, error) {
	switch r.Handler {
	case config.HandlerEcho:
		return worker.Echo, nil
	case config.HandlerForward:
		var hdr http.Header
		if len(r.Forward.Header) > 0 {
			hdr = http.Header{}
			for k, v := range r.Forward.Header {
				hdr.Set(k, v)
			}
		}
		return forward.New(forward.Config{URL: r.Forward.URL, Header: hdr, Credentials: creds, KeepSetCookie: r.Forward.KeepSetCookie})
	case config.HandlerExec:
		e := r.Exec
		return command.New(command.Config{Command: e.Command, Dir: e.Dir, Env: e.Env, PassEnv: e.PassEnv, ContentType: e.ContentType,
			KillGrace: e.KillGrace.Std(), PermanentExitCodes: e.PermanentExitCodes, PIDDir: execPIDDir(data),
			MaxStdout: maxResult})
	}
	return nil, fmt.Errorf("no handler %q in this program", r.Handler)
}

// credentialKeysFile is the keyring of the key that encrypts the
// credentials routes keep (config.Forward.Credentials), in the data
// directory.
const credentialKeysFile = "credential-keys.json"

// credentials returns the Credentials of the data directory's keyring,
// loaded (created on first start), when a route of f keeps credentials;
// nil otherwise.
func credentials(ctx context.Context, f *config.File, data string) (*arr.Credentials, error) {
	if f == nil || !slices.ContainsFunc(f.Routes, func(r config.Route) bool { return r.Forward != nil && len(r.Forward.Credentials) > 0 }) {
		return nil, nil
	}
	keys, err := urlsign.OpenFileKeys(filepath.Join(data, credentialKeysFile), "")
	if err != nil {
		return nil, err
	}
	c := arr.NewCredentials(keys)
	if err := c.Load(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
