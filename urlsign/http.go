package urlsign

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// Problem types of the refusals of a signed URL handler.
const (
	ProblemSignedURLInvalid = "urn:arr:problem:signed-url-invalid"
	ProblemSignedURLExpired = "urn:arr:problem:signed-url-expired"
	ProblemResultNotFound   = "urn:arr:problem:result-not-found"
	ProblemMethodNotAllowed = "urn:arr:problem:method-not-allowed"
	// ProblemInternal: the result could not be read.
	ProblemInternal = "urn:arr:problem:internal"
	// ProblemStoreUnavailable: the result store that holds the bytes
	// could not be reached, or could not sign its own URL to them.
	ProblemStoreUnavailable = "urn:arr:problem:result-store-unavailable"
)

// WriteProblem writes an application/problem+json response with status,
// Cache-Control: no-store and X-Content-Type-Options: nosniff (see
// internal/problem); the body is left out for HEAD.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, typ, title, detail string) {
	problem.Write(w, r, &operation.Problem{Type: typ, Title: title, Status: status, Detail: detail})
}

// AllowMethod reports whether r is a GET or a HEAD, the only methods
// signed URLs serve. Otherwise it has answered 405 with Allow: GET, HEAD.
func AllowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	WriteProblem(w, r, http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed", "signed result URLs only serve GET and HEAD")
	return false
}

// WriteRefusal answers 403 for a URL that Verify refused with err: the
// problem type ProblemSignedURLExpired, with the expiry exp, for
// ErrExpired, ProblemSignedURLInvalid for anything else.
func WriteRefusal(w http.ResponseWriter, r *http.Request, err error, exp time.Time) {
	if errors.Is(err, ErrExpired) {
		WriteProblem(w, r, http.StatusForbidden, ProblemSignedURLExpired, "Signed URL expired", err.Error()+" at "+exp.UTC().Format(time.RFC3339))
		return
	}
	WriteProblem(w, r, http.StatusForbidden, ProblemSignedURLInvalid, "Invalid signed URL", err.Error())
}

// WriteNotFound answers 404 for a validly signed URL whose result no
// longer exists.
func WriteNotFound(w http.ResponseWriter, r *http.Request) {
	WriteProblem(w, r, http.StatusNotFound, ProblemResultNotFound, "Result not found", "the result no longer exists")
}

// EscapeKey path-escapes every segment of key, for the path of its URL.
func EscapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// KeyFromPath returns the result key of a signed URL's escaped path: what
// follows prefix, each segment unescaped. It reports false when the path
// is not under prefix, is prefix itself, or has a segment that is not
// validly escaped or holds an encoded slash (never part of a key's path).
// The key still has to be validated by the driver.
func KeyFromPath(escapedPath, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok || rest == "" {
		return "", false
	}
	segs := strings.Split(rest, "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil || strings.Contains(u, "/") {
			return "", false
		}
		segs[i] = u
	}
	return strings.Join(segs, "/"), true
}

// VerifyRequest checks the signed URL of r, for a result under prefix
// (see KeyFromPath), and returns its key and expiry: as Verify, after the
// key has passed validKey; ErrBadSignature when the path holds no valid
// key.
func (sc Scheme) VerifyRequest(r *http.Request, prefix string, validKey func(string) error, now time.Time, lookup func(kid string) *Key) (string, time.Time, error) {
	key, ok := KeyFromPath(r.URL.EscapedPath(), prefix)
	if !ok || validKey(key) != nil {
		return "", time.Time{}, ErrBadSignature
	}
	exp, err := sc.Verify(key, r.URL.RawQuery, now, lookup)
	return key, exp, err
}

// DownloadName is the file name a result of key is downloaded as: the
// key's last segment, with an extension for the common text types
// (JSON, plain text, CSV) when it has none.
func DownloadName(key, contentType string) string {
	name := path.Base(key)
	if path.Ext(name) != "" {
		return name
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/json", strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return name + ".json"
	case mt == "text/plain":
		return name + ".txt"
	case mt == "text/csv":
		return name + ".csv"
	}
	return name
}

// ResultCSP is the Content-Security-Policy of every response that serves
// result bytes: nothing in the result may run, load or submit anything.
const ResultCSP = "default-src 'none'; sandbox"

// SetResultHeaders sets on h the headers of every response that serves a
// result's bytes, on arr's origin or a signed URL's, so that a result (an
// HTML page or an SVG a caller submitted, say) can never run as part of
// that origin: Content-Security-Policy: default-src 'none'; sandbox,
// X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer and,
// unless inline, Content-Disposition: attachment with DownloadName(key,
// contentType) as file name. An inline result gets Content-Disposition:
// inline; the sandbox still applies. It is the one home of this rule:
// the result handler of Signer.Handler and the api both call it.
func SetResultHeaders(h http.Header, key, contentType string, inline bool) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", ResultCSP)
	h.Set("Referrer-Policy", "no-referrer")
	disp := "attachment"
	if inline {
		disp = "inline"
	}
	cd := mime.FormatMediaType(disp, map[string]string{"filename": DownloadName(key, contentType)})
	if cd == "" {
		cd = disp
	}
	h.Set("Content-Disposition", cd)
}
