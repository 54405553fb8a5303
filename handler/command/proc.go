package command

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Reap kills (SIGKILL) every process group recorded in dir that is still
// ours, and removes every record; it creates dir when it is missing. Call it
// when arr starts, before any exec handler runs, with the PIDDir of the exec
// handlers: a group recorded there belonged to an arr process that died
// without cleaning up (SIGKILL, OOM kill, power loss of a container). killed
// counts the groups that were signalled. Files whose names are not process
// ids are left alone.
//
// A record is a file named after the group's id (the leader's pid) holding
// the leader's start time. Whether the group is still ours:
//
//   - /proc/<pgid> does not exist: the leader is gone, but its children may
//     not be (Pdeathsig killed only the leader). The kernel never hands out
//     a pid that is still the id of some process group, so if a group
//     <pgid> exists it is the one recorded, and it is killed (ESRCH, no such
//     group, is fine).
//   - /proc/<pgid> exists with the recorded start time: the leader itself is
//     still alive; the group is killed.
//   - /proc/<pgid> exists with another start time: the group went away and
//     the pid was reused by an unrelated process, which is not touched.
//
// A record that cannot be read is only acted on when /proc/<pgid> is gone.
// Reap never signals arr's own process group.
//
// A command can be killed with arr in the moment between its start and its
// record (Pdeathsig kills it, but it may have started children already).
// So every command of a handler with a PIDDir also carries
// ARR_EXEC_DIR=<PIDDir> in its environment, which its children inherit;
// Reap also kills the group of every process whose initial environment
// (/proc/<pid>/environ) holds that marker. None of them can belong to the
// running arr, which has started no command yet. (A process that rewrites
// its own environment escapes this second net, not the first.)
func Reap(dir string) (killed int, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("command: reap: %w", err)
	}
	defer func() { killed += reapMarked(dir) }()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("command: reap: %w", err)
	}
	own := syscall.Getpgrp()
	var errs []error
	for _, e := range entries {
		pgid, perr := strconv.Atoi(e.Name())
		if perr != nil || pgid <= 1 || strconv.Itoa(pgid) != e.Name() {
			continue // not a record
		}
		path := filepath.Join(dir, e.Name())
		if pgid != own && recordedGroupIsOurs(path, pgid) && killGroup(pgid, syscall.SIGKILL) == nil {
			killed++
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return killed, fmt.Errorf("command: reap: %w", errors.Join(errs...))
	}
	return killed, nil
}

// markerVar names the environment variable that marks a command's
// processes with the PIDDir of the handler that started it.
const markerVar = "ARR_EXEC_DIR"

// marker is the environment entry of the commands of a handler whose
// PIDDir is dir.
func marker(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return markerVar + "=" + dir
}

// reapMarked kills the groups of the processes that carry dir's marker,
// and returns how many groups it signalled.
func reapMarked(dir string) int {
	want := []byte(marker(dir))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	own, self := syscall.Getpgrp(), os.Getpid()
	killed := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !hasEntry(env, want) {
			continue
		}
		pgid, err := syscall.Getpgid(pid)
		if err != nil {
			continue
		}
		if pgid > 1 && pgid != own && !killed[pgid] {
			if killGroup(pgid, syscall.SIGKILL) == nil {
				killed[pgid] = true
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL) // also one that left its group
	}
	return len(killed)
}

// hasEntry reports whether the NUL-separated environment env holds entry.
func hasEntry(env, entry []byte) bool {
	for len(env) > 0 {
		i := bytes.IndexByte(env, 0)
		if i < 0 {
			i = len(env)
		}
		if bytes.Equal(env[:i], entry) {
			return true
		}
		env = env[min(i+1, len(env)):]
	}
	return false
}

// recordedGroupIsOurs applies Reap's rules to the record at path.
func recordedGroupIsOurs(path string, pgid int) bool {
	now, err := startTime(pgid)
	if isGone(err) {
		return true
	}
	if err != nil {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	rec, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && rec == now
}

// writeRecord records the group led by pgid (which must not have been reaped
// yet) in dir and returns the record's path.
func writeRecord(dir string, pgid int) (string, error) {
	st, err := startTime(pgid)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, strconv.Itoa(pgid))
	if err := os.WriteFile(path, []byte(strconv.FormatUint(st, 10)+"\n"), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// startTime returns field 22 of /proc/<pid>/stat: when the process started,
// in clock ticks since boot. With the pid it identifies a process for good.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Field 2, the command name, is in parentheses and may hold anything,
	// parentheses and spaces included: count from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("command: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 20 {
		return 0, fmt.Errorf("command: /proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[22-3], 10, 64)
}

// isGone reports whether err from reading /proc/<pid> says there is no such
// process.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// killGroup sends sig to the process group pgid. pgid must be above 1:
// kill(-1) would signal every process arr may signal and kill(0) arr's own
// group.
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return syscall.EINVAL
	}
	return syscall.Kill(-pgid, sig)
}

// waitExited blocks until the process pid has exited, without reaping it:
// until it is reaped its pid, and so its group's id, cannot be reused, which
// makes signalling the group safe.
func waitExited(pid int) error {
	const (
		pPID    = 1         // P_PID
		wExited = 0x4       // WEXITED
		wNoWait = 0x1000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// waitGone waits until the process group pgid is gone, or deadline; it
// reports whether the group is gone. The leader must have been reaped. It
// reaps members that are arr's own children: orphans are, when arr is PID 1
// or a child subreaper, and they stay zombies, members of the group, until
// reaped.
func waitGone(pgid int, deadline <-chan time.Time) bool {
	delay := time.Millisecond
	for {
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
		if err := killGroup(pgid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		t := time.NewTimer(delay)
		select {
		case <-deadline:
			t.Stop()
			return false
		case <-t.C:
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}
