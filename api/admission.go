package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	arr "github.com/arrhq/arr"
)

// Admission (docs/operations.md, "Limits"): what the api refuses before it
// does any work for a request: a header block over its bound (431) and a
// caller over its rate (429, see ratelimit.go); and how it answers the
// core's refusals for lack of storage (507, 503).

// DefaultMaxHeaderBytes is the default of Config.MaxHeaderBytes: 64 KiB.
const DefaultMaxHeaderBytes = 64 << 10

// headerBytes is the size of r's header block as the client sent it: the
// request line and every header field line with its CRLF (the Host field,
// which net/http takes out of the header map, included), the count
// http.Server's MaxHeaderBytes is about.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	return n + arr.HeaderBytes(r.Header)
}

// headersFit answers 431 with a problem, and returns false, when r's
// header block is over Config.MaxHeaderBytes. net/http refuses blocks
// over its own MaxHeaderBytes with a plain-text 431 before the api sees
// them, but lets up to 4096 bytes more through; this check holds the
// bound exactly and answers as the api does.
func (s *Server) headersFit(w http.ResponseWriter, r *http.Request) bool {
	n := headerBytes(r)
	if n <= s.cfg.MaxHeaderBytes {
		return true
	}
	w.Header().Set("Connection", "close")
	writeProblem(w, http.StatusRequestHeaderFieldsTooLarge, ProblemHeadersTooLarge, "Request headers too large",
		"the request line and headers are "+strconv.Itoa(n)+" bytes; the limit is "+strconv.Itoa(s.cfg.MaxHeaderBytes))
	return false
}

// readLimited reports whether a request for path draws from the read
// rate limit in ServeHTTP: arr's own paths (operations, callbacks, the
// seed's status, openapi.json). Submit routes draw from the submit limit
// in their handler, paths that are no route's from the read limit in the
// 404 handler; the probes, /metrics and the signed result URLs from none.
func (s *Server) readLimited(path string) bool {
	switch {
	case path == "/v1/operations", strings.HasPrefix(path, "/v1/operations/"),
		strings.HasPrefix(path, "/v1/callbacks/"), path == "/openapi.json":
		return true
	}
	return strings.HasPrefix(asciiLower(path), seedStatusPrefix)
}

// defaultStorageRetry is the Retry-After of a storage refusal that names
// none.
const defaultStorageRetry = 30 * time.Second
