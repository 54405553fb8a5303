//go:build windows

package server

import "golang.org/x/sys/windows"

// statfs returns the bytes the caller may still use on the volume of dir,
// and the volume's size.
func statfs(dir string) (free, total uint64, err error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, 0, err
	}
	var avail, size, totalFree uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &size, &totalFree); err != nil {
		return 0, 0, err
	}
	return avail, size, nil
}
