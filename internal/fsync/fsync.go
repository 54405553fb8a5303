// Package fsync makes directory entries durable.
package fsync

import (
	"os"
	"runtime"
)

// Dir fsyncs the directory dir, so that entries just created, linked,
// renamed or removed in it are durable. On Windows, where directories
// cannot be fsynced, it does nothing.
func Dir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
