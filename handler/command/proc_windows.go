package command

import (
	"errors"
	"syscall"
	"time"
)

// Windows has no process groups as unix has, no signals and no
// parent-death signal. A command is a single process: it is terminated
// (TerminateProcess) whatever the signal, at once, so Config.KillGrace does
// not apply; the processes it started are not tracked and are not killed
// with it; if arr dies, the command goes on running.

const pdeathsig = false

// sysProcAttr: the defaults.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup terminates the process pid (exit code 1), whatever sig is; sig
// 0 only checks that the process can be opened. Process calls it only
// while the exec.Cmd that started pid has not been waited for: its
// process handle keeps pid from being reused until then.
func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return syscall.EINVAL
	}
	access := uint32(syscall.PROCESS_TERMINATE)
	if sig == 0 {
		access = syscall.PROCESS_QUERY_INFORMATION
	}
	h, err := syscall.OpenProcess(access, false, uint32(pid))
	if err != nil {
		return err
	}
	defer syscall.CloseHandle(h)
	if sig == 0 {
		return nil
	}
	return syscall.TerminateProcess(h, 1)
}

// waitExited blocks until the process pid has exited, without releasing it
// (exec.Cmd's Wait does that). Like killGroup, it is called before that
// Wait.
func waitExited(pid int) error {
	h, err := syscall.OpenProcess(syscall.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return err
	}
	defer syscall.CloseHandle(h)
	ev, err := syscall.WaitForSingleObject(h, syscall.INFINITE)
	if ev == syscall.WAIT_OBJECT_0 {
		return nil
	}
	if err == nil {
		err = errors.New("command: WaitForSingleObject: unexpected result")
	}
	return err
}

// waitGone: a command has no group; once it has exited (Process calls this
// only after Wait) nothing of it is left to wait for.
func waitGone(pid int, deadline <-chan time.Time) bool { return true }
