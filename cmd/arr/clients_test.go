package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// Real clients of the asynchronous request-reply pattern against a real
// `arr serve` (docs/http-api.md, "Clients"): the Azure SDK for Go's
// poller (azcore runtime.NewPoller, PollUntilDone, and resumed from its
// ResumeToken), and a Logic-Apps-style poller written from Microsoft's
// documented behaviour. Each runs the same scenarios (success, slow,
// failure, cancel) on a v1 echo route, the seed's route and a forward
// route in front of an upstream.

// clientsUpstream is the forward route's upstream; the last segment of
// the path says what it does.
type clientsUpstream struct {
	*httptest.Server
	hold    chan struct{} // …/hold waits until it is closed
	release func()
}

func newClientsUpstream(t *testing.T) *clientsUpstream {
	u := &clientsUpstream{hold: make(chan struct{})}
	u.release = sync.OnceFunc(func() { close(u.hold) })
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch path.Base(r.URL.Path) {
		case "ok":
			io.WriteString(w, `{"up":"ok"}`)
		case "slow":
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			time.Sleep(time.Duration(ms) * time.Millisecond)
			io.WriteString(w, `{"up":"slow"}`)
		case "hold":
			select {
			case <-u.hold:
			case <-r.Context().Done():
			}
			io.WriteString(w, `{"up":"held"}`)
		case "bad": // a 4xx: upstream-rejected, not retried
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"bad input"}`)
		default: // a 5xx: upstream-error, failed for good (maxAttempts 1)
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"boom"}`)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// startClientsArr starts `arr serve` with workers workers, results of at
// most 64 bytes (a longer echo fails with result-too-large: how the echo
// and seed routes are made to fail) and a forward route POST /v1/fwd/{x}
// to up, which is not retried. The upstream's held requests are released
// before arr stops.
func startClientsArr(t *testing.T, up *clientsUpstream, workers int) string {
	t.Helper()
	cfg := writeConfig(t, `
routes:
  - path: /v1/fwd/{x}
    handler: forward
    forward:
      url: `+up.URL+`/u
    maxAttempts: 1
`)
	p := startArr(t, freeAddr(t), t.TempDir(), "-config", cfg, "-workers", strconv.Itoa(workers), "-max-result", "64")
	t.Cleanup(func() { p.stop(t) })
	t.Cleanup(up.release) // runs first
	return "http://" + p.addr
}

// subject is one request to a route and what it should end with.
type subject struct {
	name, path, contentType, body string
	result                        string // on success: the result's bytes
	code                          string // on failure: the problem's code
}

var (
	successes = []subject{
		{name: "echo", path: "/v1/echo", contentType: "application/json", body: `{"hello":"echo"}`, result: `{"hello":"echo"}`},
		{name: "seed", path: "/api/AsyncProcessingWorkAcceptor", contentType: "application/json",
			body: `{"id":"1","customername":"C"}`, result: `{"id":"1","customername":"C"}`},
		{name: "forward", path: "/v1/fwd/ok", contentType: "application/json", body: `{}`, result: `{"up":"ok"}`},
	}
	failures = []subject{
		{name: "echo", path: "/v1/echo", contentType: "application/json",
			body: `{"pad":"` + strings.Repeat("x", 80) + `"}`, code: "ResultTooLarge"},
		{name: "seed", path: "/api/AsyncProcessingWorkAcceptor", contentType: "application/json",
			body: `{"id":"1","customername":"` + strings.Repeat("C", 80) + `"}`, code: "ResultTooLarge"},
		{name: "forward-400", path: "/v1/fwd/bad", contentType: "application/json", body: `{}`, code: "UpstreamRejected"},
		{name: "forward-500", path: "/v1/fwd/boom", contentType: "application/json", body: `{}`, code: "UpstreamError"},
	}
)

// outcome is how a client saw an operation end.
type outcome struct {
	result []byte // on success
	status int    // on failure: the HTTP status of the final answer
	code   string // on failure: the error code
	polls  int    // GETs of the link the client polls
	fiveXX int    // 5xx answers the client had to retry (Logic Apps)
}

// client submits s to base and follows the operation to its end;
// accepted is called with the operation's id once it is accepted. An
// error is a client that could not follow the pattern at all.
type client func(base string, s subject, accepted func(id string)) (outcome, error)

var clients = []struct {
	name string
	run  client
}{
	{"azcore", func(base string, s subject, accepted func(string)) (outcome, error) {
		return azcorePoll(base, s, false, accepted)
	}},
	{"azcore-resumed", func(base string, s subject, accepted func(string)) (outcome, error) {
		return azcorePoll(base, s, true, accepted)
	}},
	{"logicapps", logicAppsPoll},
}

// noRedirects is the clients' transport: arr's links must answer what
// the clients need without their following a redirect.
var noRedirects = &http.Client{Timeout: 30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// countGets is a pipeline policy that counts the GETs of the status
// monitor (/v1/operations/{id}, the Operation-Location).
type countGets struct{ n *atomic.Int32 }

func (c countGets) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/operations/"); ok && r.Method == http.MethodGet && !strings.Contains(rest, "/") {
		c.n.Add(1)
	}
	return req.Next()
}

// azcorePoll is the Azure SDK for Go's long-running-operation poller, as
// a generated client uses it: the POST through a pipeline (no auth
// policy), runtime.NewPoller on its response, PollUntilDone. Not resumed,
// it says final-state-via location, as /openapi.json does; resumed, it
// takes the poller's ResumeToken at once, leaves final-state-via unset
// (so the SDK takes the succeeded operation's resourceLocation) and polls
// with a poller made from the token.
func azcorePoll(base string, s subject, resume bool, accepted func(string)) (outcome, error) {
	var polls atomic.Int32
	pl := runtime.NewPipeline("arrtest", "v0.0.1", runtime.PipelineOptions{}, &policy.ClientOptions{
		Transport: noRedirects, PerCallPolicies: []policy.Policy{countGets{&polls}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := runtime.NewRequest(ctx, http.MethodPost, base+s.path)
	if err != nil {
		return outcome{}, err
	}
	if err := req.SetBody(streaming.NopCloser(strings.NewReader(s.body)), s.contentType); err != nil {
		return outcome{}, err
	}
	resp, err := pl.Do(req)
	if err != nil {
		return outcome{}, err
	}
	b, err := runtime.Payload(resp) // read, and kept for the poller
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return outcome{}, fmt.Errorf("POST %s: %d %s %v", s.path, resp.StatusCode, b, err)
	}
	var op struct{ ID, Status string }
	if err := json.Unmarshal(b, &op); err != nil || op.ID == "" {
		return outcome{}, fmt.Errorf("202 body %s: %v", b, err)
	}
	accepted(op.ID)

	opts := &runtime.NewPollerOptions[json.RawMessage]{FinalStateVia: runtime.FinalStateViaLocation}
	if resume {
		opts = nil
	}
	p, err := runtime.NewPoller(resp, pl, opts)
	if err != nil {
		return outcome{}, err
	}
	if p.Done() {
		return outcome{}, fmt.Errorf("the poller is done on a 202 of a %s operation", op.Status)
	}
	if resume {
		tok, err := p.ResumeToken()
		if err != nil {
			return outcome{}, err
		}
		if p, err = runtime.NewPollerFromResumeToken[json.RawMessage](tok, pl, nil); err != nil {
			return outcome{}, fmt.Errorf("resume from %s: %v", tok, err)
		}
	}
	res, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second})
	out := outcome{polls: int(polls.Load())}
	if err != nil {
		var re *azcore.ResponseError
		if !errors.As(err, &re) {
			return outcome{}, fmt.Errorf("PollUntilDone: %v (%T), want an *azcore.ResponseError", err, err)
		}
		out.status, out.code = re.StatusCode, re.ErrorCode
		return out, nil
	}
	out.result = res
	return out, nil
}

// logicAppsPoll is an HTTP client that follows the asynchronous pattern
// as Azure Logic Apps' HTTP action documents it: the request's 202 gives
// a Location, which it GETs, waiting Retry-After seconds each time, for
// as long as the answer is 202; the first other answer ends it: a 2xx is
// the action's output (that response's body), a 4xx its failure. 408,
// 429 and 5xx are retried (its default retry policy: up to 4 times); a
// redirect is not followed (so it would be a failure).
func logicAppsPoll(base string, s subject, accepted func(string)) (outcome, error) {
	req, _ := http.NewRequest(http.MethodPost, base+s.path, strings.NewReader(s.body))
	req.Header.Set("Content-Type", s.contentType)
	res, body, err := laDo(req)
	if err != nil {
		return outcome{}, err
	}
	if res.StatusCode != http.StatusAccepted {
		return outcome{}, fmt.Errorf("POST %s: %d %s", s.path, res.StatusCode, body)
	}
	var op struct{ ID string }
	if err := json.Unmarshal(body, &op); err != nil || op.ID == "" {
		return outcome{}, fmt.Errorf("202 body %s: %v", body, err)
	}
	accepted(op.ID)
	var out outcome
	loc := res.Header.Get("Location")
	retries := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		wait := time.Second
		if ra := res.Header.Get("Retry-After"); ra != "" {
			n, err := strconv.Atoi(ra)
			if err != nil || n < 1 {
				return outcome{}, fmt.Errorf("Retry-After %q", ra)
			}
			wait = time.Duration(n) * time.Second
		} else if res.StatusCode == http.StatusAccepted {
			return outcome{}, fmt.Errorf("a 202 without Retry-After: %v", res.Header)
		}
		if loc == "" || !strings.HasPrefix(loc, "http") {
			return outcome{}, fmt.Errorf("Location %q is not an absolute URL", loc)
		}
		time.Sleep(wait)
		req, _ := http.NewRequest(http.MethodGet, loc, nil)
		if res, body, err = laDo(req); err != nil {
			return out, err
		}
		out.polls++
		switch c := res.StatusCode; {
		case c == http.StatusAccepted:
			if l := res.Header.Get("Location"); l != "" {
				loc = l
			}
		case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
			out.fiveXX++
			if retries++; retries > 4 {
				out.status = c
				return out, nil
			}
		case c >= 200 && c < 300:
			out.result = body
			return out, nil
		default:
			out.status = c
			var p struct{ Code string }
			_ = json.Unmarshal(body, &p)
			out.code = p.Code
			return out, nil
		}
	}
	return out, fmt.Errorf("%s: not finished after a minute", loc)
}

func laDo(req *http.Request) (*http.Response, []byte, error) {
	res, err := noRedirects.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// runAll runs every client on every subject, all at once (not as
// parallel subtests, which run only -parallel at a time), then checks
// each outcome with check in a subtest; accepted is called with each
// operation's id.
func runAll(t *testing.T, base string, subjects []subject, accepted func(id string), check func(t *testing.T, s subject, o outcome)) {
	t.Helper()
	type run struct {
		name string
		s    subject
		o    outcome
		err  error
	}
	var runs []*run
	var wg sync.WaitGroup
	for _, s := range subjects {
		for _, c := range clients {
			r := &run{name: c.name + "/" + s.name, s: s}
			runs = append(runs, r)
			wg.Go(func() { r.o, r.err = c.run(base, s, accepted) })
		}
	}
	wg.Wait()
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			if r.err != nil {
				t.Fatal(r.err)
			}
			check(t, r.s, r.o)
		})
	}
}

func wantResult(t *testing.T, s subject, o outcome) {
	t.Helper()
	if o.status != 0 || !bytes.Equal(o.result, []byte(s.result)) {
		t.Fatalf("outcome %+v (%s), want the result %s", o, o.result, s.result)
	}
	if o.fiveXX != 0 {
		t.Fatalf("%d answers were 5xx", o.fiveXX)
	}
}

func wantFailure(t *testing.T, o outcome, status int, code string) {
	t.Helper()
	if o.result != nil || o.status != status || o.code != code || o.fiveXX != 0 {
		t.Fatalf("outcome %+v (%s), want a %d with code %s and no 5xx", o, o.result, status, code)
	}
}

// submitRunning submits a forward operation to path and waits until a
// worker runs it.
func submitRunning(t *testing.T, base, path string) {
	t.Helper()
	id := submitTo(t, base, "POST", path, "application/json", `{}`)
	waitOp(t, base, id, 20*time.Second, func(o opJSON) bool { return o.Status == "running" })
}

// Success and failure, on a server with workers to spare: the result is
// the bytes; a failure is a 424 whose code is the stored problem's.
func TestClientsSucceedAndFail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr serve")
	}
	up := newClientsUpstream(t)
	base := startClientsArr(t, up, 16)
	t.Run("succeed", func(t *testing.T) {
		runAll(t, base, successes, func(string) {}, wantResult)
	})
	t.Run("fail", func(t *testing.T) {
		runAll(t, base, failures, func(string) {}, func(t *testing.T, s subject, o outcome) {
			wantFailure(t, o, 424, s.code)
		})
	})
}

// Slow: one worker, busy for 2.5 s with another operation, so that every
// client's operation waits behind it and is polled a few times.
func TestClientsSlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr serve")
	}
	up := newClientsUpstream(t)
	base := startClientsArr(t, up, 1)
	submitRunning(t, base, "/v1/fwd/slow?ms=2500")
	runAll(t, base, successes, func(string) {}, func(t *testing.T, s subject, o outcome) {
		wantResult(t, s, o)
		if o.polls < 2 {
			t.Fatalf("%d polls, want a few", o.polls)
		}
	})
}

// Canceled: one worker, held by another operation; each client's
// operation is canceled 1.5 s after it was accepted, while the client
// polls: a 409 whose code is OperationCanceled.
func TestClientsCanceled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr serve")
	}
	up := newClientsUpstream(t)
	base := startClientsArr(t, up, 1)
	submitRunning(t, base, "/v1/fwd/hold")
	cancelLater := func(id string) {
		time.AfterFunc(1500*time.Millisecond, func() {
			req, _ := http.NewRequest(http.MethodDelete, base+"/v1/operations/"+id, nil)
			// The clients poll until they see it canceled: t is alive.
			res, err := noRedirects.Do(req)
			if err != nil {
				t.Errorf("cancel %s: %v", id, err)
				return
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("cancel %s: %d", id, res.StatusCode)
			}
		})
	}
	runAll(t, base, successes, cancelLater, func(t *testing.T, s subject, o outcome) {
		wantFailure(t, o, 409, "OperationCanceled")
		if o.polls < 1 {
			t.Fatalf("%d polls", o.polls)
		}
	})
}
