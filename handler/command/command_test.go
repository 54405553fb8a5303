//go:build unix

package command

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// sh returns the argv that runs script with /bin/sh, args being $1, $2...
func sh(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

func newHandler(t *testing.T, cfg Config) worker.Handler {
	t.Helper()
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func task(body string) *worker.Task {
	return &worker.Task{ID: "op-1", Route: "r", Attempt: 1, Request: &operation.Request{Method: "POST", Path: "/r", Body: []byte(body)}}
}

type recorder struct {
	mu      sync.Mutex
	reports []string
}

func (r *recorder) Report(percent int, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, strconv.Itoa(percent)+" "+message)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reports)
}

// readAll reads and closes a result.
func readAll(t *testing.T, res *worker.Result) string {
	t.Helper()
	if res == nil || res.Reader == nil {
		t.Fatalf("result has no Reader: %+v", res)
	}
	b, err := io.ReadAll(res.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Reader.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func problemOf(t *testing.T, err error) *operation.Problem {
	t.Helper()
	var p *operation.Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v (%T) is not a problem", err, err)
	}
	return p
}

// waitPID waits for a script to write its pid to file.
func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(file)
		if s := strings.TrimSpace(string(b)); strings.HasSuffix(string(b), "\n") && s != "" {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("pid file: %q", b)
			}
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d is still there (kill: %v)", pgid, err)
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 0 {
		t.Errorf("%s is not empty: %v", dir, es)
	}
}

func TestSuccess(t *testing.T) {
	h := newHandler(t, Config{Command: []string{"tr", "a-z", "A-Z"}, ContentType: "text/plain"})
	res, err := h.Process(context.Background(), task("hello, world\n"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ContentType != "text/plain" {
		t.Errorf("ContentType %q", res.ContentType)
	}
	if got := readAll(t, res); got != "HELLO, WORLD\n" {
		t.Errorf("result %q", got)
	}
}

func TestDefaultContentTypeAndEmptyBody(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`cat; printf ok`)})
	res, err := h.Process(context.Background(), task(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ContentType != "application/octet-stream" {
		t.Errorf("ContentType %q", res.ContentType)
	}
	if got := readAll(t, res); got != "ok" {
		t.Errorf("result %q", got)
	}
}

func TestLargeStdinAndStdout(t *testing.T) {
	body := strings.Repeat("abcdefghij", 100_000) // 1 MB, beyond any pipe buffer
	h := newHandler(t, Config{Command: []string{"cat"}})
	res, err := h.Process(context.Background(), task(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, res); got != body {
		t.Errorf("result has %d bytes, want %d", len(got), len(body))
	}
}

func TestCommandIgnoresStdin(t *testing.T) {
	body := strings.Repeat("x", 1<<20)
	h := newHandler(t, Config{Command: sh(`printf done`)})
	res, err := h.Process(context.Background(), task(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, res); got != "done" {
		t.Errorf("result %q", got)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("ARR_HEADER_LEAKED", "from arr's own environment")
	h := newHandler(t, Config{
		Command: sh(`env | grep -E '^(ARR_|EXTRA=)' | sort`),
		Env:     map[string]string{"EXTRA": "extra value"},
	})
	tk := &worker.Task{ID: "0190-abc", Route: "thumbnail", Attempt: 2, Request: &operation.Request{
		Method: "PUT", Path: "/images/x.png", RawQuery: "size=200&fmt=png",
		Header: http.Header{"X-Custom": {"one", "two"}, "Content-Type": {"image/png"}},
	}}
	res, err := h.Process(context.Background(), tk, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(readAll(t, res)), "\n")
	for _, want := range []string{
		"ARR_OPERATION_ID=0190-abc",
		"ARR_ROUTE=thumbnail",
		"ARR_ATTEMPT=2",
		"ARR_REQUEST_METHOD=PUT",
		"ARR_REQUEST_PATH=/images/x.png",
		"ARR_REQUEST_QUERY=size=200&fmt=png",
		"ARR_HEADER_X_CUSTOM=one, two",
		"ARR_HEADER_CONTENT_TYPE=image/png",
		"ARR_PROGRESS_PREFIX=arr:progress",
		"EXTRA=extra value",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("environment lacks %q; got %q", want, got)
		}
	}
	for _, kv := range got {
		if strings.HasPrefix(kv, "ARR_HEADER_LEAKED") {
			t.Errorf("inherited %q", kv)
		}
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	h := newHandler(t, Config{Command: []string{"pwd"}, Dir: dir})
	res, err := h.Process(context.Background(), task(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(readAll(t, res))
	want, _ := filepath.EvalSymlinks(dir)
	if got != dir && got != want {
		t.Errorf("pwd %q, want %q", got, dir)
	}
}

func TestFailure(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`
		echo first-line >&2
		i=0
		while [ $i -lt 1000 ]; do echo "filler line number $i" >&2; i=$((i+1)); done
		echo last-line >&2
		exit 3`)})
	_, err := h.Process(context.Background(), task(""), nil)
	if err == nil {
		t.Fatal("no error")
	}
	if worker.IsPermanent(err) {
		t.Error("exit 3 is permanent")
	}
	p := problemOf(t, err)
	if p.Type != ProblemCommandFailed || p.Title != "Command failed" || p.Status != 500 {
		t.Errorf("problem %+v", p)
	}
	if p.Extensions["exitCode"] != 3 {
		t.Errorf("exitCode %v", p.Extensions["exitCode"])
	}
	if !strings.HasPrefix(p.Detail, "exit status 3: ") {
		t.Errorf("detail starts %.40q", p.Detail)
	}
	if !strings.HasSuffix(p.Detail, "last-line") {
		t.Errorf("detail ends %q", p.Detail[max(0, len(p.Detail)-40):])
	}
	if strings.Contains(p.Detail, "first-line") {
		t.Error("detail has the beginning of stderr")
	}
	if n := len(p.Detail) - len("exit status 3: "); n > defaultStderrTail {
		t.Errorf("detail keeps %d bytes of stderr", n)
	}
}

func TestFailureWithoutStderr(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`exit 1`), StderrTail: 10})
	_, err := h.Process(context.Background(), task(""), nil)
	if p := problemOf(t, err); p.Detail != "exit status 1" {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestKilledBySignal(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`echo dying >&2; kill -KILL $$`)})
	_, err := h.Process(context.Background(), task(""), nil)
	p := problemOf(t, err)
	if p.Extensions["signal"] != "killed" || p.Extensions["exitCode"] != nil {
		t.Errorf("extensions %v", p.Extensions)
	}
	if p.Detail != "signal killed: dying" {
		t.Errorf("detail %q", p.Detail)
	}
	if worker.IsPermanent(err) {
		t.Error("permanent")
	}
}

func TestPermanentExitCode(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`echo bad input >&2; exit "$1"`, "65"), PermanentExitCodes: []int{64, 65}})
	_, err := h.Process(context.Background(), task(""), nil)
	if !worker.IsPermanent(err) {
		t.Errorf("exit 65 is not permanent: %v", err)
	}
	p := problemOf(t, err)
	if p.Extensions["exitCode"] != 65 || p.Detail != "exit status 65: bad input" {
		t.Errorf("problem %+v", p)
	}
}

func TestProgress(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`
		echo "arr:progress 10" >&2
		echo "arr:progress 50% half way   " >&2
		echo "plain stderr" >&2
		echo "arr:progress abc" >&2
		echo "arr:progress 101 too much" >&2
		echo "arr:progress -1" >&2
		echo "arr:progressive 20" >&2
		printf 'arr:progress\t75\twith tabs\r\n' >&2
		echo "arr:progress 100 done" >&2
		exit 1`)})
	rec := &recorder{}
	_, err := h.Process(context.Background(), task(""), rec)
	want := []string{"10 ", "50 half way", "75 with tabs", "100 done"}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("reports %q, want %q", got, want)
	}
	d := problemOf(t, err).Detail
	for _, s := range []string{"plain stderr", "arr:progress abc", "arr:progress 101 too much", "arr:progress -1", "arr:progressive 20"} {
		if !strings.Contains(d, s) {
			t.Errorf("detail lacks %q: %q", s, d)
		}
	}
	for _, s := range []string{"half way", "done", "tabs"} {
		if strings.Contains(d, s) {
			t.Errorf("detail has progress line %q: %q", s, d)
		}
	}
}

func TestLongStderrLines(t *testing.T) {
	h := newHandler(t, Config{Command: sh(`
		head -c 200000 /dev/zero | tr '\0' x >&2; echo >&2
		printf 'arr:progress 7 ' >&2; head -c 100000 /dev/zero | tr '\0' p >&2; echo >&2
		echo "arr:progress 42 after" >&2
		head -c 100000 /dev/zero | tr '\0' y >&2
		exit 1`), StderrTail: 100})
	rec := &recorder{}
	_, err := h.Process(context.Background(), task(""), rec)
	if got := rec.get(); !slices.Equal(got, []string{"42 after"}) {
		t.Errorf("reports %q", got)
	}
	if d := problemOf(t, err).Detail; d != "exit status 1: "+strings.Repeat("y", 100) {
		t.Errorf("detail %.60q... (%d bytes)", d, len(d))
	}
}

func TestParseProgress(t *testing.T) {
	for _, c := range []struct {
		line string
		pct  int
		msg  string
		ok   bool
	}{
		{"arr:progress 0\n", 0, "", true},
		{"arr:progress 100%\n", 100, "", true},
		{"arr:progress  33%   a  b \n", 33, "a  b", true},
		{"arr:progress 007 x", 7, "x", true},
		{"arr:progress\n", 0, "", false},
		{"arr:progress \n", 0, "", false},
		{"arr:progress 1000\n", 0, "", false},
		{"arr:progress 5%%\n", 0, "", false},
		{"arr:progress 5.5\n", 0, "", false},
		{"arr:progress 50x\n", 0, "", false},
		{" arr:progress 50\n", 0, "", false},
		{"arr:progress50\n", 0, "", false},
	} {
		pct, msg, ok := parseProgress([]byte(c.line))
		if pct != c.pct || msg != c.msg || ok != c.ok {
			t.Errorf("parseProgress(%q) = %d, %q, %v; want %d, %q, %v", c.line, pct, msg, ok, c.pct, c.msg, c.ok)
		}
	}
}

func TestCancelKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// KillGrace is long: returning quickly shows SIGTERM did the work.
	h := newHandler(t, Config{Command: sh(`echo $$ > "$1"; sleep 1000 & sleep 1000`, pidFile), KillGrace: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := processAsync(ctx, h)
	pgid := waitPID(t, pidFile)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v is not context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Process did not return after cancel")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to stop", d)
	}
	assertGroupGone(t, pgid)
}

func TestCancelCause(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHandler(t, Config{Command: sh(`echo $$ > "$1"; exec sleep 1000`, pidFile)})
	shutdown := errors.New("worker shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := processAsync(ctx, h)
	pgid := waitPID(t, pidFile)
	cancel(shutdown)
	err := <-done
	if !errors.Is(err, context.Canceled) || !errors.Is(err, shutdown) {
		t.Errorf("error %v lacks context.Canceled or the cause", err)
	}
	assertGroupGone(t, pgid)
}

func TestDeadline(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHandler(t, Config{Command: sh(`echo $$ > "$1"; sleep 1000`, pidFile)})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := h.Process(ctx, task(""), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not context.DeadlineExceeded", err)
	}
	assertGroupGone(t, waitPID(t, pidFile))
}

func TestAlreadyCanceled(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	h := newHandler(t, Config{Command: sh(`touch "$1"`, ran)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Process(ctx, task(""), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the command ran")
	}
}

func TestSIGTERMIgnoredThenSIGKILL(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	const grace = 300 * time.Millisecond
	h := newHandler(t, Config{Command: sh(`trap '' TERM; echo $$ > "$1"; sleep 1000 & sleep 1000`, pidFile), KillGrace: grace})
	ctx, cancel := context.WithCancel(context.Background())
	done := processAsync(ctx, h)
	pgid := waitPID(t, pidFile)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Process did not return: SIGKILL not sent")
	}
	// Nothing in the group can die before the SIGKILL.
	if d := time.Since(start); d < grace {
		t.Errorf("returned after %v, before KillGrace", d)
	}
	assertGroupGone(t, pgid)
}

func TestGracePeriodCoversChildren(t *testing.T) {
	// The leader dies at SIGTERM; its child traps it, takes a moment to
	// clean up and writes a file: the grace covers the whole group.
	dir := t.TempDir()
	pidFile, cleaned := filepath.Join(dir, "pid"), filepath.Join(dir, "cleaned")
	h := newHandler(t, Config{Command: sh(`
		sh -c 'trap "sleep 0.2; echo yes > \"$1\"; exit 0" TERM; while :; do sleep 0.05; done' child "$2" &
		echo $$ > "$1"
		wait`, pidFile, cleaned), KillGrace: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := processAsync(ctx, h)
	pgid := waitPID(t, pidFile)
	time.Sleep(100 * time.Millisecond) // let the child set its trap
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
	if b, err := os.ReadFile(cleaned); err != nil || string(b) != "yes\n" {
		t.Errorf("the child did not finish its cleanup: %q, %v", b, err)
	}
	assertGroupGone(t, pgid)
}

func TestBackgroundChildKilledOnSuccess(t *testing.T) {
	dir := t.TempDir()
	pidFile, childFile := filepath.Join(dir, "pid"), filepath.Join(dir, "child")
	h := newHandler(t, Config{Command: sh(`sleep 1000 & echo $! > "$2"; echo $$ > "$1"; printf ok`, pidFile, childFile)})
	res, err := h.Process(context.Background(), task(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, res); got != "ok" {
		t.Errorf("result %q", got)
	}
	assertGroupGone(t, waitPID(t, pidFile))
	if child := waitPID(t, childFile); !errors.Is(syscall.Kill(child, 0), syscall.ESRCH) {
		t.Errorf("background child %d survived", child)
	}
}

func TestGrandchildHoldingPipes(t *testing.T) {
	// A process that leaves the group keeps stdout and stderr open; the
	// handler must still return, bounded by its drain timeout.
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	dir := t.TempDir()
	escFile := filepath.Join(dir, "escaped")
	h := newHandler(t, Config{Command: sh(`
		setsid sh -c 'echo $$ > "$1"; exec sleep 1000' esc "$1" &
		while [ ! -s "$1" ]; do sleep 0.01; done
		printf ok`, escFile)})
	done := make(chan error, 1)
	go func() {
		res, err := h.Process(context.Background(), task(strings.Repeat("z", 1<<20)), nil)
		if err == nil {
			res.Reader.(io.Closer).Close()
		}
		done <- err
	}()
	esc := waitPID(t, escFile)
	defer func() {
		syscall.Kill(esc, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(esc, &ws, 0, nil)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Process blocked on pipes held by an escaped process")
	}
}

func TestTempFileRemoved(t *testing.T) {
	tmp := t.TempDir()
	h := newHandler(t, Config{Command: sh(`cat; echo more`), TempDir: tmp})
	res, err := h.Process(context.Background(), task("data\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, res); got != "data\nmore\n" {
		t.Errorf("result %q", got)
	}
	assertEmptyDir(t, tmp)

	h = newHandler(t, Config{Command: sh(`echo partial; exit 1`), TempDir: tmp})
	if _, err := h.Process(context.Background(), task(""), nil); err == nil {
		t.Fatal("no error")
	}
	assertEmptyDir(t, tmp)
}

func TestCommandNotFound(t *testing.T) {
	h := newHandler(t, Config{Command: []string{"arr-no-such-command-for-test"}})
	_, err := h.Process(context.Background(), task("x"), nil)
	if !worker.IsPermanent(err) {
		t.Errorf("error %v is not permanent", err)
	}
	p := problemOf(t, err)
	if p.Type != ProblemCommandNotStarted || !strings.Contains(p.Detail, "arr-no-such-command-for-test") {
		t.Errorf("problem %+v", p)
	}
}

func TestNotExecutable(t *testing.T) {
	f := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(f, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, Config{Command: []string{f}})
	if _, err := h.Process(context.Background(), task(""), nil); !worker.IsPermanent(err) {
		t.Errorf("error %v is not permanent", err)
	}
}

func TestNewValidates(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	for name, cfg := range map[string]Config{
		"no command":         {},
		"empty argv0":        {Command: []string{""}},
		"negative KillGrace": {Command: []string{"true"}, KillGrace: -time.Second},
		"negative tail":      {Command: []string{"true"}, StderrTail: -1},
		"reserved env":       {Command: []string{"true"}, Env: map[string]string{"ARR_OPERATION_ID": "x"}},
		"header env":         {Command: []string{"true"}, Env: map[string]string{"ARR_HEADER_X": "x"}},
		"bad env name":       {Command: []string{"true"}, Env: map[string]string{"A=B": "x"}},
		"missing dir":        {Command: []string{"true"}, Dir: filepath.Join(file, "nope")},
		"dir is a file":      {Command: []string{"true"}, Dir: file},
		"bad PIDDir":         {Command: []string{"true"}, PIDDir: filepath.Join(file, "pids")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// processAsync runs h on an empty task in the background; the channel
// gets its error.
func processAsync(ctx context.Context, h worker.Handler) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.Process(ctx, task(""), nil)
		done <- err
	}()
	return done
}

// A command that writes more than MaxStdout is killed, group and all, and
// fails without retry; one just under it succeeds.
func TestMaxStdout(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHandler(t, Config{Command: sh(`echo $$ > "$1"; yes arr`, pidFile), MaxStdout: 1 << 20})
	done := processAsync(t.Context(), h)
	pgid := waitPID(t, pidFile)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a command writing without end was not stopped")
	}
	var p *operation.Problem
	if !errors.As(err, &p) || p.Type != worker.ProblemResultTooLarge || !worker.IsPermanent(err) {
		t.Fatalf("error %v", err)
	}
	assertGroupGone(t, pgid)

	ok := newHandler(t, Config{Command: sh(`head -c 1000 /dev/zero`), MaxStdout: 1000})
	res, err := ok.Process(t.Context(), task(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Reader)
	res.Reader.(io.Closer).Close()
	if len(b) != 1000 {
		t.Fatalf("got %d bytes", len(b))
	}
}
