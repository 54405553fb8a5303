package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// client of the process tests: never follows redirects.
var hc = &http.Client{Timeout: 30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type opJSON struct {
	ID        string
	Status    string
	UpdatedAt time.Time
	Message   string
	Percent   int `json:"percentComplete"`
	Attempts  []struct {
		Number  int
		Outcome string
		Error   map[string]any
	}
	Error  map[string]any
	Result *struct {
		Href        string
		ContentType string
		StatusCode  int
		Headers     http.Header
	}
}

func submitTo(t *testing.T, base, method, path, ct, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("X-Custom", "kept")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 202 {
		t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	var op opJSON
	if err := json.Unmarshal(b, &op); err != nil {
		t.Fatal(err)
	}
	return op.ID
}

func getOp(t *testing.T, base, id string) opJSON {
	t.Helper()
	res, err := hc.Get(base + "/v1/operations/" + id + "?redirect=false")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var op opJSON
	if err := json.NewDecoder(res.Body).Decode(&op); err != nil {
		t.Fatal(err)
	}
	return op
}

// waitOp polls until the operation is terminal (or cond holds).
func waitOp(t *testing.T, base, id string, within time.Duration, cond func(opJSON) bool) opJSON {
	t.Helper()
	if cond == nil {
		cond = func(o opJSON) bool { return o.Status == "succeeded" || o.Status == "failed" || o.Status == "canceled" }
	}
	deadline := time.Now().Add(within)
	for {
		op := getOp(t, base, id)
		if cond(op) {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s: still %+v after %v", id, op, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func resultOf(t *testing.T, base, id string) (*http.Response, string) {
	t.Helper()
	res, err := hc.Get(base + "/v1/operations/" + id + "/result?redirect=false")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "arr.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// groupGone waits until no process of the group pgid is left.
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d is still running", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never written", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// arr serve -forward in front of a real upstream: a slow success, a 503
// twice then 201, a 400, a hang past the timeout, and a cancel while the
// upstream works; each ends in the right state with the right result or
// error.
func TestForwardGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	var flaky atomic.Int32
	hangCanceled := make(chan string, 8)
	var mu sync.Mutex
	seen := map[string]http.Header{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		switch r.URL.Path {
		case "/slow":
			time.Sleep(500 * time.Millisecond)
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", "yes")
			fmt.Fprintf(w, `{"method":%q,"query":%q,"body":%q}`, r.Method, r.URL.RawQuery, body)
		case "/flaky":
			if flaky.Add(1) <= 2 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "made it")
		case "/bad":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"sku is unknown"}`)
		case "/hang", "/cancel-me":
			<-r.Context().Done()
			hangCanceled <- r.URL.Path
		}
	}))
	defer up.Close()
	cfg := writeConfig(t, `
defaults:
  timeout: 1s
  maxAttempts: 3
  backoff: 100ms
  maxBackoff: 200ms
routes:
  - path: /cancel-me
    handler: forward
    forward: {url: `+up.URL+`}
    timeout: 1m
`)
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data, "-forward", up.URL, "-config", cfg)
	defer p.stop(t)
	base := "http://" + addr

	slow := submitTo(t, base, "PUT", "/slow?x=1", "text/plain", "payload")
	flakyID := submitTo(t, base, "POST", "/flaky", "", "")
	bad := submitTo(t, base, "POST", "/bad", "application/json", `{"sku":"?"}`)
	hang := submitTo(t, base, "POST", "/hang", "", "")
	cancel := submitTo(t, base, "POST", "/cancel-me", "", "")

	// The slow upstream's response is the result: bytes, type, status,
	// headers; the request arrived whole, with X-Forwarded-*.
	op := waitOp(t, base, slow, 20*time.Second, nil)
	if op.Status != "succeeded" || op.Result == nil || op.Result.StatusCode != 200 || op.Result.ContentType != "application/json" ||
		op.Result.Headers.Get("X-Upstream") != "yes" {
		t.Fatalf("slow: %+v", op)
	}
	res, body := resultOf(t, base, slow)
	if body != `{"method":"PUT","query":"x=1","body":"payload"}` || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("slow result %q (%s)", body, res.Header.Get("Content-Type"))
	}
	mu.Lock()
	h := seen["/slow"]
	mu.Unlock()
	if h.Get("X-Custom") != "kept" || !strings.HasPrefix(h.Get("X-Forwarded-For"), "127.0.0.1") || h.Get("X-Forwarded-Host") != addr ||
		h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Arr-Operation-Id") != slow {
		t.Fatalf("upstream saw headers %v", h)
	}

	// 503 twice (with Retry-After: 1), then 201.
	op = waitOp(t, base, flakyID, 30*time.Second, nil)
	if op.Status != "succeeded" || op.Result.StatusCode != 201 || len(op.Attempts) != 3 ||
		op.Attempts[0].Outcome != "failed" || op.Attempts[0].Error["upstreamStatus"] != float64(503) {
		t.Fatalf("flaky: %+v", op)
	}
	if _, body := resultOf(t, base, flakyID); body != "made it" {
		t.Fatalf("flaky result %q", body)
	}

	// 400: failed at once, the upstream's answer kept in the problem.
	op = waitOp(t, base, bad, 20*time.Second, nil)
	if op.Status != "failed" || len(op.Attempts) != 1 || op.Error["type"] != "urn:arr:problem:upstream-rejected" ||
		op.Error["status"] != float64(400) || !strings.Contains(fmt.Sprint(op.Error["detail"]), "sku is unknown") {
		t.Fatalf("bad: %+v", op)
	}
	if res, _ := resultOf(t, base, bad); res.StatusCode != 424 { // a stored failure: 424, never a 5xx
		t.Fatalf("bad result: %d", res.StatusCode)
	}

	// A hang past the 1s timeout, three times: failed with timeouts, and
	// the upstream saw each request aborted.
	op = waitOp(t, base, hang, 30*time.Second, nil)
	if op.Status != "failed" || len(op.Attempts) != 3 || op.Error["type"] != "urn:arr:problem:timeout" {
		t.Fatalf("hang: %+v", op)
	}
	for i := 0; i < 3; i++ {
		select {
		case p := <-hangCanceled:
			if p != "/hang" {
				i--
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream did not see the hanging request aborted")
		}
	}

	// Cancel while the upstream works: canceled, and the upstream request
	// is aborted.
	waitOp(t, base, cancel, 20*time.Second, func(o opJSON) bool { return o.Status == "running" })
	req, _ := http.NewRequest("DELETE", base+"/v1/operations/"+cancel, nil)
	if res, err := hc.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("cancel: %v %v", res, err)
	}
	select {
	case p := <-hangCanceled:
		if p != "/cancel-me" {
			t.Fatalf("aborted %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not aborted by the cancel")
	}
	if op := waitOp(t, base, cancel, 10*time.Second, nil); op.Status != "canceled" {
		t.Fatalf("cancel-me: %+v", op)
	}
	// Cancel of a finished operation is 409.
	req, _ = http.NewRequest("DELETE", base+"/v1/operations/"+slow, nil)
	if res, err := hc.Do(req); err != nil || res.StatusCode != 409 {
		t.Fatalf("cancel of a finished operation: %v %v", res, err)
	}
}

// Exec routes in a real arr serve: a command that succeeds, one that
// fails, one that reports progress, one that ignores SIGTERM past its
// timeout, and a cancel; each ends right and leaves no process behind.
func TestExecHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pids := t.TempDir()
	cfg := writeConfig(t, `
defaults:
  backoff: 100ms
routes:
  - path: /v1/upper
    handler: exec
    exec: {command: ["sh", "-c", "printf '%s:' \"$ARR_HEADER_X_CUSTOM\"; tr a-z A-Z"], contentType: text/plain}
  - path: /v1/fail
    handler: exec
    exec: {command: ["sh", "-c", "echo starting >&2; echo 'disk full' >&2; exit 3"]}
    maxAttempts: 2
  - path: /v1/progress
    handler: exec
    exec:
      command: ["sh", "-c", "echo 'arr:progress 30 warming up' >&2; read line < \"$GATE/a\"; echo 'arr:progress 80 almost' >&2; read line < \"$GATE/b\"; echo done"]
      env: {GATE: `+pids+`}
  - path: /v1/stubborn
    handler: exec
    exec:
      command: ["sh", "-c", "trap '' TERM; echo $$ > \"$PIDS/$ARR_OPERATION_ID\"; sleep 1000 & wait; sleep 1000"]
      env: {PIDS: `+pids+`}
      killGrace: 300ms
    timeout: 1s
    maxAttempts: 1
  - path: /v1/long
    handler: exec
    exec:
      command: ["sh", "-c", "echo $$ > \"$PIDS/$ARR_OPERATION_ID\"; sleep 1000"]
      env: {PIDS: `+pids+`}
`)
	for _, f := range []string{"a", "b"} {
		if err := syscall.Mkfifo(filepath.Join(pids, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data, "-config", cfg)
	defer p.stop(t)
	base := "http://" + addr

	upper := submitTo(t, base, "POST", "/v1/upper", "text/plain", "hello")
	fail := submitTo(t, base, "POST", "/v1/fail", "", "")
	prog := submitTo(t, base, "POST", "/v1/progress", "", "")
	stubborn := submitTo(t, base, "POST", "/v1/stubborn", "", "")
	long := submitTo(t, base, "POST", "/v1/long", "", "")

	if op := waitOp(t, base, upper, 20*time.Second, nil); op.Status != "succeeded" || op.Result.ContentType != "text/plain" {
		t.Fatalf("upper: %+v", op)
	}
	if _, body := resultOf(t, base, upper); body != "kept:HELLO" {
		t.Fatalf("upper result %q", body)
	}

	op := waitOp(t, base, fail, 20*time.Second, nil)
	if op.Status != "failed" || len(op.Attempts) != 2 || op.Error["type"] != "urn:arr:problem:command-failed" ||
		op.Error["exitCode"] != float64(3) || !strings.Contains(fmt.Sprint(op.Error["detail"]), "disk full") {
		t.Fatalf("fail: %+v", op)
	}

	// Progress lines show in the status, step by step.
	waitOp(t, base, prog, 20*time.Second, func(o opJSON) bool { return o.Percent == 30 && o.Message == "warming up" })
	os.WriteFile(filepath.Join(pids, "a"), []byte("go\n"), 0o600)
	waitOp(t, base, prog, 20*time.Second, func(o opJSON) bool { return o.Percent == 80 && o.Message == "almost" })
	os.WriteFile(filepath.Join(pids, "b"), []byte("go\n"), 0o600)
	if op := waitOp(t, base, prog, 20*time.Second, nil); op.Status != "succeeded" {
		t.Fatalf("progress: %+v", op)
	}
	if _, body := resultOf(t, base, prog); body != "done\n" {
		t.Fatalf("progress result %q", body)
	}

	// Ignores SIGTERM: killed after the grace, the timeout recorded, and
	// nothing of its group left.
	pg := readPID(t, filepath.Join(pids, stubborn))
	op = waitOp(t, base, stubborn, 20*time.Second, nil)
	if op.Status != "failed" || op.Error["type"] != "urn:arr:problem:timeout" {
		t.Fatalf("stubborn: %+v", op)
	}
	groupGone(t, pg)

	// Cancel of a running command kills its group.
	pg = readPID(t, filepath.Join(pids, long))
	req, _ := http.NewRequest("DELETE", base+"/v1/operations/"+long, nil)
	if res, err := hc.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("cancel: %v %v", res, err)
	}
	groupGone(t, pg)
	if op := waitOp(t, base, long, 10*time.Second, nil); op.Status != "canceled" {
		t.Fatalf("long: %+v", op)
	}
}

// The script of the restart tests: the first run of an operation records
// its group and sleeps; a later run (after a restart) finishes at once.
const onceScript = `if [ -e "$PIDS/$ARR_OPERATION_ID.ran" ]; then cat; exit 0; fi; touch "$PIDS/$ARR_OPERATION_ID.ran"; echo $$ > "$PIDS/$ARR_OPERATION_ID"; sleep 1000 & wait`

// SIGTERM with a command running: arr stops accepting, gives the command
// its grace, kills it, puts the operation back in the queue and exits 0;
// the next start finishes it.
func TestGracefulShutdownReturnsWork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pids := t.TempDir()
	cfg := writeConfig(t, `
server: {shutdownGrace: 500ms}
routes:
  - path: /v1/work
    handler: exec
    exec:
      command: ["sh", "-c", `+strconv.Quote(onceScript)+`]
      env: {PIDS: `+pids+`}
      killGrace: 300ms
`)
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data, "-config", cfg)
	base := "http://" + addr
	id := submitTo(t, base, "POST", "/v1/work", "text/plain", "finished later")
	pg := readPID(t, filepath.Join(pids, id))
	start := time.Now()
	p.stop(t) // fails the test unless the exit status is 0
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	groupGone(t, pg)
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still accepting after exit")
	}
	p = startArr(t, addr, data, "-config", cfg)
	defer p.stop(t)
	op := waitOp(t, base, id, 20*time.Second, nil)
	if op.Status != "succeeded" {
		t.Fatalf("after restart: %+v", op)
	}
	if _, body := resultOf(t, base, id); body != "finished later" {
		t.Fatalf("result %q", body)
	}
}

// SIGKILL of arr while a command runs: at the next start the command's
// leftover group is killed, and after the lease the operation runs again
// and succeeds; its attempts show the interrupted one.
func TestKilledWorkerRedelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pids := t.TempDir()
	cfg := writeConfig(t, `
server: {lease: 1s}
routes:
  - path: /v1/work
    handler: exec
    exec:
      command: ["sh", "-c", `+strconv.Quote(onceScript)+`]
      env: {PIDS: `+pids+`}
`)
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data, "-config", cfg)
	base := "http://" + addr
	id := submitTo(t, base, "POST", "/v1/work", "text/plain", "second time lucky")
	pg := readPID(t, filepath.Join(pids, id))
	waitOp(t, base, id, 10*time.Second, func(o opJSON) bool { return o.Status == "running" })
	time.Sleep(500 * time.Millisecond) // the running state is synced after 200ms
	p.kill9(t)
	// The sleep in the command's group outlives arr (only the group's
	// leader gets Pdeathsig) until the next start reaps it.
	if err := syscall.Kill(-pg, 0); err != nil {
		t.Logf("group %d already gone after the kill: %v", pg, err)
	}
	p = startArr(t, addr, data, "-config", cfg)
	defer p.stop(t)
	groupGone(t, pg)
	op := waitOp(t, base, id, 30*time.Second, nil)
	if op.Status != "succeeded" || len(op.Attempts) != 2 || op.Attempts[0].Outcome != "interrupted" ||
		op.Attempts[0].Error["type"] != "urn:arr:problem:worker-lost" || op.Attempts[1].Outcome != "succeeded" {
		t.Fatalf("after the kill: %+v", op)
	}
	if _, body := resultOf(t, base, id); body != "second time lucky" {
		t.Fatalf("result %q", body)
	}
}
