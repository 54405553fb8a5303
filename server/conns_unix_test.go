//go:build unix

package server

import (
	"syscall"
	"testing"
)

// The default connection cap follows the file descriptor limit: with the
// 1,024 of many systems, 768 connections, leaving 256 descriptors to the
// stores and outgoing connections.
func TestDefaultMaxConnsFollowsFDLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Max < 1024 {
		t.Skipf("hard limit %d", orig.Max)
	}
	defer func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) }()
	for _, c := range []struct {
		soft uint64
		want int
	}{{1024, 768}, {64, 64}} {
		if c.soft > orig.Max {
			continue
		}
		l := orig
		l.Cur = c.soft
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			t.Fatal(err)
		}
		if got := DefaultMaxConns(); got != c.want {
			t.Errorf("soft limit %d: DefaultMaxConns %d, want %d", c.soft, got, c.want)
		}
	}
}
