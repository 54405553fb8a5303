package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// probes serves liveness (/healthz) and readiness (/readyz), as the api
// does (a failed readiness is a 503 with a generic detail and its error
// in the log), and, with metrics, the Prometheus metrics, plus extra;
// nothing else of the api. It is what a worker process serves on Addr and
// what the admin listener serves.
func (s *Server) probes(metrics bool, extra map[string]http.Handler) http.Handler {
	m := http.NewServeMux()
	m.Handle("GET /healthz", s.api)
	m.Handle("GET /readyz", s.api)
	if metrics {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	}
	for pattern, h := range extra {
		m.Handle(pattern, h)
	}
	return m
}
