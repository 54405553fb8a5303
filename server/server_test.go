package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	_ "github.com/arrhq/arr/embedded" // the default engine
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/resultstore"
)

// Expired operations are deleted with their results; unexpired ones stay.
func TestDeleteExpiredRemovesResults(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(ctx, Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() { _ = s.pool.Run(ctx) }()
	submit := func(body string) string {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/v1/echo", strings.NewReader(body)))
		if rec.Code != http.StatusAccepted {
			t.Fatalf("submit: %d %s", rec.Code, rec.Body)
		}
		return strings.TrimSuffix(strings.TrimPrefix(rec.Header().Get("Operation-Location"), "http://localhost/v1/operations/"), "?redirect=false")
	}
	wait := func(id string) *operation.Operation {
		deadline := time.Now().Add(10 * time.Second)
		for {
			op, err := s.store.Get(ctx, id)
			if err == nil && op.Status == operation.Succeeded {
				return op
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not succeed: %+v %v", id, op, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	old := wait(submit("old"))
	time.Sleep(5 * time.Millisecond) // so that young finishes strictly later
	young := wait(submit("young"))
	// Only the old one is past its retention at this "now".
	now := old.ExpiresAt.Add(time.Nanosecond)
	if !young.ExpiresAt.After(now) {
		t.Fatalf("young expires %s, not after %s", young.ExpiresAt, now)
	}
	s.client.Expire(ctx, now)
	// Deleted, and remembered by its tombstone.
	if _, err := s.store.Get(ctx, old.ID); !errors.Is(err, opstore.ErrGone) {
		t.Fatalf("expired operation: %v", err)
	}
	if _, err := s.results.Open(ctx, old.Result.Key); !errors.Is(err, resultstore.ErrNotFound) {
		t.Fatalf("expired result: %v", err)
	}
	if _, err := s.store.Get(ctx, young.ID); err != nil {
		t.Fatalf("unexpired operation: %v", err)
	}
	r, err := s.results.Open(ctx, young.Result.Key)
	if err != nil {
		t.Fatalf("unexpired result: %v", err)
	}
	r.Close()
}

// A canceled operation is kept for the retention of finished operations
// (one setting, the core's, for every way an operation ends).
func TestCanceledKeepsWorkerRetention(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Config{DataDir: t.TempDir(), Workers: -1, Core: arr.Config{Retention: 3 * time.Hour},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/v1/echo", strings.NewReader("x")))
	loc := rec.Header().Get("Operation-Location")
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("DELETE", loc, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	op, err := s.store.Get(ctx, strings.TrimSuffix(strings.TrimPrefix(loc, "http://localhost/v1/operations/"), "?redirect=false"))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(op.ExpiresAt); d < 2*time.Hour || d > 3*time.Hour {
		t.Fatalf("canceled operation expires in %s, want about 3h", d)
	}
}
