package server

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockOffset is where the locked byte lies, far past the pid written at the
// start of the file: Windows locks are mandatory, and a lock over the pid
// would keep the process that finds the directory in use from reading who
// holds it.
const lockOffset = 1 << 40

// lockFile locks one byte of f exclusively (LockFileEx) without waiting;
// errLocked when another handle (of this process or another) holds it. The
// system releases it when the handle is closed or the process ends.
func lockFile(f *os.File) error {
	ol := &windows.Overlapped{Offset: lockOffset & 0xffffffff, OffsetHigh: lockOffset >> 32}
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}
