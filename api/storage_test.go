package api_test

import (
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

// A *arr.StorageError is answered with its status, problem type and
// Retry-After, on a submit and on a retry: 507 when nothing was written
// (full, budgets), 503 when a write failed or outlived its deadline.
func TestStorageErrorsAnswered(t *testing.T) {
	var refuse atomic.Pointer[arr.StorageError]
	var cfg server.Config
	cfg.Core.StorageCheck = func() error {
		if e := refuse.Load(); e != nil {
			return e
		}
		return nil
	}
	s := start(t, cfg)
	id := s.submit("before")
	for _, c := range []struct {
		reason, typ string
		status      int
	}{
		{arr.StorageFull, api.ProblemStorageFull, 507},
		{arr.StorageBudget, api.ProblemStorageFull, 507},
		{arr.StorageTenantBudget, api.ProblemStorageFull, 507},
		{arr.StorageUnavailable, api.ProblemStorageUnavailable, 503},
	} {
		refuse.Store(&arr.StorageError{Reason: c.reason, RetryAfter: 90 * time.Second})
		for _, r := range []*response{
			s.do("POST", "/v1/echo", "x", "Content-Type", "text/plain"),
			s.do("POST", "/v1/operations/"+id+"/retry", ""),
		} {
			wantStatus(t, r, c.status)
			if got := r.Header.Get("Retry-After"); got != "90" {
				t.Errorf("%s: Retry-After %q, want 90", c.reason, got)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s: Content-Type %q", c.reason, ct)
			}
			if got := r.JSON(t)["type"]; got != c.typ {
				t.Errorf("%s: type %v, want %s", c.reason, got, c.typ)
			}
		}
	}
	refuse.Store(nil)
	s.submit("after")
}
