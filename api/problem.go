package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// Problem types arr answers with. They are stable: clients may switch on
// them. docs/http-api.md describes each.
const (
	ProblemInvalidBody        = "urn:arr:problem:invalid-body"
	ProblemInvalidID          = "urn:arr:problem:invalid-id"
	ProblemInvalidParameter   = "urn:arr:problem:invalid-parameter"
	ProblemNotFound           = "urn:arr:problem:not-found"
	ProblemMethodNotAllowed   = "urn:arr:problem:method-not-allowed"
	ProblemNotCancelable      = "urn:arr:problem:not-cancelable"
	ProblemBodyTooLarge       = "urn:arr:problem:body-too-large"
	ProblemUnsupportedMedia   = "urn:arr:problem:unsupported-media-type"
	ProblemIdempotencyReuse   = "urn:arr:problem:idempotency-key-reused"
	ProblemForbidden          = "urn:arr:problem:forbidden"
	ProblemQueueFull          = "urn:arr:problem:queue-full"
	ProblemInternal           = "urn:arr:problem:internal"
	ProblemOperationCanceled  = arr.ProblemCanceled
	ProblemNotFinished        = "urn:arr:problem:not-finished"
	ProblemResultNotAvailable = "urn:arr:problem:result-unavailable"
	ProblemGone               = "urn:arr:problem:gone"
	ProblemNotRetryable       = "urn:arr:problem:not-retryable"

	// Limits (docs/operations.md, "Limits").
	ProblemStorageFull        = "urn:arr:problem:insufficient-storage" // 507: disk watermark or a stored-bytes budget
	ProblemStorageUnavailable = "urn:arr:problem:storage-unavailable"  // 503: a store write failed or timed out
	ProblemRateLimited        = "urn:arr:problem:rate-limited"         // 429
	ProblemHeadersTooLarge    = "urn:arr:problem:headers-too-large"    // 431
	ProblemTooManyStreams     = "urn:arr:problem:too-many-streams"     // 503: SSE or long-poll cap
	ProblemTooManyConnections = "urn:arr:problem:too-many-connections" // 503
	ProblemAmbiguousFraming   = "urn:arr:problem:ambiguous-framing"    // 400: Content-Length with Transfer-Encoding
)

// writeProblem answers with an RFC 9457 problem.
func writeProblem(w http.ResponseWriter, status int, typ, title, detail string) {
	writeProblemValue(w, &operation.Problem{Type: typ, Title: title, Status: status, Detail: detail})
}

func writeProblemValue(w http.ResponseWriter, p *operation.Problem) { problem.Write(w, nil, p) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	if ov, ok := v.(*opView); ok {
		b = ov.appendJSON(make([]byte, 0, 512))
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		writeProblem(w, 500, ProblemInternal, "Internal error", "the response could not be encoded")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
