package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

// The two links of a 202 and what each answers, for the clients that
// follow them (docs/http-api.md, "Clients").

// failing is an echo handler that fails for good on the body "fail", and
// echoes any other.
var failing = worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
	if string(t.Request.Body) == "fail" {
		return nil, worker.Permanent(errors.New("asked to fail"))
	}
	return &worker.Result{Body: t.Request.Body, ContentType: t.Request.Header.Get("Content-Type")}, nil
})

// wantCodeMessage checks a problem object's Azure members: code as want,
// message its detail (else its title).
func wantCodeMessage(t *testing.T, where string, p map[string]any, code string) {
	t.Helper()
	msg := p["detail"]
	if msg == nil {
		msg = p["title"]
	}
	if p["code"] != code || p["message"] != msg || msg == nil {
		t.Fatalf("%s: problem %v, want code %q and message %v", where, p, code, msg)
	}
}

// A v1 route's 202: Location is …/result?redirect=false (202 + Location,
// itself, while pending); Operation-Location is the monitor with
// ?redirect=false (200 with the JSON).
func TestAcceptedLinksWhilePending(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	r := s.do("POST", "/v1/echo", "x", "Content-Type", "text/plain")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	loc, opLoc := r.Header.Get("Location"), r.Header.Get("Operation-Location")
	if loc != s.URL+"/v1/operations/"+id+"/result?redirect=false" {
		t.Fatalf("Location %q", loc)
	}
	if opLoc != s.URL+"/v1/operations/"+id+"?redirect=false" {
		t.Fatalf("Operation-Location %q", opLoc)
	}
	mon := s.get(opLoc)
	wantStatus(t, mon, 200)
	if m := mon.JSON(t); m["status"] != "pending" || m["resourceLocation"] != nil {
		t.Fatalf("monitor %v", m)
	}
	for _, u := range []string{loc, loc + "&x=1", s.URL + "/v1/operations/" + id + "/result"} {
		p := s.get(u)
		wantStatus(t, p, 202)
		if p.Header.Get("Location") != u || p.Header.Get("Retry-After") == "" {
			t.Fatalf("GET %s: headers %v", u, p.Header)
		}
	}
}

// Succeeded: the monitor (Operation-Location) answers 200 with
// resourceLocation, which answers 200 with the bytes, as does Location.
func TestLinksWhenSucceeded(t *testing.T) {
	s := start(t, server.Config{})
	r := s.do("POST", "/v1/echo", `{"n":1}`, "Content-Type", "application/json")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "succeeded")
	mon := s.get(r.Header.Get("Operation-Location"))
	wantStatus(t, mon, 200)
	m := mon.JSON(t)
	rl, _ := m["resourceLocation"].(string)
	if m["status"] != "succeeded" || rl != s.URL+"/v1/operations/"+id+"/result?redirect=false" {
		t.Fatalf("monitor %v", m)
	}
	for _, u := range []string{rl, r.Header.Get("Location")} {
		b := s.get(u)
		wantStatus(t, b, 200)
		if string(b.Body) != `{"n":1}` || b.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %q %v", u, b.Body, b.Header)
		}
	}
	// links.self is still the pattern's monitor: 303 to the result.
	if self := s.get(m["links"].(map[string]any)["self"].(string)); self.StatusCode != 303 {
		t.Fatalf("links.self answered %d", self.StatusCode)
	}
}

// Failed: the monitor answers 200 with error (code, message); Location
// answers 424 with the stored problem's type, title and detail.
func TestLinksWhenFailed(t *testing.T) {
	s := start(t, server.Config{Worker: worker.Config{Handlers: map[string]worker.Handler{"echo": failing}}})
	r := s.do("POST", "/v1/echo", "fail", "Content-Type", "text/plain")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "failed")
	mon := s.get(r.Header.Get("Operation-Location"))
	wantStatus(t, mon, 200)
	m := mon.JSON(t)
	e, _ := m["error"].(map[string]any)
	if m["status"] != "failed" || e == nil || e["type"] != worker.ProblemHandlerFailed || e["status"] != float64(500) {
		t.Fatalf("monitor %v", m)
	}
	wantCodeMessage(t, "error", e, "HandlerFailed")
	if e["message"] != "asked to fail" {
		t.Fatalf("error message %v", e["message"])
	}
	a := m["attempts"].([]any)[0].(map[string]any)["error"].(map[string]any)
	wantCodeMessage(t, "attempts[0].error", a, "HandlerFailed")

	res := s.get(r.Header.Get("Location"))
	wantProblem(t, res, api.StatusFailed, worker.ProblemHandlerFailed)
	p := res.JSON(t)
	if p["title"] != e["title"] || p["detail"] != "asked to fail" {
		t.Fatalf("result problem %v, stored %v", p, e)
	}
	wantCodeMessage(t, "result problem", p, "HandlerFailed")
}

// Canceled: Location answers 409 operation-canceled; the monitor 200.
func TestLinksWhenCanceled(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	r := s.do("POST", "/v1/echo", "x", "Content-Type", "text/plain")
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	mon := s.get(r.Header.Get("Operation-Location"))
	wantStatus(t, mon, 200)
	m := mon.JSON(t)
	if m["status"] != "canceled" {
		t.Fatalf("monitor %v", m)
	}
	wantCodeMessage(t, "error", m["error"].(map[string]any), "OperationCanceled")
	res := s.get(r.Header.Get("Location"))
	wantProblem(t, res, api.StatusCanceled, api.ProblemOperationCanceled)
	wantCodeMessage(t, "result problem", res.JSON(t), "OperationCanceled")
}

// The seed's status URL answers a failed operation with a 424 problem
// and a canceled one with a 409, whatever its options; never a 200.
func TestSeedStatusFailedAndCanceled(t *testing.T) {
	fail := worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		return nil, worker.Permanent(errors.New("asked to fail"))
	})
	s := start(t, server.Config{Worker: worker.Config{Handlers: map[string]worker.Handler{"echo": fail}}})
	r := s.postJSON("/api/AsyncProcessingWorkAcceptor", seedBody)
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	s.waitStatus(id, "failed")
	bare := s.URL + "/api/RequestStatus/" + id
	for _, u := range []string{r.Header.Get("Location"), bare, bare + "?OnComplete=Stream", bare + "?OnPending=Synchronous"} {
		res := s.get(u)
		wantProblem(t, res, api.StatusFailed, worker.ProblemHandlerFailed)
		wantCodeMessage(t, u, res.JSON(t), "HandlerFailed")
	}

	s2 := start(t, server.Config{Workers: -1})
	r = s2.postJSON("/api/AsyncProcessingWorkAcceptor", seedBody)
	wantStatus(t, r, 202)
	id = r.JSON(t)["id"].(string)
	// Pending, its Location is a status-code URL: 202 + itself.
	p := s2.get(r.Header.Get("Location"))
	wantStatus(t, p, 202)
	if p.Header.Get("Location") != r.Header.Get("Location") {
		t.Fatalf("pending Location %q, want %q", p.Header.Get("Location"), r.Header.Get("Location"))
	}
	wantStatus(t, s2.do("DELETE", "/v1/operations/"+id, ""), 200)
	for _, u := range []string{r.Header.Get("Location"), s2.URL + "/api/RequestStatus/" + id} {
		wantProblem(t, s2.get(u), api.StatusCanceled, api.ProblemOperationCanceled)
	}
}

// Every problem arr answers has code and message besides RFC 9457's
// members.
func TestProblemsHaveCodeAndMessage(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	for _, c := range []struct {
		path, code string
		status     int
	}{
		{"/v1/operations/01a24b85-cb56-70a8-9b92-7c0b859f084c", "NotFound", 404},
		{"/v1/operations/nope", "InvalidId", 400},
		{"/v1/operations?limit=0", "InvalidParameter", 400},
		{"/no/such/route", "NotFound", 404},
	} {
		r := s.get(c.path)
		wantStatus(t, r, c.status)
		wantCodeMessage(t, c.path, r.JSON(t), c.code)
	}
	r := s.postJSON("/api/AsyncProcessingWorkAcceptor", `{"id":""}`)
	wantStatus(t, r, 400)
	wantCodeMessage(t, "invalid body", r.JSON(t), "InvalidBody")
}

// Retry-After is the operation's own: by its route's run times (a slow
// route's do not lengthen a fast one's), and for a running operation by
// how long it has run.
func TestRetryAfterPerRoute(t *testing.T) {
	release := make(chan struct{})
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "POST /v1/slow", Name: "slow",
		Handler: worker.HandlerFunc(func(ctx context.Context, tk *worker.Task, p worker.Progress) (*worker.Result, error) {
			if string(tk.Request.Body) == "block" {
				<-release
			} else {
				time.Sleep(2500 * time.Millisecond)
			}
			return &worker.Result{Body: []byte("done")}, nil
		})})
	s := start(t, server.Config{Mux: mux})
	defer close(release)
	retryAfter := func(r *response) int {
		t.Helper()
		n, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		return n
	}

	// One slow run teaches arr the slow route's run time.
	r := s.do("POST", "/v1/slow", "sleep")
	wantStatus(t, r, 202)
	s.waitStatus(r.JSON(t)["id"].(string), "succeeded")

	// The echo route knows nothing of it: 1 s.
	e := s.do("POST", "/v1/echo", "x", "Content-Type", "text/plain")
	wantStatus(t, e, 202)
	if n := retryAfter(e); n != 1 {
		t.Fatalf("echo's Retry-After %d after a 2.5 s run of another route, want 1", n)
	}
	s.waitStatus(e.JSON(t)["id"].(string), "succeeded")

	// A slow operation: about its route's 2.5 s while it is pending or
	// has just started…
	r = s.do("POST", "/v1/slow", "block")
	wantStatus(t, r, 202)
	if n := retryAfter(r); n < 2 || n > 4 {
		t.Fatalf("slow's Retry-After %d, want about 3", n)
	}
	id := r.JSON(t)["id"].(string)
	// (Polled without a long-poll wait, which would wait for the next
	// change of a running operation.)
	var mon *response
	for deadline := time.Now().Add(5 * time.Second); ; {
		mon = s.get("/v1/operations/" + id)
		wantStatus(t, mon, 200)
		if mon.JSON(t)["status"] == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never running: %s", mon.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := retryAfter(mon); n < 2 || n > 3 {
		t.Fatalf("running slow operation's Retry-After %d, want 2 or 3 (2.5 s less the little it ran)", n)
	}
	// …and less once it has run most of that.
	time.Sleep(1800 * time.Millisecond)
	mon = s.get("/v1/operations/" + id)
	if n := retryAfter(mon); n != 1 {
		t.Fatalf("Retry-After %d after 1.8 s of a 2.5 s route, want 1: %s", n, mon.Body)
	}
	// Long past it, a quarter of the time it has run: after 6 s, 2.
	time.Sleep(4200 * time.Millisecond)
	mon = s.get("/v1/operations/" + id)
	if n := retryAfter(mon); n != 2 {
		t.Fatalf("Retry-After %d after 6 s of a 2.5 s route, want 2 (6 s / 4, rounded up): %s", n, mon.Body)
	}
}

// /openapi.json marks the long-running operations for code generators:
// x-ms-long-running-operation and final-state-via location (the Location
// URL gives the result, for every method, and the failure).
func TestOpenAPILongRunning(t *testing.T) {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{Pattern: "PUT /v1/items/{id}", Name: "items", Handler: failing})
	s := start(t, server.Config{Mux: mux, Workers: -1})
	r := s.get("/openapi.json")
	wantStatus(t, r, 200)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, method string }{
		{"/v1/echo", "post"}, {"/api/AsyncProcessingWorkAcceptor", "post"}, {"/v1/items/{id}", "put"},
		{"/v1/operations/{id}/retry", "post"},
	} {
		raw, ok := doc.Paths[c.path][c.method]
		if !ok {
			t.Fatalf("no %s %s in %s", c.method, c.path, r.Body)
		}
		var op struct {
			LRO     *bool `json:"x-ms-long-running-operation"`
			Options struct {
				FinalStateVia string `json:"final-state-via"`
			} `json:"x-ms-long-running-operation-options"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatal(err)
		}
		if op.LRO == nil || !*op.LRO || op.Options.FinalStateVia != "location" {
			t.Fatalf("%s %s: %s", c.method, c.path, raw)
		}
	}
	// Not a long-running operation: the monitor itself.
	if strings.Contains(string(doc.Paths["/v1/operations/{id}"]["get"]), "x-ms-long-running") {
		t.Fatal("the monitor is marked long-running")
	}
}
