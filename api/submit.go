package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// submitHandler serves the routes of one path, picking the route by method:
// an exact match, else a route of any method ("*"), else 405.
func (s *Server) submitHandler(rts []*route) http.Handler {
	var allow []string
	for _, rt := range rts {
		allow = append(allow, rt.method)
	}
	allowed := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rt *route
		for _, c := range rts {
			if c.method == r.Method {
				rt = c
				break
			}
			if c.method == "*" {
				rt = c
			}
		}
		if rt == nil {
			methodNotAllowed(w, r, allowed)
			return
		}
		if !s.admit(w, r, s.submitLimit) {
			s.metrics.submitted.WithLabelValues(rt.Name, strconv.Itoa(http.StatusTooManyRequests)).Inc()
			return
		}
		maxBody := s.cfg.MaxBodyBytes
		if rt.MaxBodyBytes > 0 {
			maxBody = rt.MaxBodyBytes
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		s.submit(rec, r, rt, maxBody)
		s.metrics.submitted.WithLabelValues(rt.Name, strconv.Itoa(rec.status)).Inc()
		s.metrics.submitDur.WithLabelValues(rt.Name).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, rt *route, maxBody int64) {
	ct := r.Header.Get("Content-Type")
	if len(rt.MediaTypes) > 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !slices.Contains(rt.MediaTypes, mt) {
			w.Header().Set("Accept-Post", strings.Join(rt.MediaTypes, ", "))
			writeProblem(w, http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, "Unsupported media type",
				fmt.Sprintf("Content-Type %q is not accepted here; send %s", ct, strings.Join(rt.MediaTypes, " or ")))
			return
		}
	}
	if r.ContentLength > maxBody {
		writeProblem(w, http.StatusRequestEntityTooLarge, ProblemBodyTooLarge, "Body too large",
			fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, maxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, http.StatusRequestEntityTooLarge, ProblemBodyTooLarge, "Body too large",
				fmt.Sprintf("the body is over the limit of %d bytes", maxBody))
			return
		}
		if errors.Is(err, ErrBodyTooSlow) {
			w.Header().Set("Connection", "close")
			writeProblem(w, http.StatusRequestTimeout, ProblemBodyTooSlow, "Body too slow", err.Error())
			return
		}
		writeProblem(w, http.StatusBadRequest, ProblemInvalidBody, "Unreadable body", err.Error())
		return
	}
	if rt.Validate != nil {
		if err := rt.Validate(body); err != nil {
			p := &operation.Problem{Type: ProblemInvalidBody, Title: "Invalid body", Status: http.StatusBadRequest, Detail: err.Error()}
			var ext interface{ ProblemExtensions() map[string]any }
			if errors.As(err, &ext) {
				p.Extensions = ext.ProblemExtensions()
			}
			writeProblemValue(w, p)
			return
		}
	}
	key, err := idempotencyKey(r.Header.Values("Idempotency-Key"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid Idempotency-Key", err.Error())
		return
	}
	pref := parsePrefer(r.Header.Values("Prefer"))
	if pref.badWait {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid Prefer",
			"Prefer: wait= takes a whole number of seconds")
		return
	}

	cbURL, ok := callbackURL(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	base := s.base(r)
	// Only the headers arr's rule keeps are stored; the credentials the
	// route keeps are sealed for the operation's id.
	o := s.originOf(r)
	hdr, creds := arr.StoredHeaders(&rt.Route, r.Header)
	sub := arr.Submission{Route: rt.Name, IdempotencyKey: key, CallbackURL: cbURL,
		Request: &operation.Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: hdr, Body: body,
			Host: o.host, RemoteAddr: r.RemoteAddr, TLS: o.scheme == "https"}}
	if creds != nil {
		sub.Seal = func(id string, req *operation.Request) error {
			sealed, err := s.cfg.Credentials.Seal(ctx, id, creds)
			if err != nil {
				return err
			}
			req.Header[arr.SealedHeader] = []string{sealed}
			return nil
		}
	}
	if rt.Seed {
		sub.Meta = func(id string, at time.Time) map[string]string {
			return map[string]string{
				"RequestGUID":        id,
				"RequestSubmittedAt": at.Format(time.RFC3339Nano),
				"RequestStatusURL":   base + "/api/RequestStatus/" + id,
			}
		}
	}
	op, created, err := s.c.Submit(ctx, sub)
	var full *arr.QueueFullError
	switch {
	case errors.As(err, &full):
		setRetryAfter(w, s.cfg.QueueWait(full.Depth))
		writeProblem(w, http.StatusServiceUnavailable, ProblemQueueFull, "Queue full", full.Error())
		return
	case submitCallbackError(w, err):
		return
	case storageProblem(w, err):
		return
	case errors.Is(err, arr.ErrRouteForbidden), errors.Is(err, arr.ErrBadPrincipal):
		writeProblem(w, http.StatusForbidden, ProblemForbidden, "Forbidden", "this route does not take requests from you")
		return
	case errors.Is(err, arr.ErrIdempotencyKeyReused):
		writeProblem(w, http.StatusUnprocessableEntity, ProblemIdempotencyReuse, "Idempotency key reused",
			"this Idempotency-Key was used for a different request; use a new key for a new request")
		return
	case err != nil:
		s.internal(w, "submit", err)
		return
	case !created:
		w.Header().Set("Idempotent-Replayed", "true")
	}

	if pref.async {
		w.Header().Set("Preference-Applied", "respond-async")
	} else if pref.wait > 0 {
		// Over the long-poll cap, the 202 at once: the operation exists.
		if release, full := s.streams.poll.tryAcquire(s.clientKey(r)); full == "" {
			wait := min(time.Duration(pref.wait)*time.Second, s.cfg.MaxWait) // pref.wait <= maxWaitSeconds: no overflow
			w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
			if done, err := s.c.WaitFor(ctx, op.ID, wait, arr.Terminal); err == nil {
				op = done
			}
			release()
		}
		if op.Status.Terminal() {
			s.writeMonitor(w, r, base, op)
			return
		}
	}
	s.accepted(w, ctx, base, op, rt.Seed)
}

// accepted answers 202 with the operation's two links: Location, the
// status-code URL (for clients that poll until a non-202: the seed
// route's status URL with OnPending=Accepted&OnComplete=Stream, else
// …/result?redirect=false), and Operation-Location, the monitor that never
// redirects (for the Azure SDKs' pollers).
func (s *Server) accepted(w http.ResponseWriter, ctx context.Context, base string, op *operation.Operation, seed bool) {
	loc := resultLocation(base, op.ID)
	if seed {
		loc = seedLocation(base, op.ID)
	}
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Operation-Location", operationLocation(base, op.ID))
	h.Set("Cache-Control", "no-store")
	s.retryAfter(w, ctx, op)
	writeJSON(w, http.StatusAccepted, s.view(ctx, base, op))
}

type preferences struct {
	async   bool
	wait    int64 // seconds, at most maxWaitSeconds
	badWait bool
}

// maxWaitSeconds bounds a parsed wait before it becomes a time.Duration:
// 999,999,999 s (31 years) times time.Second cannot overflow an int64.
// Callers clamp it further to Config.MaxWait.
const maxWaitSeconds = 999_999_999

// parseWaitSeconds reads a whole number of seconds: ASCII digits only
// (no sign, no space), clamped to maxWaitSeconds however many digits it
// has, so that it can be multiplied by time.Second.
func parseWaitSeconds(v string) (int64, bool) {
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	if v = strings.TrimLeft(v, "0"); v == "" {
		return 0, true
	}
	if len(v) > 9 {
		return maxWaitSeconds, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return min(n, maxWaitSeconds), err == nil
}

// parsePrefer reads the RFC 7240 preferences arr honours: respond-async and
// wait=N (whole seconds, quoted or not; clamped, see parseWaitSeconds).
// Others are ignored, as the RFC asks. Names match under ASCII case
// folding only.
func parsePrefer(values []string) preferences {
	var p preferences
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]), "=")
			switch asciiLower(strings.TrimSpace(name)) {
			case "respond-async":
				p.async = true
			case "wait":
				val = strings.TrimSpace(val)
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				if n, ok := parseWaitSeconds(val); ok {
					p.wait = n
				} else {
					p.badWait = true
				}
			}
		}
	}
	return p
}

// maxIdempotencyKey is the longest Idempotency-Key arr keeps.
const maxIdempotencyKey = 255

// idempotencyKey reads the Idempotency-Key header (IETF
// draft-ietf-httpapi-idempotency-key-header): a Structured Field String
// (RFC 9651 §3.3.3), "abc", whose key is its unescaped content; for the
// clients that send it bare, a token-like value abc (RFC 9110 tchar, ':'
// and '/'; a UUID, say) is the same key as "abc". The key is 1 to 255
// printable ASCII characters. No header is no key (""); more than one
// field line, parameters after the string, or any other syntax is an
// error whose text says why.
func idempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("the request has more than one Idempotency-Key header")
	}
	v := strings.Trim(values[0], " \t")
	var key string
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '\\':
				if i+1 >= len(v) || v[i+1] != '"' && v[i+1] != '\\' {
					return "", errors.New(`the Idempotency-Key string has a backslash that escapes neither " nor \`)
				}
				i++
				b.WriteByte(v[i])
			case c == '"':
				if i != len(v)-1 {
					return "", errors.New("the Idempotency-Key has something after its closing quote")
				}
				closed = true
			case c < 0x20 || c > 0x7e:
				return "", errors.New("the Idempotency-Key string has a character that is not printable ASCII")
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", errors.New("the Idempotency-Key string has no closing quote")
		}
		key = b.String()
	} else {
		for i := 0; i < len(v); i++ {
			if c := v[i]; !isTchar(c) && c != ':' && c != '/' {
				return "", errors.New(`the Idempotency-Key must be a structured-field string ("abc") or a token; quote a key with other characters`)
			}
		}
		key = v
	}
	if key == "" {
		return "", errors.New("the Idempotency-Key is empty")
	}
	if len(key) > maxIdempotencyKey {
		return "", fmt.Errorf("the Idempotency-Key is %d characters; the limit is %d", len(key), maxIdempotencyKey)
	}
	return key, nil
}

// storageProblem answers err when it is an *arr.StorageError, and reports
// whether it did: 507 Insufficient Storage (ProblemStorageFull) when the
// call was refused before anything was written (a volume under its
// free-space watermark, a stored-bytes budget spent), 503
// (ProblemStorageUnavailable) when its write failed or outlived its
// deadline; both with Retry-After. The detail names the reason, never a
// path or the store's error (those are logged where they happen).
func storageProblem(w http.ResponseWriter, err error) bool {
	var se *arr.StorageError
	if !errors.As(err, &se) {
		return false
	}
	retry := se.RetryAfter
	if retry <= 0 {
		retry = defaultStorageRetry
	}
	setRetryAfter(w, retry)
	switch se.Reason {
	case arr.StorageUnavailable:
		writeProblem(w, http.StatusServiceUnavailable, ProblemStorageUnavailable, "Storage unavailable",
			"the store could not take the write in time; retry later (with the same Idempotency-Key: the write may have landed)")
	case arr.StorageFull:
		writeProblem(w, http.StatusInsufficientStorage, ProblemStorageFull, "Insufficient storage",
			"the disk is nearly full; nothing was stored; retry later")
	case arr.StorageTenantBudget:
		writeProblem(w, http.StatusInsufficientStorage, ProblemStorageFull, "Insufficient storage",
			"your tenant's stored-bytes budget is spent; nothing was stored; retry later")
	default: // arr.StorageBudget
		writeProblem(w, http.StatusInsufficientStorage, ProblemStorageFull, "Insufficient storage",
			"the stored-bytes budget is spent; nothing was stored; retry later")
	}
	return true
}

// internal answers 500 for an internal error: the problem names the step
// that failed and carries an error id as its instance; err itself, which
// may name hosts, files or queries, goes only to the log, with the id.
func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	id := problem.ErrorID()
	s.cfg.Logger.Error("api: "+what, "err", err, "error_id", id)
	writeProblemValue(w, &operation.Problem{Type: ProblemInternal, Title: "Internal error",
		Status: http.StatusInternalServerError, Detail: what + " failed", Instance: id})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
