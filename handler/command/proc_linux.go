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
	"unsafe"
)

// pdeathsig: a command gets SIGKILL when the thread that started it exits
// (Process keeps that thread alive until the command is reaped).
const pdeathsig = true

// sysProcAttr puts a command in a process group of its own, and has the
// kernel SIGKILL it if arr dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// reap is Reap's work once dir exists.
func reap(dir string) (killed int, err error) {
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
