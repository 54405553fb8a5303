// Package command is the exec handler: it runs a command per operation, feeds
// it the request body on stdin and makes its stdout the operation's result.
//
// # Environment
//
// The command does not get arr's environment, which may hold arr's own
// secrets (a database password, cloud credentials): it gets PATH, HOME,
// LANG and TZ from it (those set; on Windows also SYSTEMROOT, COMSPEC,
// PATHEXT, TEMP and TMP, without which few programs run), the variables
// Config.PassEnv names (those set), then Config.Env, then these variables
// (which Config.PassEnv and Config.Env cannot override):
//
//	ARR_OPERATION_ID      the operation id
//	ARR_ROUTE             the route's name
//	ARR_ATTEMPT           1 on the first run, growing with each retry
//	ARR_REQUEST_METHOD    the client's request method
//	ARR_REQUEST_PATH      the client's request path (decoded)
//	ARR_REQUEST_QUERY     the client's raw query string, without "?"
//	ARR_HEADER_<NAME>     each stored request header (see arr.StoredHeaders:
//	                      never Authorization, Cookie or another credential);
//	                      NAME is the header's name upper-cased with "-"
//	                      turned into "_" (X-Custom becomes
//	                      ARR_HEADER_X_CUSTOM); a header whose name has
//	                      anything but ASCII letters, digits and "-" is left
//	                      out, so X_Custom never passes for X-Custom; the
//	                      values of a header are joined with ", " in the
//	                      order they were received
//	ARR_PROGRESS_PREFIX   "arr:progress", the prefix of progress lines
//	ARR_EXEC_DIR          with Config.PIDDir: that directory (see Reap)
//
// Every ARR_HEADER_* the command sees came with the request.
//
// # Result and failure
//
// Exit status 0 is success: what the command wrote to stdout, spooled to a
// temporary file rather than held in memory, is the result, with
// Config.ContentType. Any other exit, or death by a signal, fails the attempt
// with an *operation.Problem of type urn:arr:problem:command-failed whose
// detail is the exit status and the end of stderr; the worker retries it
// unless the exit code is one of Config.PermanentExitCodes.
//
// # Progress
//
// A line written to stderr of the form
//
//	arr:progress <percent>[%] [message]
//
// where percent is an integer from 0 to 100, reports progress: the status
// monitor shows percent and the message (the rest of the line, trimmed). From
// a shell script:
//
//	echo "arr:progress 40 resizing" >&2
//
// Progress lines are not part of the stderr kept for a failure's detail; a
// line that starts with arr:progress but is not of that form is ordinary
// stderr. Lines longer than 64 KiB are never progress lines.
//
// # Processes
//
// The command runs in a process group of its own. When the operation's
// context ends (cancel, timeout, shutdown), the group gets SIGTERM, and
// SIGKILL once Config.KillGrace has passed if any of it is still alive. When
// the command exits, for whatever reason, the rest of its group gets SIGKILL:
// a background child never outlives its operation. If arr itself is
// SIGKILLed, the command dies with it (Pdeathsig), but its own children do
// not; Config.PIDDir and Reap clean those up when arr starts again (by the
// group's record, or by the ARR_EXEC_DIR its processes inherit). A
// process that leaves the group (setsid) is beyond the handler's reach; the
// handler stops waiting for the pipes it holds a second after the group is
// gone.
//
// That is Linux. On macOS and the BSDs all of it holds too but the
// parent-death signal: if arr is SIGKILLed, the command and its group go on
// running until they exit by themselves, and nothing is recorded in PIDDir
// (Reap kills nothing). On Windows there are no process groups and no
// signals: the command alone is terminated (TerminateProcess), at once, when
// the context ends (KillGrace does not apply) or stdout passes MaxStdout;
// the processes it started are neither tracked nor killed (the handler
// stops waiting for the pipes they hold a second after the command exits);
// if arr dies the command goes on running; and nothing is recorded in
// PIDDir.
package command

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// Problem types of the handler's errors.
const (
	// ProblemCommandFailed: the command exited with a non-zero status or
	// was killed by a signal. The problem's "exitCode" extension holds the
	// exit status, or its "signal" extension the signal's name.
	ProblemCommandFailed = "urn:arr:problem:command-failed"
	// ProblemCommandNotStarted: the command could not be started (not
	// found, not executable, bad working directory).
	ProblemCommandNotStarted = "urn:arr:problem:command-not-started"
)

// ProgressPrefix starts a progress line on the command's stderr; the command
// finds it in ARR_PROGRESS_PREFIX.
const ProgressPrefix = "arr:progress"

const (
	defaultContentType = "application/octet-stream"
	defaultKillGrace   = 10 * time.Second
	defaultStderrTail  = 4096

	// maxLine is the longest stderr line that can be a progress line.
	maxLine = 64 << 10
	// spoolCheck is how often the spool's size is checked against
	// MaxStdout.
	spoolCheck = 10 * time.Millisecond
	// goneTimeout bounds the wait for a SIGKILLed group to disappear.
	goneTimeout = 5 * time.Second
	// pipeDrain bounds the wait for stderr's end once the group is gone
	// (only a process that left the group can still hold the pipe).
	pipeDrain = time.Second
)

// Config configures the exec handler. Every field but Command has a default,
// given in its comment.
type Config struct {
	// Command is the argv to run; required. Command[0] is looked up in
	// arr's PATH each time it runs when it has no slash; with a slash, a
	// relative Command[0] is relative to Dir.
	Command []string
	// Dir is the command's working directory. Default: arr's.
	Dir string
	// PassEnv names variables of arr's environment the command gets too
	// (when set), beside PATH, HOME, LANG and TZ. Default: none.
	PassEnv []string
	// Env holds extra environment variables, added after PassEnv's and
	// before the ARR_* variables (which they cannot override: New rejects
	// those names).
	Env map[string]string
	// ContentType is the content type of the result (the command's
	// stdout). Default application/octet-stream.
	ContentType string
	// KillGrace is how long the process group has, once the operation's
	// context ends, between SIGTERM and SIGKILL. Default 10s; it must not
	// be negative.
	KillGrace time.Duration
	// StderrTail is how many bytes of the end of stderr (progress lines
	// excluded) a failure's detail keeps. Default 4096; it must not be
	// negative.
	StderrTail int
	// PermanentExitCodes are exit codes that fail the operation at once,
	// without retry. Default none: every non-zero exit is retried by the
	// worker while attempts remain.
	PermanentExitCodes []int
	// TempDir is where stdout is spooled before it becomes the result.
	// Default os.TempDir().
	TempDir string
	// MaxStdout, when > 0, bounds what the command may write to stdout:
	// past it, checked every few milliseconds, the group is killed and the
	// operation fails without retry (urn:arr:problem:result-too-large), so
	// that a runaway command does not fill the spool's disk. Default 0: no
	// bound here (the worker's MaxResultBytes still applies to the result).
	MaxStdout int64
	// PIDDir, when set, is where each running process group is recorded
	// (one small file per group, removed when the group is gone) so that
	// Reap can kill groups left behind by an arr process that was
	// SIGKILLed. New creates it. It must belong to one arr process: Reap
	// kills every group recorded in it. When a group cannot be recorded,
	// it is killed at once and the attempt fails (and is retried). Only
	// Linux records groups: elsewhere PIDDir is created and left empty.
	PIDDir string
}

type handler struct {
	cfg       Config
	env       []string // the base variables, PassEnv's and cfg.Env
	permanent map[int]bool
}

// New checks cfg, fills in its defaults and returns the exec handler. It
// fails when Command is empty, KillGrace or StderrTail is negative, an Env
// or PassEnv name is malformed or reserved, Dir or TempDir is not a directory, or
// PIDDir cannot be created. arr's environment is read once, here.
//
// The handler's Process runs the command once per call and returns only
// when the command's process group is gone (after a bounded wait for a
// process that does not die at SIGKILL). On exit status 0 its Result's
// Reader is the spooled stdout, a temporary file already unlinked: nothing
// is left on disk once it is closed, or if arr dies. Otherwise its error is
// (or wraps) an *operation.Problem: ProblemCommandFailed, Permanent for one
// of PermanentExitCodes; ProblemCommandNotStarted, Permanent unless the
// cause is a shortage that may pass (EAGAIN, ENOMEM, EMFILE, ENFILE,
// ETXTBSY). When ctx ends first, the error wraps ctx.Err() and
// context.Cause(ctx). Other errors (no space for the spool, no pipes) are
// plain and retried.
func New(cfg Config) (worker.Handler, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("command: Command is required")
	}
	for _, a := range cfg.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, errors.New("command: Command has a NUL byte")
		}
	}
	if cfg.KillGrace < 0 {
		return nil, errors.New("command: KillGrace is negative")
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = defaultKillGrace
	}
	if cfg.StderrTail < 0 {
		return nil, errors.New("command: StderrTail is negative")
	}
	if cfg.StderrTail == 0 {
		cfg.StderrTail = defaultStderrTail
	}
	if cfg.ContentType == "" {
		cfg.ContentType = defaultContentType
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	for _, d := range []struct{ name, dir string }{{"Dir", cfg.Dir}, {"TempDir", cfg.TempDir}} {
		if d.dir == "" {
			continue
		}
		if fi, err := os.Stat(d.dir); err != nil {
			return nil, fmt.Errorf("command: %s: %w", d.name, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("command: %s: %s is not a directory", d.name, d.dir)
		}
	}
	if cfg.PIDDir != "" {
		if err := os.MkdirAll(cfg.PIDDir, 0o700); err != nil {
			return nil, fmt.Errorf("command: PIDDir: %w", err)
		}
	}

	h := &handler{cfg: cfg, permanent: make(map[int]bool)}
	for _, c := range cfg.PermanentExitCodes {
		h.permanent[c] = true
	}
	passed := map[string]bool{}
	for _, k := range append(baseEnv(), cfg.PassEnv...) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("command: PassEnv: malformed variable %q", k)
		}
		if reserved(k) {
			return nil, fmt.Errorf("command: PassEnv: %s is set by the handler", k)
		}
		if v, ok := os.LookupEnv(k); ok && !passed[k] {
			passed[k] = true
			h.env = append(h.env, k+"="+v)
		}
	}
	if cfg.PIDDir != "" {
		// The mark Reap finds a command's processes by when arr died
		// before it could record their group.
		h.env = append(h.env, marker(cfg.PIDDir))
	}
	names := make([]string, 0, len(cfg.Env))
	for k, v := range cfg.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("command: Env: malformed variable %q", k)
		}
		if reserved(k) {
			return nil, fmt.Errorf("command: Env: %s is set by the handler", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h.env = append(h.env, k+"="+cfg.Env[k])
	}
	return h, nil
}

// baseEnv is what every command gets of arr's environment.
func baseEnv() []string {
	if runtime.GOOS == "windows" {
		return []string{"PATH", "HOME", "LANG", "TZ", "SYSTEMROOT", "COMSPEC", "PATHEXT", "TEMP", "TMP"}
	}
	return []string{"PATH", "HOME", "LANG", "TZ"}
}

func reserved(name string) bool {
	switch name {
	case "ARR_OPERATION_ID", "ARR_ROUTE", "ARR_ATTEMPT", "ARR_REQUEST_METHOD",
		"ARR_REQUEST_PATH", "ARR_REQUEST_QUERY", "ARR_PROGRESS_PREFIX", markerVar:
		return true
	}
	return strings.HasPrefix(name, "ARR_HEADER_")
}

// environ returns the command's environment for t.
func (h *handler) environ(t *worker.Task) []string {
	env := slices.Clip(h.env)
	set := func(k, v string) {
		// A NUL byte cannot pass through execve (a decoded path may hold
		// one); drop it rather than fail the start.
		env = append(env, k+"="+strings.ReplaceAll(v, "\x00", ""))
	}
	set("ARR_OPERATION_ID", t.ID)
	set("ARR_ROUTE", t.Route)
	set("ARR_ATTEMPT", strconv.Itoa(t.Attempt))
	set("ARR_PROGRESS_PREFIX", ProgressPrefix)
	var r operation.Request
	if t.Request != nil {
		r = *t.Request
	}
	set("ARR_REQUEST_METHOD", r.Method)
	set("ARR_REQUEST_PATH", r.Path)
	set("ARR_REQUEST_QUERY", r.RawQuery)
	// Names in sorted order, so that two names of one variable (X-Custom
	// and x-custom, from a Go caller) join in a fixed order.
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		if arr.ValidHeaderName(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	headers := make(map[string][]string)
	var keys []string
	for _, name := range names {
		k := "ARR_HEADER_" + envName(name)
		if _, ok := headers[k]; !ok {
			keys = append(keys, k)
		}
		headers[k] = append(headers[k], r.Header[name]...)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, strings.Join(headers[k], ", "))
	}
	return env
}

// envName upper-cases a header name and turns every character that is not
// an ASCII letter or digit into "_".
func envName(header string) string {
	b := []byte(header)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// Process runs the command for t; New documents what it guarantees.
func (h *handler) Process(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx)
	}
	out, err := os.CreateTemp(h.cfg.TempDir, "arr-exec-*")
	if err != nil {
		return nil, fmt.Errorf("command: spool stdout: %w", err)
	}
	// Unlinked at once: the open file is the only reference, so the spool
	// disappears with the reader's Close, or with arr.
	os.Remove(out.Name())
	keep := false
	defer func() {
		if !keep {
			out.Close()
		}
	}()

	cmd := exec.Command(h.cfg.Command[0], h.cfg.Command[1:]...)
	cmd.Dir = h.cfg.Dir
	cmd.Env = h.environ(t)
	cmd.Stdout = out
	cmd.SysProcAttr = sysProcAttr()

	// Pipes are made here rather than by exec so that Wait does not wait
	// for them: a process that left the group could hold them open forever.
	var body []byte
	if t.Request != nil {
		body = t.Request.Body
	}
	var stdinR, stdinW *os.File
	if len(body) > 0 {
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("command: stdin pipe: %w", err)
		}
		cmd.Stdin = stdinR
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		if stdinR != nil {
			stdinR.Close()
			stdinW.Close()
		}
		return nil, fmt.Errorf("command: stderr pipe: %w", err)
	}
	cmd.Stderr = stderrW

	// Pdeathsig fires when the thread that forked the child exits, not
	// when arr does, and the Go runtime ends a thread whose goroutine exits
	// while locked to it. Locking this goroutine to its thread until the
	// command is reaped keeps that thread alive for as long as the child
	// runs.
	if pdeathsig {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}

	err = cmd.Start()
	stderrW.Close()
	if stdinR != nil {
		stdinR.Close()
	}
	if err != nil {
		stderrR.Close()
		if stdinW != nil {
			stdinW.Close()
		}
		return nil, h.startError(err)
	}
	pgid := cmd.Process.Pid
	record := ""
	var recordErr error
	if h.cfg.PIDDir != "" {
		if record, recordErr = writeRecord(h.cfg.PIDDir, pgid); recordErr != nil {
			// Unrecorded, the group could outlive a crash of arr: do not
			// let it run.
			killGroup(pgid, syscall.SIGKILL)
		}
	}

	stdinDone := make(chan struct{})
	if stdinW != nil {
		go func() {
			defer close(stdinDone)
			// EPIPE when the command does not read it all: not an error.
			stdinW.Write(body)
			stdinW.Close()
		}()
	} else {
		close(stdinDone)
	}
	se := &stderrReader{p: p, tailMax: h.cfg.StderrTail}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		se.run(stderrR)
	}()
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		waitExited(pgid)
	}()

	// While the leader is unreaped its pid cannot be reused, so signalling
	// -pgid reaches our group and no other.
	var ctxErr error
	var tick <-chan time.Time
	if h.cfg.MaxStdout > 0 {
		t := time.NewTicker(spoolCheck)
		defer t.Stop()
		tick = t.C
	}
	tooLarge, canceled := false, false
wait:
	for {
		select {
		case <-exited:
			killGroup(pgid, syscall.SIGKILL)
			cmd.Wait()
			break wait
		case <-tick:
			if fi, err := out.Stat(); err == nil && fi.Size() > h.cfg.MaxStdout {
				// A runaway output: stop it before it fills the disk.
				tooLarge = true
				killGroup(pgid, syscall.SIGKILL)
				<-exited
				cmd.Wait()
				break wait
			}
		case <-ctx.Done():
			canceled = true
			break wait
		}
	}
	if canceled {
		ctxErr = ctxError(ctx)
		killGroup(pgid, syscall.SIGTERM)
		grace := time.NewTimer(h.cfg.KillGrace)
		select {
		case <-exited:
			cmd.Wait()
			// The rest of the group got SIGTERM too; it has what is left
			// of the grace to finish.
			if !waitGone(pgid, grace.C) {
				killGroup(pgid, syscall.SIGKILL)
			}
		case <-grace.C:
			killGroup(pgid, syscall.SIGKILL)
			<-exited
			cmd.Wait()
		}
		grace.Stop()
	}
	gone := waitGone(pgid, time.After(goneTimeout))
	if record != "" && gone {
		os.Remove(record)
	}

	// The group is gone: only a process that left it (setsid) can still
	// hold the pipes. Give stderr's end a moment to be read, then stop.
	if stdinW != nil {
		stdinW.Close()
	}
	if err := stderrR.SetReadDeadline(time.Now().Add(pipeDrain)); err != nil {
		// A pipe without deadlines (Windows: os.Pipe's are blocking):
		// closing it cancels the read.
		drain := time.AfterFunc(pipeDrain, func() { stderrR.Close() })
		defer drain.Stop()
	}
	<-stderrDone
	<-stdinDone
	stderrR.Close()

	if ctxErr != nil {
		return nil, ctxErr
	}
	if recordErr != nil {
		return nil, fmt.Errorf("command: record process group: %w", recordErr)
	}
	if fi, err := out.Stat(); tooLarge || err == nil && h.cfg.MaxStdout > 0 && fi.Size() > h.cfg.MaxStdout {
		return nil, worker.Permanent(&operation.Problem{Type: worker.ProblemResultTooLarge, Title: "Result too large",
			Status: 500, Detail: fmt.Sprintf("the command wrote more than %d bytes to stdout", h.cfg.MaxStdout)})
	}
	if st := cmd.ProcessState; !st.Success() {
		return nil, h.failure(st, se.tail())
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("command: spool stdout: %w", err)
	}
	keep = true
	return &worker.Result{ContentType: h.cfg.ContentType, Reader: out}, nil
}

func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("command: %w: %w", err, cause)
	}
	return fmt.Errorf("command: %w", err)
}

// startError turns a failed start into a problem: permanent unless the cause
// is a shortage that may pass (no memory, no process or file slots, a busy
// executable being rewritten).
func (h *handler) startError(err error) error {
	prob := &operation.Problem{
		Type:   ProblemCommandNotStarted,
		Title:  "Command could not start",
		Status: 500,
		Detail: strings.ToValidUTF8(fmt.Sprintf("cannot start %q: %v", h.cfg.Command[0], err), "\uFFFD"),
	}
	for _, e := range []error{syscall.EAGAIN, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE, syscall.ETXTBSY, syscall.EINTR} {
		if errors.Is(err, e) {
			return prob
		}
	}
	return worker.Permanent(prob)
}

// failure is the problem of a command that did not exit 0.
func (h *handler) failure(st *os.ProcessState, tail []byte) error {
	prob := &operation.Problem{
		Type:       ProblemCommandFailed,
		Title:      "Command failed",
		Status:     500,
		Extensions: map[string]any{},
	}
	status := st.String()
	code := -1
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		status = "signal " + ws.Signal().String()
		prob.Extensions["signal"] = ws.Signal().String()
	} else {
		code = st.ExitCode()
		status = "exit status " + strconv.Itoa(code)
		prob.Extensions["exitCode"] = code
	}
	prob.Detail = status
	if s := strings.TrimSpace(strings.ToValidUTF8(string(tail), "\uFFFD")); s != "" {
		prob.Detail += ": " + s
	}
	if code >= 0 && h.permanent[code] {
		return worker.Permanent(prob)
	}
	return prob
}

// stderrReader reads the command's stderr: it reports progress lines and
// keeps the end of the rest.
type stderrReader struct {
	p       worker.Progress
	tailMax int
	buf     []byte // the end of stderr; at most 2×tailMax bytes
}

func (s *stderrReader) run(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	long := false // inside a line longer than the buffer
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			s.keep(line)
			long = true
			continue
		case long:
			s.keep(line)
			long = false
		case len(line) > 0:
			if pct, msg, ok := parseProgress(line); ok {
				if s.p != nil {
					s.p.Report(pct, msg)
				}
			} else {
				s.keep(line)
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *stderrReader) keep(b []byte) {
	s.buf = append(s.buf, b...)
	if len(s.buf) > 2*s.tailMax {
		s.buf = append(s.buf[:0], s.buf[len(s.buf)-s.tailMax:]...)
	}
}

// tail returns the last tailMax bytes kept, less a UTF-8 sequence cut in
// two at the start.
func (s *stderrReader) tail() []byte {
	b := s.buf
	if len(b) > s.tailMax {
		b = b[len(b)-s.tailMax:]
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	return b
}

// parseProgress parses "arr:progress <percent>[%] [message]".
func parseProgress(line []byte) (int, string, bool) {
	line = bytes.TrimRight(line, "\r\n")
	rest, ok := bytes.CutPrefix(line, []byte(ProgressPrefix))
	if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return 0, "", false
	}
	rest = bytes.TrimLeft(rest, " \t")
	i := bytes.IndexAny(rest, " \t")
	if i < 0 {
		i = len(rest)
	}
	num, msg := rest[:i], rest[i:]
	num = bytes.TrimSuffix(num, []byte("%"))
	if len(num) == 0 || len(num) > 3 {
		return 0, "", false
	}
	pct := 0
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, "", false
		}
		pct = pct*10 + int(c-'0')
	}
	if pct > 100 {
		return 0, "", false
	}
	return pct, strings.ToValidUTF8(string(bytes.TrimSpace(msg)), "\uFFFD"), true
}
