//go:build linux || darwin || freebsd

package server

import "golang.org/x/sys/unix"

// statfs returns the bytes an unprivileged writer may still use on the
// volume of dir, and the volume's size.
func statfs(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}
