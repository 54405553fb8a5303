//go:build unix || windows

package server

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// A data directory is locked once: a second lockDir fails, naming the
// holder's pid, until the first lock is released.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	l, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDir(dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another arr process (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("second lockDir: %v", err)
	}
	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	l, err = lockDir(dir)
	if err != nil {
		t.Fatalf("lockDir after release: %v", err)
	}
	l.release()
}
