package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

const seedBody = `{"id":"1234","customername":"Contoso"}`

// The seed README's curl: 202 with an absolute Location (the status URL
// with the options of a status-code URL); following it (after processing)
// downloads exactly the JSON that was sent.
func TestSeedAcceptorRoundTrip(t *testing.T) {
	s := start(t, server.Config{})
	for _, path := range []string{"/api/asyncprocessingworkacceptor", "/api/AsyncProcessingWorkAcceptor", "/API/ASYNCPROCESSINGWORKACCEPTOR"} {
		r := s.postJSON(path, seedBody, "Accept", "application/json")
		wantStatus(t, r, 202)
		id := r.JSON(t)["id"].(string)
		bare := s.URL + "/api/RequestStatus/" + id
		if loc := r.Header.Get("Location"); loc != bare+"?OnPending=Accepted&OnComplete=Stream" {
			t.Fatalf("Location %q, want %s?OnPending=Accepted&OnComplete=Stream", loc, bare)
		}
		if r.Header.Get("Operation-Location") != s.URL+"/v1/operations/"+id+"?redirect=false" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("headers %v", r.Header)
		}
		loc := bare
		// Synchronous waits for the completion signal, then redirects.
		st := s.get(loc + "?OnPending=Synchronous")
		wantStatus(t, st, 303)
		blob := s.get(st.Header.Get("Location"))
		wantStatus(t, blob, 200)
		if string(blob.Body) != seedBody || blob.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("result %q (%s), want %q", blob.Body, blob.Header.Get("Content-Type"), seedBody)
		}
		// The default options redirect too, now that it is done, whatever
		// the case of the path and the id.
		wantStatus(t, s.get(loc), 303)
		wantStatus(t, s.get("/API/REQUESTSTATUS/"+strings.ToUpper(id)), 303)
		// Stream answers with the bytes.
		str := s.get(loc + "?OnComplete=Stream")
		wantStatus(t, str, 200)
		if string(str.Body) != seedBody {
			t.Fatalf("stream %q", str.Body)
		}
		// So does the 202's Location, as a download in a browser.
		got := s.get(r.Header.Get("Location"))
		wantStatus(t, got, 200)
		if string(got.Body) != seedBody || !strings.HasPrefix(got.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("Location answered %q, %v", got.Body, got.Header)
		}
	}
}

// The seed status route while pending: OK → 200 "In progress", Accepted →
// 202 with Location, Synchronous → 404 after its bound.
func TestSeedStatusPending(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{SyncWait: 300 * time.Millisecond}})
	r := s.postJSON("/api/AsyncProcessingWorkAcceptor", seedBody)
	wantStatus(t, r, 202)
	loc, _, _ := strings.Cut(r.Header.Get("Location"), "?")
	ok := s.get(loc)
	wantStatus(t, ok, 200)
	if m := ok.JSON(t); m["status"] != "In progress" || m["location"] != loc {
		t.Fatalf("OnPending=OK body %v", m)
	}
	// Accepted's Location is the URL asked, its options kept.
	acc := s.get(loc + "?onpending=accepted")
	wantStatus(t, acc, 202)
	if acc.Header.Get("Location") != loc+"?onpending=accepted" || acc.Header.Get("Retry-After") == "" {
		t.Fatalf("Accepted headers %v", acc.Header)
	}
	start := time.Now()
	wantProblem(t, s.get(loc+"?OnPending=Synchronous"), 404, api.ProblemNotFinished)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("Synchronous answered after %s, before its bound", el)
	}
}

// Every kind of bad input gets its 4xx problem and stores nothing.
func TestBadInputStoresNothing(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{MaxBodyBytes: 1024}})
	acceptor := "/api/AsyncProcessingWorkAcceptor"
	cases := []struct {
		name string
		r    func() *response
		code int
		typ  string
	}{
		{"bad JSON", func() *response { return s.postJSON(acceptor, `{"id":`) }, 400, api.ProblemInvalidBody},
		{"not an object", func() *response { return s.postJSON(acceptor, `[1,2]`) }, 400, api.ProblemInvalidBody},
		{"missing customername", func() *response { return s.postJSON(acceptor, `{"id":"1"}`) }, 400, api.ProblemInvalidBody},
		{"missing id", func() *response { return s.postJSON(acceptor, `{"customername":"C"}`) }, 400, api.ProblemInvalidBody},
		{"empty id", func() *response { return s.postJSON(acceptor, `{"id":"","customername":"C"}`) }, 400, api.ProblemInvalidBody},
		{"number id", func() *response { return s.postJSON(acceptor, `{"id":1,"customername":"C"}`) }, 400, api.ProblemInvalidBody},
		{"null name", func() *response { return s.postJSON(acceptor, `{"id":"1","customername":null}`) }, 400, api.ProblemInvalidBody},
		{"empty body", func() *response { return s.postJSON(acceptor, ``) }, 400, api.ProblemInvalidBody},
		{"wrong media type", func() *response {
			return s.do("POST", acceptor, seedBody, "Content-Type", "application/x-www-form-urlencoded")
		}, 415, api.ProblemUnsupportedMedia},
		{"no media type", func() *response { return s.do("POST", acceptor, seedBody) }, 415, api.ProblemUnsupportedMedia},
		{"oversized", func() *response { return s.postJSON(acceptor, `{"id":"1","customername":"`+bigBody(2000)+`"}`) }, 413, api.ProblemBodyTooLarge},
		{"oversized v1", func() *response { return s.do("POST", "/v1/echo", bigBody(1025)) }, 413, api.ProblemBodyTooLarge},
		{"oversized chunked", func() *response {
			req, _ := http.NewRequest("POST", s.URL+"/v1/echo", struct{ *strings.Reader }{strings.NewReader(bigBody(5000))})
			req.ContentLength = -1 // chunked: the limit is found while reading
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b strings.Builder
			_, _ = bufio.NewReader(res.Body).WriteTo(&b)
			return &response{Response: res, Body: []byte(b.String())}
		}, 413, api.ProblemBodyTooLarge},
		{"bad idempotency key", func() *response { return s.do("POST", "/v1/echo", "x", "Idempotency-Key", strings.Repeat("k", 300)) }, 400, api.ProblemInvalidParameter},
		{"bad Prefer wait", func() *response { return s.do("POST", "/v1/echo", "x", "Prefer", "wait=soon") }, 400, api.ProblemInvalidParameter},
		{"GET on acceptor", func() *response { return s.get(acceptor) }, 405, api.ProblemMethodNotAllowed},
		{"malformed id", func() *response { return s.get("/v1/operations/not-a-uuid") }, 400, api.ProblemInvalidID},
		{"malformed seed id", func() *response { return s.get("/api/RequestStatus/12345") }, 400, api.ProblemInvalidID},
		{"unknown id", func() *response { return s.get("/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a") }, 404, api.ProblemNotFound},
		{"unknown seed id", func() *response { return s.get("/api/RequestStatus/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a") }, 404, api.ProblemNotFound},
		{"unknown result", func() *response { return s.get("/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a/result") }, 404, api.ProblemNotFound},
		{"cancel unknown", func() *response { return s.do("DELETE", "/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a", "") }, 404, api.ProblemNotFound},
		{"bad OnComplete", func() *response {
			return s.get("/api/RequestStatus/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a?OnComplete=Download")
		}, 400, api.ProblemInvalidParameter},
		{"bad OnPending", func() *response {
			return s.get("/api/RequestStatus/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a?OnPending=Later")
		}, 400, api.ProblemInvalidParameter},
		{"bad wait", func() *response { return s.get("/v1/operations/0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a?wait=forever") }, 400, api.ProblemInvalidParameter},
		{"bad status filter", func() *response { return s.get("/v1/operations?status=done") }, 400, api.ProblemInvalidParameter},
		{"bad limit", func() *response { return s.get("/v1/operations?limit=0") }, 400, api.ProblemInvalidParameter},
		{"bad cursor", func() *response { return s.get("/v1/operations?cursor=zzz") }, 400, api.ProblemInvalidID},
		{"unknown route", func() *response { return s.get("/v2/whatever") }, 404, api.ProblemNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantProblem(t, c.r(), c.code, c.typ) })
	}
	if n := s.count(); n != 0 {
		t.Fatalf("%d operations stored after only bad requests", n)
	}
}

func TestV1EchoMonitorAndResult(t *testing.T) {
	s := start(t, server.Config{})
	body := "hello, arr"
	id := s.submit(body)
	s.waitStatus(id, "succeeded")

	mon := s.get("/v1/operations/" + id)
	wantStatus(t, mon, 303)
	m := mon.JSON(t)
	res := m["result"].(map[string]any)
	if mon.Header.Get("Location") != res["href"] || res["size"] != float64(len(body)) || res["contentType"] != "text/plain" {
		t.Fatalf("303 Location %q, result %v", mon.Header.Get("Location"), res)
	}
	if a, ok := m["attempts"].([]any); !ok || len(a) != 1 || a[0].(map[string]any)["outcome"] != "succeeded" || m["percentComplete"] != float64(100) {
		t.Fatalf("monitor %v", m)
	}
	blob := s.get(mon.Header.Get("Location"))
	wantStatus(t, blob, 200)
	if string(blob.Body) != body || blob.Header.Get("ETag") == "" {
		t.Fatalf("blob %q etag %q", blob.Body, blob.Header.Get("ETag"))
	}
	// Range on the signed URL.
	part := s.get(mon.Header.Get("Location"), "Range", "bytes=0-4")
	wantStatus(t, part, 206)
	if string(part.Body) != "hello" {
		t.Fatalf("range %q", part.Body)
	}
	// A tampered signature is refused.
	u, _ := url.Parse(mon.Header.Get("Location"))
	q := u.Query()
	sig := q.Get("sig")
	q.Set("sig", strings.ToUpper(sig[:1])+sig[1:]+"A")
	u.RawQuery = q.Encode()
	wantStatus(t, s.get(u.String()), 403)

	wantStatus(t, s.get("/v1/operations/"+id+"?redirect=false"), 200)
	r := s.get("/v1/operations/" + id + "/result")
	wantStatus(t, r, 303)
	r = s.get("/v1/operations/" + id + "/result?redirect=false")
	wantStatus(t, r, 200)
	if string(r.Body) != body {
		t.Fatalf("result bytes %q", r.Body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	first := s.do("POST", "/v1/echo", "one", "Idempotency-Key", "k-1", "Content-Type", "text/plain")
	wantStatus(t, first, 202)
	again := s.do("POST", "/v1/echo", "one", "Idempotency-Key", "k-1", "Content-Type", "text/plain")
	wantStatus(t, again, 202)
	if again.JSON(t)["id"] != first.JSON(t)["id"] || again.Header.Get("Location") != first.Header.Get("Location") ||
		again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %v %v", again.Header, again.JSON(t))
	}
	wantProblem(t, s.do("POST", "/v1/echo", "two", "Idempotency-Key", "k-1", "Content-Type", "text/plain"), 422, api.ProblemIdempotencyReuse)
	// Racing clients with one key make one operation.
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = s.submit("race", "Idempotency-Key", "k-race")
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("one key, several operations: %v", ids)
		}
	}
	if n := s.count(); n != 2 {
		t.Fatalf("%d operations stored, want 2", n)
	}
}

func TestPreferWaitAndRespondAsync(t *testing.T) {
	s := start(t, server.Config{})
	r := s.do("POST", "/v1/echo", "quick", "Prefer", "wait=10", "Content-Type", "text/plain")
	wantStatus(t, r, 303)
	if r.Header.Get("Preference-Applied") != "wait=10" || r.JSON(t)["status"] != "succeeded" {
		t.Fatalf("Prefer wait: %v %s", r.Header, r.Body)
	}
	blob := s.get(r.Header.Get("Location"))
	if string(blob.Body) != "quick" {
		t.Fatalf("result %q", blob.Body)
	}
	r = s.do("POST", "/v1/echo", "later", "Prefer", "respond-async, wait=10")
	wantStatus(t, r, 202)
	if r.Header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("Preference-Applied %q", r.Header.Get("Preference-Applied"))
	}
}

// Prefer: wait on a submit that does not finish in time is the usual 202.
func TestPreferWaitTimesOut(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	r := s.do("POST", "/v1/echo", "x", "Prefer", "wait=1")
	wantStatus(t, r, 202)
	if r.Header.Get("Preference-Applied") != "wait=1" {
		t.Fatalf("Preference-Applied %q", r.Header.Get("Preference-Applied"))
	}
}

func TestCancelPending(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	id := s.submit("x")
	r := s.do("DELETE", "/v1/operations/"+id, "")
	wantStatus(t, r, 200)
	if m := r.JSON(t); m["status"] != "canceled" || m["error"] == nil {
		t.Fatalf("after cancel %v", m)
	}
	wantProblem(t, s.do("DELETE", "/v1/operations/"+id, ""), 409, api.ProblemNotCancelable)
	wantProblem(t, s.get("/v1/operations/"+id+"/result"), 409, api.ProblemOperationCanceled)
	mon := s.get("/v1/operations/" + id)
	wantStatus(t, mon, 200)
	if mon.JSON(t)["status"] != "canceled" {
		t.Fatalf("monitor %s", mon.Body)
	}
}

// Cancel of a running operation cancels the handler's context.
func TestCancelRunning(t *testing.T) {
	started := make(chan struct{}, 1)
	sawCancel := make(chan struct{}, 1)
	slow := worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		sawCancel <- struct{}{}
		return nil, ctx.Err()
	})
	s := start(t, server.Config{Worker: worker.Config{Handlers: map[string]worker.Handler{"echo": slow}}})
	id := s.submit("x")
	<-started
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	select {
	case <-sawCancel:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not canceled")
	}
	if m := s.waitStatus(id, "canceled"); m["result"] != nil {
		t.Fatalf("canceled with a result: %v", m)
	}
}

func TestFailureAndRetry(t *testing.T) {
	var calls atomic.Int32
	flaky := worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		if string(t.Request.Body) == "never" {
			return nil, worker.Permanent(errors.New("this input is never valid"))
		}
		if calls.Add(1) == 1 {
			return nil, errors.New("transient trouble")
		}
		return &worker.Result{ContentType: "text/plain", Body: []byte("ok on attempt " + fmt.Sprint(t.Attempt))}, nil
	})
	s := start(t, server.Config{Worker: worker.Config{
		Handlers: map[string]worker.Handler{"echo": flaky},
	}, Core: arr.Config{Backoff: func(int) time.Duration { return 10 * time.Millisecond }}})
	id := s.submit("retry me")
	m := s.waitStatus(id, "succeeded")
	// Every attempt is listed, the failed one with its error.
	a, _ := m["attempts"].([]any)
	if len(a) != 2 {
		t.Fatalf("attempts %v", m["attempts"])
	}
	first, second := a[0].(map[string]any), a[1].(map[string]any)
	if first["number"] != float64(1) || first["outcome"] != "failed" || first["error"].(map[string]any)["detail"] != "transient trouble" ||
		first["startedAt"] == nil || first["endedAt"] == nil || second["number"] != float64(2) || second["outcome"] != "succeeded" ||
		second["startedAt"] == nil || second["startedAt"].(string) > second["endedAt"].(string) {
		t.Fatalf("attempts %v", a)
	}
	r := s.get("/v1/operations/" + id + "/result?redirect=false")
	if string(r.Body) != "ok on attempt 2" {
		t.Fatalf("result %q", r.Body)
	}

	bad := s.submit("never")
	m = s.waitStatus(bad, "failed")
	e := m["error"].(map[string]any)
	if a, _ := m["attempts"].([]any); len(a) != 1 || !strings.Contains(e["detail"].(string), "never valid") {
		t.Fatalf("failed operation %v", m)
	}
	wantProblem(t, s.get("/v1/operations/"+bad+"/result"), api.StatusFailed, worker.ProblemHandlerFailed)
}

func TestProgressIsVisible(t *testing.T) {
	release := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		p.Report(40, "crunching")
		<-release
		return &worker.Result{Body: []byte("done")}, nil
	})
	s := start(t, server.Config{Worker: worker.Config{Handlers: map[string]worker.Handler{"echo": h}}})
	id := s.submit("x")
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := s.get("/v1/operations/" + id + "?wait=2s").JSON(t)
		if m["percentComplete"] == float64(40) && m["message"] == "crunching" && m["status"] == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress never seen: %v", m)
		}
	}
	close(release)
	s.waitStatus(id, "succeeded")
}

func TestListFilterAndCursor(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, s.submit(fmt.Sprint(i)))
	}
	wantStatus(t, s.do("DELETE", "/v1/operations/"+ids[3], ""), 200)
	var seen []string
	next := "/v1/operations?limit=3&status=pending"
	for next != "" {
		r := s.get(next)
		wantStatus(t, r, 200)
		m := r.JSON(t)
		for _, it := range m["items"].([]any) {
			op := it.(map[string]any)
			if op["status"] != "pending" {
				t.Fatalf("filter let through %v", op)
			}
			seen = append(seen, op["id"].(string))
		}
		next, _ = m["next"].(string)
	}
	want := append(append([]string{}, ids[:3]...), ids[4:]...)
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("paged %v, want %v", seen, want)
	}
	r := s.get("/v1/operations?status=canceled")
	if items := r.JSON(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != ids[3] {
		t.Fatalf("canceled filter %s", r.Body)
	}
}

// A long-poll returns at its bound when nothing changes, and is woken at once
// by a change.
func TestLongPoll(t *testing.T) {
	s := start(t, server.Config{Workers: -1})
	id := s.submit("x")
	start := time.Now()
	r := s.get("/v1/operations/" + id + "?wait=1s")
	wantStatus(t, r, 200)
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("wait=1s returned after %s", el)
	}
	etag := r.Header.Get("ETag")
	// Nothing changed, and the client says what it has: 304.
	wantStatus(t, s.get("/v1/operations/"+id+"?wait=1s", "If-None-Match", etag), 304)
	// The same version number written at another time (as after a crash
	// lost a lazily durable write) is another state: answered at once.
	ver, _, _ := strings.Cut(strings.Trim(etag, `"`), ".")
	start = time.Now()
	wantStatus(t, s.get("/v1/operations/"+id+"?wait=5s", "If-None-Match", `"`+ver+`.0"`), 200)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a different revision of the same version waited %s", el)
	}

	go func() {
		time.Sleep(300 * time.Millisecond)
		s.do("DELETE", "/v1/operations/"+id, "")
	}()
	start = time.Now()
	r = s.get("/v1/operations/"+id, "Prefer", "wait=30", "If-None-Match", etag)
	wantStatus(t, r, 200)
	if el := time.Since(start); el > 10*time.Second || r.JSON(t)["status"] != "canceled" {
		t.Fatalf("woken after %s with %s", el, r.Body)
	}
	if r.Header.Get("Preference-Applied") != "wait=30" {
		t.Fatalf("Preference-Applied %q", r.Header.Get("Preference-Applied"))
	}
}

func TestEventsStream(t *testing.T) {
	release := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		<-release
		return &worker.Result{Body: []byte("done")}, nil
	})
	s := start(t, server.Config{Worker: worker.Config{Handlers: map[string]worker.Handler{"echo": h}}})
	id := s.submit("x")
	res, err := http.Get(s.URL + "/v1/operations/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", res.Header.Get("Content-Type"))
	}
	var statuses []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") {
			var st string
			if i := strings.Index(line, `"status":"`); i >= 0 {
				st = line[i+10:]
				st = st[:strings.IndexByte(st, '"')]
			}
			if len(statuses) == 0 || statuses[len(statuses)-1] != st {
				statuses = append(statuses, st)
			}
			if st == "running" {
				close(release)
			}
		}
	}
	if got := strings.Join(statuses, ","); !strings.HasSuffix(got, "running,succeeded") {
		t.Fatalf("event statuses %q, want …running,succeeded", got)
	}
}

func TestQueueFullIs503(t *testing.T) {
	s := start(t, server.Config{Workers: -1, Core: arr.Config{MaxQueue: 2}})
	s.submit("1")
	s.submit("2")
	r := s.do("POST", "/v1/echo", "3")
	wantProblem(t, r, 503, api.ProblemQueueFull)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if n := s.count(); n != 2 {
		t.Fatalf("%d stored", n)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	s := start(t, server.Config{})
	wantStatus(t, s.get("/healthz"), 200)
	wantStatus(t, s.get("/readyz"), 200)
	s.waitStatus(s.submit("m"), "succeeded")
	// The worker counts the success just after committing it.
	m := s.get("/metrics")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) &&
		!strings.Contains(string(m.Body), `outcome="succeeded"`); {
		time.Sleep(10 * time.Millisecond)
		m = s.get("/metrics")
	}
	wantStatus(t, m, 200)
	for _, want := range []string{
		`arr_submissions_total{code="202",route="echo"} 1`,
		`arr_operations_completed_total{outcome="succeeded",route="echo"} 1`,
		"arr_submit_duration_seconds_bucket", "arr_handler_duration_seconds_bucket", `arr_queue_messages{state="ready"}`,
	} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Absolute links use --public-url when set.
func TestPublicURL(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{PublicURL: "https://arr.example.com/"}})
	r := s.postJSON("/api/AsyncProcessingWorkAcceptor", seedBody)
	wantStatus(t, r, 202)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://arr.example.com/api/RequestStatus/") {
		t.Fatalf("Location %q", loc)
	}
}

// /openapi.json is valid JSON, OpenAPI 3.1, and describes every route and
// method the server answers (checked by asking the server about each).
func TestOpenAPIDescribesTheRoutes(t *testing.T) {
	mux := server.NewServeMux()
	mux.Handle("PUT /v1/items/{id}", worker.Echo)
	mux.HandleRoute(server.Route{Pattern: "* /v1/any/{rest...}", Handler: worker.Echo, MediaTypes: []string{"text/csv"}})
	s := start(t, server.Config{Workers: -1, Mux: mux})
	r := s.get("/openapi.json")
	wantStatus(t, r, 200)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json: %v, version %q", err, doc.OpenAPI)
	}
	id := "0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a"
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			p := strings.NewReplacer("{id}", id, "{key}", "k", "{rest}", "a/b").Replace(path)
			res := s.do(strings.ToUpper(method), p, "")
			// A described route exists: whatever it answers, it is not
			// the router's "no route" nor "method not allowed".
			if res.StatusCode == 405 || (res.StatusCode == 404 && strings.Contains(string(res.Body), "no route")) {
				t.Errorf("%s %s is described but answers %d %s", method, path, res.StatusCode, res.Body)
			}
		}
	}
	for _, want := range []string{"/v1/echo", "/api/AsyncProcessingWorkAcceptor", "/v1/operations", "/v1/operations/{id}",
		"/v1/operations/{id}/result", "/v1/operations/{id}/events", "/api/RequestStatus/{id}", "/blobs/{key}",
		"/healthz", "/readyz", "/metrics", "/v1/operations/{id}/retry", "/v1/items/{id}", "/v1/any/{rest}",
		"/v1/operations/{id}/callbacks/redeliver", "/v1/callbacks/secret"} {
		if doc.Paths[want] == nil {
			t.Errorf("openapi.json lacks %s", want)
		}
	}
	if doc.Paths["/v1/any/{rest}"]["patch"] == nil || doc.Paths["/v1/items/{id}"]["put"] == nil {
		t.Errorf("configured routes' methods missing: %v %v", doc.Paths["/v1/any/{rest}"], doc.Paths["/v1/items/{id}"])
	}
}
