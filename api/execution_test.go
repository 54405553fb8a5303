package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

func text(s string) *worker.Result {
	return &worker.Result{ContentType: "text/plain", Body: []byte(s)}
}

// A failed operation is retried by POST /retry with fresh budgets, keeps
// its history, and then succeeds; retry of anything but a failed (or
// pending) operation is 409.
func TestRetryEndpoint(t *testing.T) {
	var fixed atomic.Bool
	mux := server.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		if !fixed.Load() {
			return nil, worker.Permanent(errors.New("the partner is down"))
		}
		return text("done on attempt " + fmt.Sprint(tk.Attempt)), nil
	})
	s := start(t, server.Config{Mux: mux})
	r := s.do("POST", "/v1/jobs", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	m := s.waitStatus(id, "failed")
	if m["expiresAt"] == nil {
		t.Fatalf("failed without expiry: %v", m)
	}
	// Failed operations stay listable: the dead letters.
	if l := s.get("/v1/operations?status=failed").JSON(t)["items"].([]any); len(l) != 1 || l[0].(map[string]any)["id"] != id {
		t.Fatalf("failed list %v", l)
	}
	wantProblem(t, s.do("GET", "/v1/operations/"+id+"/retry", ""), 405, api.ProblemMethodNotAllowed)

	fixed.Store(true)
	r = s.do("POST", "/v1/operations/"+id+"/retry", "")
	wantStatus(t, r, 202)
	if m := r.JSON(t); m["status"] != "pending" || m["error"] != nil || m["expiresAt"] != nil || r.Header.Get("Location") == "" {
		t.Fatalf("retry answered %v (Location %q)", m, r.Header.Get("Location"))
	}
	m = s.waitStatus(id, "succeeded")
	a := m["attempts"].([]any)
	if len(a) != 2 || a[0].(map[string]any)["outcome"] != "failed" || a[1].(map[string]any)["outcome"] != "succeeded" {
		t.Fatalf("attempts after retry: %v", a)
	}
	if got := s.get("/v1/operations/" + id + "/result?redirect=false"); string(got.Body) != "done on attempt 2" {
		t.Fatalf("result %q", got.Body)
	}
	wantProblem(t, s.do("POST", "/v1/operations/"+id+"/retry", ""), 409, api.ProblemNotRetryable)
	wantProblem(t, s.do("POST", "/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a/retry", ""), 404, api.ProblemNotFound)
}

// Retrying a pending operation is allowed and changes nothing but queueing
// it (again): the repeat of a retry whose answer was lost.
func TestRetryPendingRequeues(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	id := s.submit("x")
	r := s.do("POST", "/v1/operations/"+id+"/retry", "")
	wantStatus(t, r, 202)
	if r.JSON(t)["status"] != "pending" {
		t.Fatalf("retry of pending: %s", r.Body)
	}
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	wantProblem(t, s.do("POST", "/v1/operations/"+id+"/retry", ""), 409, api.ProblemNotRetryable)
}

// Routes are method + path patterns: two methods on one path run different
// handlers, wildcards match, any-method routes take the rest, and other
// methods on a routed path get 405 with Allow.
func TestRoutePatterns(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleFunc("PUT /v1/items/{id}", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return text("put " + tk.Request.Path), nil
	})
	mux.HandleFunc("DELETE /v1/items/{id}", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return text("delete " + tk.Request.Path), nil
	})
	mux.HandleFunc("* /v1/any/", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return text(tk.Request.Method + " " + tk.Request.Path + "?" + tk.Request.RawQuery), nil
	})
	s := start(t, server.Config{Mux: mux})
	for _, c := range []struct{ method, path, want string }{
		{"PUT", "/v1/items/7", "put /v1/items/7"},
		{"DELETE", "/v1/items/8", "delete /v1/items/8"},
		{"PATCH", "/v1/any/x/y?q=1", "PATCH /v1/any/x/y?q=1"},
		{"GET", "/v1/any/z", "GET /v1/any/z?"},
	} {
		r := s.do(c.method, c.path, "")
		wantStatus(t, r, 202)
		id := r.JSON(t)["id"].(string)
		s.waitStatus(id, "succeeded")
		if got := s.get("/v1/operations/" + id + "/result?redirect=false"); string(got.Body) != c.want {
			t.Fatalf("%s %s ran %q, want %q", c.method, c.path, got.Body, c.want)
		}
	}
	r := s.do("POST", "/v1/items/7", "")
	wantProblem(t, r, 405, api.ProblemMethodNotAllowed)
	if allow := r.Header.Get("Allow"); allow != "PUT, DELETE" {
		t.Fatalf("Allow %q", allow)
	}
	// The seed's routes are still there, and arr's own paths win over a
	// prefix route.
	wantStatus(t, s.do("POST", "/v1/echo", "hi"), 202)
	wantStatus(t, s.get("/healthz"), 200)
}

// Invalid routes fail at start with a message that names them.
func TestInvalidRoutes(t *testing.T) {
	h := worker.Echo
	for _, c := range []struct {
		routes []server.Route
		want   string
	}{
		{[]server.Route{{Pattern: "POST v1/x", Handler: h}}, "must start with /"},
		{[]server.Route{{Pattern: "P@ST /v1/x", Handler: h}}, "not an HTTP method"},
		{[]server.Route{{Pattern: "/v1/x"}}, "no handler"},
		{[]server.Route{{Pattern: "/v1/x", Handler: h}, {Pattern: "POST /v1/x", Handler: h}}, "two routes"},
		{[]server.Route{{Pattern: "/v1/x", Handler: h, Name: "a"}, {Pattern: "/v1/y", Handler: h, Name: "a"}}, `named "a"`},
		{[]server.Route{{Pattern: "/v1/{x", Handler: h}}, "/v1/{x"},
	} {
		mux := server.NewServeMux()
		for _, r := range c.routes {
			mux.HandleRoute(r)
		}
		_, err := server.New(context.Background(), server.Config{DataDir: t.TempDir(), Mux: mux})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("routes %+v: error %v, want %q", c.routes, err, c.want)
		}
	}
}

// A route's concurrency limit holds while other routes' work still runs.
func TestRouteConcurrency(t *testing.T) {
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/narrow", Concurrency: 2, Handler: worker.HandlerFunc(
		func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			mu.Unlock()
			return text("n"), nil
		})})
	mux.HandleFunc("/v1/wide", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return text("w"), nil
	})
	s := start(t, server.Config{Mux: mux, Workers: 8})
	var narrow []string
	for range 8 {
		r := s.do("POST", "/v1/narrow", "x")
		wantStatus(t, r, 202)
		narrow = append(narrow, r.JSON(t)["id"].(string))
	}
	// While the narrow route is saturated, the wide one is served.
	r := s.do("POST", "/v1/wide", "x")
	wantStatus(t, r, 202)
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")
	mu.Lock()
	if running != 2 {
		t.Errorf("narrow running %d, want 2", running)
	}
	mu.Unlock()
	close(release)
	for _, id := range narrow {
		s.waitStatus(id, "succeeded")
	}
	if peak != 2 {
		t.Fatalf("peak concurrency of the narrow route %d, want 2", peak)
	}
}

// A handler's *operation.Problem is what the status shows; RetryAfter
// defers the next attempt beyond a shorter backoff.
func TestHandlerProblemAndRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var starts []time.Time
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/p", MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Millisecond },
		Handler: worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return nil, worker.RetryAfter(&operation.Problem{Type: "urn:example:busy", Title: "Busy", Status: 503,
				Detail: "try later", Extensions: map[string]any{"queue": "full"}}, 1200*time.Millisecond)
		})})
	s := start(t, server.Config{Mux: mux})
	r := s.do("POST", "/v1/p", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	m := s.waitStatus(id, "failed")
	e := m["error"].(map[string]any)
	if e["type"] != "urn:example:busy" || e["queue"] != "full" || e["status"] != float64(503) {
		t.Fatalf("error %v", e)
	}
	a := m["attempts"].([]any)
	if len(a) != 2 || a[0].(map[string]any)["error"].(map[string]any)["type"] != "urn:example:busy" {
		t.Fatalf("attempts %v", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := starts[1].Sub(starts[0]); gap < time.Second {
		t.Fatalf("second attempt %v after the first, want ≥ the 1.2s Retry-After", gap)
	}
	// The result: a 4xx (never a 5xx for a stored failure), the stored
	// problem's members kept.
	res := s.get("/v1/operations/" + id + "/result")
	wantProblem(t, res, api.StatusFailed, "urn:example:busy")
	if p := res.JSON(t); p["queue"] != "full" || p["detail"] != "try later" || p["code"] != "Busy" {
		t.Fatalf("result problem %v", p)
	}
}

// A result over MaxResultBytes fails the operation without retries.
func TestResultTooLarge(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleFunc("/v1/big", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return &worker.Result{Reader: strings.NewReader(strings.Repeat("x", 2000))}, nil
	})
	s := start(t, server.Config{Mux: mux, Core: arr.Config{MaxResultBytes: 1000}})
	r := s.do("POST", "/v1/big", "x")
	wantStatus(t, r, 202)
	m := s.waitStatus(r.JSON(t)["id"].(string), "failed")
	if e := m["error"].(map[string]any); e["type"] != worker.ProblemResultTooLarge || len(m["attempts"].([]any)) != 1 {
		t.Fatalf("too large: %v", m)
	}
}

// Progress reports reach Server-Sent Events subscribers as they happen.
func TestProgressInEvents(t *testing.T) {
	step := make(chan struct{})
	mux := server.NewServeMux()
	mux.HandleFunc("/v1/slow", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		for _, pct := range []int{25, 50, 75} {
			p.Report(pct, fmt.Sprintf("step %d", pct))
			select {
			case <-step:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return text("done"), nil
	})
	s := start(t, server.Config{Mux: mux})
	r := s.do("POST", "/v1/slow", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	res, err := client.Get(s.URL + "/v1/operations/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	seen := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		for _, pct := range []int{25, 50, 75} {
			if strings.Contains(line, fmt.Sprintf(`"percentComplete":%d,"message":"step %d"`, pct, pct)) && !seen[fmt.Sprint(pct)] {
				seen[fmt.Sprint(pct)] = true
				step <- struct{}{}
			}
		}
		if strings.Contains(line, `"status":"succeeded"`) {
			break
		}
	}
	if len(seen) != 3 {
		t.Fatalf("progress events seen: %v", seen)
	}
}

// After its retention a finished operation and its result are deleted; its
// status then answers 410 Gone until its tombstone ends, and 404 after.
func TestRetentionTombstone(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/brief", Retention: 2 * time.Second, Tombstone: 1500 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
			return text("short-lived"), nil
		})})
	s := start(t, server.Config{Mux: mux, JanitorInterval: 50 * time.Millisecond})
	r := s.do("POST", "/v1/brief", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	m := s.waitStatus(id, "succeeded")
	href := m["result"].(map[string]any)["href"].(string)
	wantStatus(t, s.get(href), 200)

	deadline := time.Now().Add(10 * time.Second)
	for s.get("/v1/operations/"+id).StatusCode != http.StatusGone {
		if time.Now().After(deadline) {
			t.Fatal("the expired operation never answered 410")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantProblem(t, s.get("/v1/operations/"+id), 410, api.ProblemGone)
	wantProblem(t, s.get("/v1/operations/"+id+"/result"), 410, api.ProblemGone)
	wantProblem(t, s.get("/api/RequestStatus/"+id), 410, api.ProblemGone)
	if got := s.get(href); got.StatusCode < 400 {
		t.Fatalf("the signed URL of a deleted result answered %d", got.StatusCode)
	}
	for s.get("/v1/operations/"+id).StatusCode != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the tombstone never ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantProblem(t, s.get("/v1/operations/"+id), 404, api.ProblemNotFound)
}

// An operation past its retention answers 410 at once, before the janitor
// has deleted it, rather than a 303 to a signed URL that has expired.
func TestExpiredBeforeDeletionIsGone(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "/v1/brief", Retention: time.Second, Handler: worker.Echo})
	s := start(t, server.Config{Mux: mux, JanitorInterval: time.Hour})
	r := s.do("POST", "/v1/brief", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "succeeded")
	time.Sleep(1100 * time.Millisecond)
	wantProblem(t, s.get("/v1/operations/"+id), 410, api.ProblemGone)
	wantProblem(t, s.get("/v1/operations/"+id+"/result"), 410, api.ProblemGone)
	wantProblem(t, s.get("/v1/operations/"+id+"/events"), 410, api.ProblemGone)
}

// A catch-all route (gateway mode) takes every path but arr's own: those
// answer as arr does, and unknown paths under arr's prefixes are 404.
func TestCatchAllLeavesArrsPaths(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleFunc("* /", func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
		return text(tk.Request.Method + " " + tk.Request.Path), nil
	})
	s := start(t, server.Config{Mux: mux})
	r := s.do("PATCH", "/anything/at/all", "x")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "succeeded")
	if got := s.get("/v1/operations/" + id + "/result?redirect=false"); string(got.Body) != "PATCH /anything/at/all" {
		t.Fatalf("result %q", got.Body)
	}
	for _, p := range []string{"/v1/operations/", "/v1/operations/" + id + "/typo", "/api/RequestStatus/a/b"} {
		wantProblem(t, s.get(p), 404, api.ProblemNotFound)
	}
	wantStatus(t, s.get("/healthz"), 200)
	wantStatus(t, s.get("/v1/operations"), 200)
	// The seed's routes are still the seed's.
	wantStatus(t, s.postJSON("/api/AsyncProcessingWorkAcceptor", `{"id":"1","customername":"C"}`), 202)
	wantProblem(t, s.postJSON("/api/AsyncProcessingWorkAcceptor", `{}`), 400, api.ProblemInvalidBody)
}
