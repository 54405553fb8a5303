//go:build !linux

package command

// Outside Linux the exec handler records nothing in Config.PIDDir and Reap
// kills nothing: without /proc (start times, environments) a recorded
// process group id cannot be told from an unrelated group that got the same
// id since, and killing that one would be worse than leaving a dead arr's
// commands running.

// writeRecord records nothing; the empty path tells Process there is no
// record to remove.
func writeRecord(dir string, pgid int) (string, error) { return "", nil }

// reap has nothing to do.
func reap(dir string) (int, error) { return 0, nil }
