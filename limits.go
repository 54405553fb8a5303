package arr

import (
	"fmt"
	"time"
)

// Reasons of a StorageError.
const (
	// StorageFull: the free space of a volume arr writes to is under its
	// watermark (answered 507 Insufficient Storage).
	StorageFull = "full"
	// StorageBudget: the stored-bytes budget of all operations is spent
	// (507).
	StorageBudget = "budget"
	// StorageTenantBudget: the caller's tenant's stored-bytes budget is
	// spent (507).
	StorageTenantBudget = "tenant-budget"
	// StorageUnavailable: a store write failed or outlived its deadline
	// (503 Service Unavailable).
	StorageUnavailable = "unavailable"
)

// StorageError is the error of a call that needs to write and that storage
// cannot take now: it was refused before anything was written (full,
// budget, tenant-budget), or its write failed or outlived its deadline
// (unavailable; the write may still land: an idempotency key finds it).
// RetryAfter is when to try again.
type StorageError struct {
	Reason     string
	RetryAfter time.Duration
	Err        error
}

func (e *StorageError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("arr: storage %s: %v", e.Reason, e.Err)
	}
	return "arr: storage " + e.Reason
}

func (e *StorageError) Unwrap() error { return e.Err }
