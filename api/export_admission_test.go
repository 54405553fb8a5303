package api

import (
	"net/http/httptest"

	arr "github.com/arrhq/arr"
)

// RecordStorageError is the answer to a submit the core refused with e.
func RecordStorageError(e *arr.StorageError) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	storageProblem(rec, e)
	return rec
}
