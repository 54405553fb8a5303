package fileresult

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/arrhq/arr/internal/urlsign"
	"github.com/arrhq/arr/resultstore/driver"
)

// Problem types of the responses Handler refuses with.
const (
	ProblemSignedURLInvalid = urlsign.ProblemSignedURLInvalid // "urn:arr:problem:signed-url-invalid"
	ProblemSignedURLExpired = urlsign.ProblemSignedURLExpired // "urn:arr:problem:signed-url-expired"
	ProblemResultNotFound   = urlsign.ProblemResultNotFound   // "urn:arr:problem:result-not-found"
	ProblemMethodNotAllowed = urlsign.ProblemMethodNotAllowed // "urn:arr:problem:method-not-allowed"
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
	if !urlsign.AllowMethod(w, r) {
		return
	}
	key, exp, err := s.check(r)
	if err != nil {
		urlsign.WriteRefusal(w, r, err, exp)
		return
	}
	rd, err := s.Open(r.Context(), key)
	if errors.Is(err, driver.ErrNotFound) {
		urlsign.WriteNotFound(w, r)
		return
	}
	if err != nil {
		urlsign.WriteProblem(w, r, http.StatusInternalServerError, ProblemInternal, "Internal error", "the result could not be read")
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
	cd := mime.FormatMediaType("attachment", map[string]string{"filename": urlsign.DownloadName(key, a.ContentType)})
	if cd == "" {
		cd = "attachment"
	}
	h.Set("Content-Disposition", cd)
	http.ServeContent(w, r, "", a.ModTime, rd)
}

// check parses and verifies the signed URL of r (see
// urlsign.Scheme.Verify; parameters besides se, kid and sig are ignored),
// returning its key and expiry.
func (s *Store) check(r *http.Request) (string, time.Time, error) {
	return s.scheme().VerifyRequest(r, s.opts.Prefix, ValidateKey, s.now(), s.lookupKey)
}
