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
	starting := s.starting(nil)
	probe := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opened.Load() {
			s.api.ServeHTTP(w, r)
		} else { // the stores are not open yet (storage.go)
			starting.ServeHTTP(w, r)
		}
	})
	m.Handle("GET /healthz", probe)
	m.Handle("GET /readyz", probe)
	if metrics {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	}
	for pattern, h := range extra {
		m.Handle(pattern, h)
	}
	return m
}
