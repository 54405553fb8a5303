package urlsign

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
)

// handler serves the URLs of a Verifier from a result store; see
// Signer.Handler.
type handler struct {
	v       Verifier
	results *resultstore.Store
	maxTTL  func() time.Duration // the Signer's
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !AllowMethod(w, r) {
		return
	}
	key, exp, err := h.v.Verify(r, h.results.ValidateKey)
	if m := h.maxTTL(); err == nil && m > 0 && exp.After(time.Now().Add(m+MaxTTLSkew)) {
		// Validly signed, but no configured lifetime makes such a URL.
		err, exp = ErrBadSignature, time.Time{}
	}
	if err != nil {
		WriteRefusal(w, r, err, exp)
		return
	}
	if p, ok := h.results.Driver().(driver.Presigner); ok {
		h.redirect(w, r, p, key, exp)
		return
	}
	rd, err := h.results.Open(r.Context(), key)
	if errors.Is(err, driver.ErrNotFound) {
		WriteNotFound(w, r)
		return
	}
	if err != nil {
		WriteProblem(w, r, http.StatusInternalServerError, ProblemInternal, "Internal error", "the result could not be read")
		return
	}
	defer rd.Close()
	a := rd.Attributes()
	hd := w.Header()
	hd.Set("Content-Type", a.ContentType)
	hd.Set("ETag", a.ETag)
	maxAge := max(int64(time.Until(exp)/time.Second), 0)
	hd.Set("Cache-Control", "private, max-age="+strconv.FormatInt(maxAge, 10))
	SetResultHeaders(hd, key, a.ContentType, false)
	http.ServeContent(w, r, "", a.ModTime, rd)
}

func (h *handler) redirect(w http.ResponseWriter, r *http.Request, p driver.Presigner, key string, exp time.Time) {
	loc, err := p.PresignedURL(r.Context(), r.Method, key, exp)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		WriteNotFound(w, r)
		return
	case errors.Is(err, driver.ErrExpired):
		WriteRefusal(w, r, ErrExpired, exp)
		return
	case err != nil:
		WriteProblem(w, r, http.StatusBadGateway, ProblemStoreUnavailable, "Result store unavailable", "the result store could not be reached")
		return
	}
	hd := w.Header()
	hd.Set("Location", loc)
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
}
