package command

import (
	"fmt"
	"os"
	"path/filepath"
)

// The process handling that differs between systems lives in files of their
// own; this package's shared code uses only these:
//
//	sysProcAttr() *syscall.SysProcAttr  how a command is started
//	pdeathsig                           whether that start asks for a
//	                                    parent-death signal (Linux)
//	killGroup(pgid, sig) error          signal the command's group (unix),
//	                                    or terminate the command (Windows)
//	waitExited(pid) error               block until the command has exited,
//	                                    without reaping it
//	waitGone(pgid, deadline) bool       wait for the rest of the group
//	writeRecord(dir, pgid)              record a running group for Reap
//	reap(dir)                           Reap's work once dir exists
//
// proc_linux.go: process groups, Pdeathsig, waitid, records and Reap.
// proc_unix.go: killGroup and waitGone, for every unix.
// proc_bsd.go: macOS and the BSDs (process groups, kqueue; no Pdeathsig).
// proc_windows.go: a single process (no groups), TerminateProcess.
// record_other.go: no records and no reaping outside Linux.

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
//
// Records and reaping need Linux (/proc, and Pdeathsig for the leader).
// On other systems handlers write no records, and Reap only creates dir and
// returns 0: the commands an arr that died left running are not killed
// when it starts again.
func Reap(dir string) (killed int, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("command: reap: %w", err)
	}
	return reap(dir)
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
