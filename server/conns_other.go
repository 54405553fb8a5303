//go:build !unix

package server

// fdLimit: no RLIMIT_NOFILE here.
func fdLimit() (uint64, bool) { return 0, false }
