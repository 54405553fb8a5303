//go:build !(linux || darwin || freebsd || windows)

package server

import "errors"

// statfs is not implemented here: the free-space watermark is off.
func statfs(string) (free, total uint64, err error) {
	return 0, 0, errors.New("free space is not read on this system")
}
