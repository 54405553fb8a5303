//go:build !unix && !windows

package server

import "os"

// lockFile does NOT lock: this system has neither flock nor LockFileEx
// (Plan 9, WebAssembly). Two arr processes can open the same data
// directory, and nothing stops them.
func lockFile(*os.File) error { return nil }
