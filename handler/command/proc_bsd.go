//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package command

import "syscall"

// pdeathsig: these systems have no parent-death signal. If arr dies, the
// command and its group go on running (reparented to init or launchd) until
// they exit by themselves.
const pdeathsig = false

// sysProcAttr puts a command in a process group of its own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitExited blocks until the process pid, a child of arr, has exited,
// without reaping it: until it is reaped its pid, and so its group's id,
// cannot be reused, which makes signalling the group safe. It waits with
// kqueue's EVFILT_PROC/NOTE_EXIT; a child that is already a zombie when the
// filter is added is reported either at once (FreeBSD) or as ESRCH (macOS),
// both meaning it has exited.
func waitExited(pid int) error {
	kq, err := syscall.Kqueue()
	if err != nil {
		return err
	}
	defer syscall.Close(kq)
	var change syscall.Kevent_t
	syscall.SetKevent(&change, pid, syscall.EVFILT_PROC, syscall.EV_ADD|syscall.EV_ONESHOT)
	change.Fflags = syscall.NOTE_EXIT
	changes := []syscall.Kevent_t{change}
	events := make([]syscall.Kevent_t, 1)
	for {
		n, err := syscall.Kevent(kq, changes, events, nil)
		switch {
		case err == syscall.EINTR:
			continue // adding the filter again is harmless: EV_ADD replaces it
		case err == syscall.ESRCH:
			return nil
		case err != nil:
			return err
		case n < 1:
			continue
		}
		ev := events[0]
		if ev.Flags&syscall.EV_ERROR != 0 {
			if e := syscall.Errno(ev.Data); e != syscall.ESRCH {
				return e
			}
			return nil
		}
		if ev.Fflags&syscall.NOTE_EXIT != 0 {
			return nil
		}
		// Not the exit: add the filter again (a zombie gives ESRCH) and
		// wait on.
	}
}
