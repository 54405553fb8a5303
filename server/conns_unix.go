//go:build unix

package server

import "syscall"

// fdLimit is the process's soft limit of open files (RLIMIT_NOFILE).
func fdLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == 0 {
		return 0, false
	}
	return uint64(l.Cur), true
}
