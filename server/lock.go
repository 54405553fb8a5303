package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// dirLock is an exclusive lock on a data directory, held while the process
// runs and released by the system when it dies: flock on unix (advisory),
// LockFileEx on Windows. Elsewhere (lock_other.go) nothing is locked.
type dirLock struct{ f *os.File }

// errLocked is lockFile's error when another holds the lock.
var errLocked = errors.New("locked")

// lockDir takes the lock on dir/arr.lock, or says which process holds it.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, "arr.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("arr: data dir lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("arr: data dir %s is in use by another arr process (pid %s); give each process its own -data", dir, trimPID(holder))
		}
		return nil, fmt.Errorf("arr: data dir lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() error { return l.f.Close() }

func trimPID(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}
