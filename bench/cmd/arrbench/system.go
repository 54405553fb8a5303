package main

import "context"

// System is one job system under test, driven the same way by every
// workload. A System is used by one workload at a time; Submit, Status and
// SubmitAndWait are called from many goroutines at once.
type System interface {
	// Name is the label in the table, e.g. "asynq (Redis, appendfsync always)".
	Name() string
	// Durability says in a few words what a successful Submit survives,
	// printed beside the figures.
	Durability() string
	// Start brings the system up on a clean state (no jobs, no results)
	// with the given number of workers running the echo handler (0: none,
	// submissions stay pending).
	Start(ctx context.Context, workers int) error
	// Submit durably accepts one job whose payload is body and returns its
	// id. It returns once the system would have answered 202.
	Submit(ctx context.Context, body []byte) (string, error)
	// WaitCompleted blocks until n jobs submitted since Start have their
	// results readable.
	WaitCompleted(ctx context.Context, n int) error
	// SubmitAndWait submits one job and returns its result bytes (the
	// echoed payload) once readable, by the system's best means of waiting.
	SubmitAndWait(ctx context.Context, body []byte) ([]byte, error)
	// Status reads the state of the job with the given id (for W4).
	Status(ctx context.Context, id string) error
	// PIDs are the processes whose CPU time counts for this system besides
	// the harness itself (Redis, PostgreSQL backends, an arr serve child).
	// SelfCPU says whether the harness's own CPU counts (true for library
	// clients, false when the system is driven over HTTP).
	PIDs() []int
	SelfCPU() bool
	// Stop shuts the system down and releases what Start took.
	Stop() error
}
