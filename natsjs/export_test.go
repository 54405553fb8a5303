package natsjs

import "time"

// SetDueGrace sets how long DueCallbacks keeps an index entry whose
// operation does not exist, for a test; restore sets it back.
func SetDueGrace(d time.Duration) (restore func()) {
	old := dueGrace
	dueGrace = d
	return func() { dueGrace = old }
}
