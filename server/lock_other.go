//go:build !unix

package server

// dirLock: on systems without flock, data directories are not locked.
type dirLock struct{}

func lockDir(string) (*dirLock, error) { return &dirLock{}, nil }

func (*dirLock) release() error { return nil }
