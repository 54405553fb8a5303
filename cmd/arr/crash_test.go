package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// buildArr builds the real arr binary once per test binary.
var buildArr = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "arr-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "arr")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// arrProcess is a real `arr serve` child process.
type arrProcess struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
}

// syncBuffer is the output of a child process, readable while the child
// writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startArr(t *testing.T, addr, data string, extra ...string) *arrProcess {
	t.Helper()
	return startRole(t, "serve", addr, data, extra...)
}

// startRole starts `arr {role}` (serve, api or worker) and waits until its
// /readyz answers 200 on addr.
func startRole(t *testing.T, role, addr, data string, extra ...string) *arrProcess {
	t.Helper()
	return startProc(t, role, addr, data, nil, extra...)
}

// startProc is startRole with extra environment for the child (such as
// the S3 credentials).
func startProc(t *testing.T, role, addr, data string, env []string, extra ...string) *arrProcess {
	t.Helper()
	bin, err := buildArr()
	if err != nil {
		t.Fatal(err)
	}
	p := &arrProcess{addr: addr, log: &syncBuffer{}}
	p.cmd = exec.Command(bin, append([]string{role, "-addr", addr, "-data", data, "-log-level", "warn"}, extra...)...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			t.Fatalf("arr did not become ready: %v\n%s", err, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *arrProcess) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func (p *arrProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("arr exited with %v after SIGTERM\n%s", err, p.log)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("arr did not exit after SIGTERM\n%s", p.log)
	}
}

// Submissions from many clients while arr is killed with SIGKILL twice and
// restarted: every operation that got a 202 survives and succeeds with its
// own body as result; clients retry with their Idempotency-Key, so exactly
// one operation exists per submission and none exists that was never
// acknowledged.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const total, clients = 2000, 32
	addr, data := freeAddr(t), t.TempDir()
	base := "http://" + addr
	proc := startArr(t, addr, data, "-workers", "4")

	type accepted struct{ id, body string }
	results := make([]accepted, total)
	var acked, refused atomic.Int64
	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= total {
					return
				}
				body := fmt.Sprintf(`{"n":%d,"pad":"%x"}`, n, time.Now().UnixNano())
				key := fmt.Sprintf("sub-%d", n)
				tries := 0
				id, err := submitUntilAccepted(hc, base+"/v1/echo", "application/json", body, key, &refused,
					func() bool { tries++; return tries > 1000 })
				if err != nil {
					t.Errorf("submission %d: %v", n, err)
					return
				}
				results[n] = accepted{id, body}
				acked.Add(1)
			}
		}()
	}
	// Two kills in the middle of the load, each followed by a restart.
	kills := 0
	for _, at := range []int64{total / 4, total / 2} {
		for acked.Load() < at {
			time.Sleep(time.Millisecond)
		}
		proc.kill9(t)
		kills++
		time.Sleep(100 * time.Millisecond)
		proc = startArr(t, addr, data, "-workers", "4")
	}
	wg.Wait()
	if t.Failed() {
		proc.stop(t)
		return
	}
	t.Logf("%d accepted, %d kills, %d refused tries while down", acked.Load(), kills, refused.Load())

	// Every acknowledged operation reaches succeeded with its own body.
	for n, a := range results {
		deadline := time.Now().Add(60 * time.Second)
		waitResult(t, hc, base, n, a.id, a.body, deadline)
	}
	// Exactly one stored operation per submission: nothing unacknowledged.
	ids := map[string]bool{}
	for _, a := range results {
		ids[a.id] = true
	}
	assertStoredExactly(t, hc, base, ids, total)
	proc.stop(t)
}

// SIGTERM stops arr cleanly (exit 0) and a restart serves what was there.
func TestGracefulRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data)
	res, err := http.Post("http://"+addr+"/api/AsyncProcessingWorkAcceptor", "application/json",
		bytes.NewReader([]byte(`{"id":"1234","customername":"Contoso"}`)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != 202 || loc == "" {
		t.Fatalf("submit: %d %q", res.StatusCode, loc)
	}
	p.stop(t)
	p = startArr(t, addr, data)
	defer p.stop(t)
	loc, _, _ = strings.Cut(loc, "?") // the status URL, with options of this test's
	res, err = http.Get(loc + "?OnPending=Synchronous&OnComplete=Stream")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != `{"id":"1234","customername":"Contoso"}` {
		t.Fatalf("after restart: %d %s", res.StatusCode, b)
	}
}

// assertStoredExactly checks, through the list pages, that the server at
// base holds exactly the operations in ids, which has total entries:
// nothing unacknowledged, nothing twice.
func assertStoredExactly(t *testing.T, hc *http.Client, base string, ids map[string]bool, total int) {
	t.Helper()
	stored := 0
	cursor := ""
	for {
		res, err := hc.Get(base + "/v1/operations?limit=1000" + cursor)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Items []struct{ ID, Status string }
			Next  string
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			stored++
			if !ids[it.ID] {
				t.Errorf("operation %s (%s) exists but no client was given it", it.ID, it.Status)
			}
		}
		if page.Next == "" || len(page.Items) == 0 {
			break
		}
		cursor = "&cursor=" + page.Items[len(page.Items)-1].ID
	}
	if stored != total {
		t.Errorf("%d operations stored, want %d", stored, total)
	}
}

var errGaveUp = errors.New("never accepted")

// submitUntilAccepted posts body with an Idempotency-Key until arr answers
// 202, and returns the operation's id. Connection errors (arr is down) are
// counted in refused and retried, until stop says to give up (errGaveUp).
func submitUntilAccepted(hc *http.Client, url, ct, body, key string, refused *atomic.Int64, stop func() bool) (string, error) {
	for !stop() {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Idempotency-Key", key)
		res, err := hc.Do(req)
		if err != nil {
			refused.Add(1)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 202 {
			return "", fmt.Errorf("%d %s", res.StatusCode, b)
		}
		var op struct{ ID string }
		if err := json.Unmarshal(b, &op); err != nil || op.ID == "" {
			return "", fmt.Errorf("bad 202 body %s", b)
		}
		return op.ID, nil
	}
	return "", errGaveUp
}

// waitResult polls the result of submission n (operation id) until it is
// ready, and checks it is body; a status other than 200 or 202, or the
// deadline, fails the test.
func waitResult(t *testing.T, hc *http.Client, base string, n int, id, body string, deadline time.Time) {
	t.Helper()
	for {
		res, err := hc.Get(base + "/v1/operations/" + id + "/result?redirect=false")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 {
			if string(b) != body {
				t.Fatalf("submission %d (%s): result %q, want %q", n, id, b, body)
			}
			return
		}
		if res.StatusCode != 202 || time.Now().After(deadline) {
			t.Fatalf("submission %d (%s): %d %s", n, id, res.StatusCode, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
