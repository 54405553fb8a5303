//go:build unix

package command

import (
	"errors"
	"syscall"
	"time"
)

// killGroup sends sig to the process group pgid. pgid must be above 1:
// kill(-1) would signal every process arr may signal and kill(0) arr's own
// group.
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return syscall.EINVAL
	}
	return syscall.Kill(-pgid, sig)
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
