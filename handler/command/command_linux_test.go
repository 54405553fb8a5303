package command

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// The tests of what only Linux does: Pdeathsig's companions, the records in
// PIDDir and Reap.

// TestMain makes the test process a child subreaper: the group members a
// test orphans become its children rather than those of whatever PID 1 the
// test runs under (which may never reap them), so "the group is gone" does
// not depend on the machine, and the handler's reaping of orphans is
// exercised.
func TestMain(m *testing.M) {
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		panic("prctl(PR_SET_CHILD_SUBREAPER): " + e.Error())
	}
	os.Exit(m.Run())
}

func TestPIDDirRecord(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHandler(t, Config{Command: sh(`echo $$ > "$1"; sleep 1000`, pidFile), PIDDir: pids})
	ctx, cancel := context.WithCancel(context.Background())
	done := processAsync(ctx, h)
	pgid := waitPID(t, pidFile)
	st, err := startTime(pgid)
	if err != nil {
		t.Fatal(err)
	}
	// The record is written just after the start, while the script runs.
	want := strconv.FormatUint(st, 10) + "\n"
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, _ = os.ReadFile(filepath.Join(pids, strconv.Itoa(pgid))); string(b) == want {
			break
		}
	}
	if string(b) != want {
		t.Errorf("record %q, want %q", b, want)
	}
	cancel()
	<-done
	assertGroupGone(t, pgid)
	assertEmptyDir(t, pids)
}

// startGroup starts sleep in a process group of its own.
func startGroup(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func TestReap(t *testing.T) {
	dir := t.TempDir()
	live := startGroup(t)
	if _, err := writeRecord(dir, live.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// A pid that exists with another start time was reused: not ours.
	reused := startGroup(t)
	st, err := startTime(reused.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, strconv.Itoa(reused.Process.Pid))
	if err := os.WriteFile(wrong, []byte(strconv.FormatUint(st+1, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The test process itself, with a wrong start time.
	self := filepath.Join(dir, strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(self, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A group that is gone altogether.
	gone := exec.Command("true")
	gone.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(gone.Process.Pid)), []byte("5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not a record.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	killed, err := Reap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Errorf("killed %d groups, want 1", killed)
	}
	err = live.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("recorded group: Wait = %v, want killed", err)
	}
	if err := syscall.Kill(-reused.Process.Pid, 0); err != nil {
		t.Errorf("group with another start time was killed: %v", err)
	}
	es, _ := os.ReadDir(dir)
	if len(es) != 1 || es[0].Name() != "README" {
		t.Errorf("left in dir: %v", es)
	}
}

func TestStartTime(t *testing.T) {
	a, err := startTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("startTime = %d, %v", a, err)
	}
	b, _ := startTime(os.Getpid())
	if a != b {
		t.Errorf("start time changed: %d, %d", a, b)
	}
	if _, err := startTime(1 << 30); !isGone(err) {
		t.Errorf("startTime of no process: %v", err)
	}
}

// A command killed with arr before its group was recorded is still found
// by Reap: its processes (and their children) carry the handler's
// ARR_EXEC_DIR. Processes marked for another directory are left alone.
func TestReapFindsUnrecordedByMarker(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	h, err := New(Config{Command: []string{"sh", "-c", "printf '%s' \"$ARR_EXEC_DIR\""}, PIDDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Process(t.Context(), &worker.Task{ID: "m", Request: &operation.Request{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Reader)
	res.Reader.(io.Closer).Close()
	if abs, _ := filepath.Abs(dir); string(b) != abs {
		t.Fatalf("ARR_EXEC_DIR = %q, want %q", b, abs)
	}
	start := func(markDir string) *exec.Cmd {
		// A leader whose child outlives it, as after Pdeathsig.
		cmd := exec.Command("sh", "-c", "sleep 1000 & echo $!; wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Env = append(os.Environ(), marker(markDir))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		})
		return cmd
	}
	mine, theirs := start(dir), start(other)
	time.Sleep(100 * time.Millisecond) // let the children start
	killed, err := Reap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Errorf("Reap signalled %d groups, want 1", killed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-mine.Process.Pid, 0) == nil {
		// The sh and the orphaned sleep are this (subreaper) process's to
		// reap once dead; a zombie still counts as a member of the group.
		var ws syscall.WaitStatus
		syscall.Wait4(-mine.Process.Pid, &ws, syscall.WNOHANG, nil)
		if time.Now().After(deadline) {
			t.Fatal("the marked group survived Reap")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(-theirs.Process.Pid, 0); err != nil {
		t.Fatalf("a group marked for another directory was killed: %v", err)
	}
}
