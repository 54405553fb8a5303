package fileresult

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/resultstore/driver"
)

// Problem types of the responses Handler refuses with.
const (
	ProblemSignedURLInvalid = "urn:arr:problem:signed-url-invalid"
	ProblemSignedURLExpired = "urn:arr:problem:signed-url-expired"
	ProblemResultNotFound   = "urn:arr:problem:result-not-found"
	ProblemMethodNotAllowed = "urn:arr:problem:method-not-allowed"
	ProblemInternal         = "urn:arr:problem:internal"
)

// Handler serves signed URLs; see driver.Server. Mount it at Prefix with
// the request path unchanged (mux.Handle(s.Prefix(), s.Handler()), not
// under http.StripPrefix).
//
// Only GET and HEAD are served (others: 405). A URL that is malformed, not
// validly signed or expired gets 403; a validly signed URL for a result that
// no longer exists gets 404; refusals are application/problem+json. The
// bytes are served with http.ServeContent, so Range, If-Range,
// If-None-Match and If-Modified-Since work, with the stored Content-Type and
// ETag, Cache-Control "private, max-age=<seconds until the URL expires>",
// X-Content-Type-Options: nosniff, a Content-Security-Policy that runs
// nothing, and Referrer-Policy: no-referrer. Every result gets
// "Content-Disposition: attachment" with the key's last segment as file
// name (plus an extension for the common text types when it has none), so
// that a browser opening the URL downloads the data, as the seed's blob URLs
// did, and never renders it on arr's origin.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, r, http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed", "signed result URLs only serve GET and HEAD")
		return
	}
	key, exp, err := s.check(r)
	if err != nil {
		if errors.Is(err, errExpired) {
			writeProblem(w, r, http.StatusForbidden, ProblemSignedURLExpired, "Signed URL expired", err.Error()+" at "+exp.UTC().Format(time.RFC3339))
			return
		}
		writeProblem(w, r, http.StatusForbidden, ProblemSignedURLInvalid, "Invalid signed URL", err.Error())
		return
	}
	rd, err := s.Open(r.Context(), key)
	if errors.Is(err, driver.ErrNotFound) {
		writeProblem(w, r, http.StatusNotFound, ProblemResultNotFound, "Result not found", "the result no longer exists")
		return
	}
	if err != nil {
		writeProblem(w, r, http.StatusInternalServerError, ProblemInternal, "Internal error", "the result could not be read")
		return
	}
	defer rd.Close()
	a := rd.Attributes()
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("ETag", a.ETag)
	maxAge := max(int64(exp.Sub(s.now())/time.Second), 0)
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(maxAge, 10))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	cd := mime.FormatMediaType("attachment", map[string]string{"filename": fileName(key, a.ContentType)})
	if cd == "" {
		cd = "attachment"
	}
	h.Set("Content-Disposition", cd)
	http.ServeContent(w, r, "", a.ModTime, rd)
}

// check parses and verifies the signed URL of r, returning its key and
// expiry.
func (s *Store) check(r *http.Request) (string, time.Time, error) {
	p := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(p, s.opts.Prefix)
	if !ok || rest == "" {
		return "", time.Time{}, errBadSignature
	}
	segs := strings.Split(rest, "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil || strings.Contains(u, "/") { // an encoded slash is never part of a key's path
			return "", time.Time{}, errBadSignature
		}
		segs[i] = u
	}
	key := strings.Join(segs, "/")
	if ValidateKey(key) != nil {
		return "", time.Time{}, errBadSignature
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", time.Time{}, errBadSignature
	}
	exp, err := s.verify(key, q)
	return key, exp, err
}

// fileName is the download name of key: its last segment, with an
// extension for the common text types when it has none.
func fileName(key, ct string) string {
	name := path.Base(key)
	if path.Ext(name) != "" {
		return name
	}
	mt, _, _ := mime.ParseMediaType(ct)
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

func writeProblem(w http.ResponseWriter, r *http.Request, status int, typ, title, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(operation.Problem{Type: typ, Title: title, Status: status, Detail: detail})
}
