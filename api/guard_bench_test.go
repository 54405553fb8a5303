package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkGuard is the cost the guard adds to every request: a submit as
// curl sends it, from a loopback client.
func BenchmarkGuard(b *testing.B) {
	s := &Server{cop: http.NewCrossOriginProtection()}
	req := httptest.NewRequest("POST", "http://localhost:8080/api/AsyncProcessingWorkAcceptor?x=1", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "curl/8.5.0")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Idempotency-Key", "k-123")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if s.guard(w, req) == nil {
			b.Fatal(w.Body)
		}
	}
}
