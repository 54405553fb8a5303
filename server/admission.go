package server

import (
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/worker"
)

// Defaults of the arr command's admission flags (docs/operations.md,
// "Admission"). A Go program that embeds the server gets rate limits only
// when it sets them in AdmissionConfig.
const (
	// DefaultSubmitRate and DefaultSubmitBurst: submits a second per
	// principal (per client address, a /64 for IPv6, when anonymous), and
	// at once. Generous: they stop one runaway client from taking the
	// whole server, not a steady user.
	DefaultSubmitRate  = 1000
	DefaultSubmitBurst = 2000
	// DefaultReadRate and DefaultReadBurst: other api requests a second
	// per principal (status reads and long-polls, events, lists,
	// cancels, retries), and at once.
	DefaultReadRate  = 5000
	DefaultReadBurst = 10000
	// DefaultMaxHeaderBytes bounds a request's header block: 64 KiB.
	DefaultMaxHeaderBytes = api.DefaultMaxHeaderBytes
)

// AdmissionConfig: see Config.Admission. The stored-bytes budgets are the
// core's (Config.Core.MaxStoredBytes and MaxTenantStoredBytes).
type AdmissionConfig struct {
	// RateLimits limit api requests per principal, or per client address
	// (an IPv6 address by its /64) for anonymous callers: over its rate a
	// request is answered 429 with Retry-After; every limited response
	// carries the RateLimit-Policy and RateLimit fields. Admins are not
	// limited, nor /healthz, /readyz, /metrics and the signed result
	// URLs. Default: none (the arr command's flags default to
	// DefaultSubmitRate and DefaultReadRate).
	RateLimits api.RateLimits
	// MaxHeaderBytes bounds a request's header block (request line and
	// header fields): the http.Server's MaxHeaderBytes, and the api's
	// check, which answers 431 with a problem for what net/http lets
	// through over it. Default DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int
	// RouteShare is the share of the worker pool's slots one route may
	// hold unless it sets its own Concurrency (worker.Config.RouteShare).
	// Default worker.DefaultRouteShare (3/4); 1 or more: none.
	RouteShare float64
}

// apply puts a's settings into the api's and the pool's configs.
func (a AdmissionConfig) apply(ac *api.Config, wc *worker.Config) {
	if a.MaxHeaderBytes <= 0 {
		a.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if ac != nil {
		if ac.RateLimits == (api.RateLimits{}) {
			ac.RateLimits = a.RateLimits
		}
		if ac.MaxHeaderBytes <= 0 {
			ac.MaxHeaderBytes = a.MaxHeaderBytes
		}
	}
	if wc != nil && wc.RouteShare == 0 {
		wc.RouteShare = a.RouteShare
	}
}

// maxHeaderBytes is the http.Server's MaxHeaderBytes.
func (a AdmissionConfig) maxHeaderBytes() int {
	if a.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return a.MaxHeaderBytes
}
