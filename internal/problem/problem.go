// Package problem writes RFC 9457 problem details over HTTP: the one
// writer of application/problem+json that the api and the signed-URL
// handler share.
package problem

import (
	"encoding/json"
	"net/http"

	"github.com/arrhq/arr/operation"
)

// Write answers r (which may be nil) with p: its Status (a 5xx for a
// status outside 400–599), Content-Type application/problem+json,
// Cache-Control: no-store and X-Content-Type-Options: nosniff, and p as
// JSON, left out when r is a HEAD. A Content-Length set before is
// removed.
func Write(w http.ResponseWriter, r *http.Request, p *operation.Problem) {
	status := p.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(p)
}
