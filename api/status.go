package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/urlsign"
)

// lookup validates the {id} of r and reads the operation, answering the
// 400 or 404 itself when it cannot.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*operation.Operation, bool) {
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return nil, false
	}
	op, err := s.get(r.Context(), id)
	if err != nil {
		s.storeError(w, id, err)
		return nil, false
	}
	return op, true
}

// get reads an operation through the core (which says when one past its
// retention is gone).
func (s *Server) get(ctx context.Context, id string) (*operation.Operation, error) {
	return s.c.Get(ctx, id)
}

func validID(w http.ResponseWriter, id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidID, "Invalid operation id",
			fmt.Sprintf("%q is not an operation id (a UUID like 0190c5a4-7e7b-7cc0-8d59-2c8b4c1e9f3a)", id))
		return "", false
	}
	return u.String(), true
}

func (s *Server) storeError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, opstore.ErrGone) {
		writeProblem(w, http.StatusGone, ProblemGone, "Operation expired",
			"operation "+id+" finished and was deleted after its retention")
		return
	}
	if errors.Is(err, opstore.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, ProblemNotFound, "Operation not found", "no operation "+id)
		return
	}
	s.internal(w, "read operation", err)
}

// operation serves GET (the status monitor) and DELETE (cancel).
func (s *Server) operation(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.monitor(w, r)
	case http.MethodDelete:
		s.cancel(w, r)
	default:
		methodNotAllowed(w, r, "GET, HEAD, DELETE")
	}
}

func (s *Server) monitor(w http.ResponseWriter, r *http.Request) {
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return
	}
	wait, ok := s.waitParam(w, r)
	if !ok {
		return
	}
	// The revision the client has: from If-None-Match, else the current one.
	seen := strings.Trim(strings.TrimSpace(r.Header.Get("If-None-Match")), `"W/`)
	ctx := r.Context()
	op, err := s.get(ctx, id)
	if err != nil {
		s.storeError(w, id, err)
		return
	}
	if wait > 0 && !op.Status.Terminal() && (seen == "" || seen == revision(op)) {
		release, ok := s.streams.poll.acquire(w, s.clientKey(r))
		if !ok {
			return
		}
		defer release()
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		from := revision(op)
		if next, err := s.c.WaitFor(ctx, id, wait, func(o *operation.Operation) bool {
			return revision(o) != from || o.Status.Terminal()
		}); err == nil {
			op = next
		} else if errors.Is(err, opstore.ErrNotFound) {
			s.storeError(w, id, err)
			return
		}
	}
	if seen == revision(op) {
		w.Header().Set("ETag", etag(op))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.writeMonitor(w, r, s.base(r), op)
}

// waitParam reads ?wait= (a Go duration like 30s, or whole seconds) or
// Prefer: wait=N, capped at MaxWait.
func (s *Server) waitParam(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	var d time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		if n, ok := parseWaitSeconds(v); ok {
			d = time.Duration(n) * time.Second // n <= maxWaitSeconds: no overflow
		} else if pd, err := time.ParseDuration(v); err == nil {
			d = pd
		} else {
			d = -1
		}
		if d < 0 {
			writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid wait",
				fmt.Sprintf("wait=%q is not a duration (30s) or a number of seconds", v))
			return 0, false
		}
	} else if p := parsePrefer(r.Header.Values("Prefer")); p.badWait {
		writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid Prefer",
			"Prefer: wait= takes a whole number of seconds")
		return 0, false
	} else {
		d = time.Duration(p.wait) * time.Second
	}
	return min(d, s.cfg.MaxWait), true
}

// revision names one state of an operation: its version and the time it
// was written. The version alone is not enough: a lazily durable write (the
// running state, progress) lost by a crash leaves its version number to be
// written again with other content, and a client that saw the lost one
// must not take the new one for it.
func revision(op *operation.Operation) string {
	return strconv.FormatInt(op.Version, 10) + "." + strconv.FormatInt(op.UpdatedAt.UnixMicro(), 36)
}

func etag(op *operation.Operation) string { return `"` + revision(op) + `"` }

// writeMonitor answers as the status monitor: 200 + Retry-After while not
// terminal, 303 to the signed result when succeeded (200 with
// ?redirect=false), 200 with the error when failed or canceled.
func (s *Server) writeMonitor(w http.ResponseWriter, r *http.Request, base string, op *operation.Operation) {
	v := s.view(r.Context(), base, op)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("ETag", etag(op))
	switch {
	case !op.Status.Terminal():
		s.retryAfter(w, r.Context(), op)
		writeJSON(w, http.StatusOK, v)
	case op.Status == operation.Succeeded && v.Result != nil && v.Result.Href != "" && r.URL.Query().Get("redirect") != "false":
		h.Set("Location", v.Result.Href)
		writeJSON(w, http.StatusSeeOther, v)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return
	}
	op, err := s.c.Cancel(r.Context(), id)
	switch {
	case errors.Is(err, arr.ErrNotCancelable):
		writeProblem(w, http.StatusConflict, ProblemNotCancelable, "Operation already finished",
			fmt.Sprintf("operation %s is %s and cannot be canceled", op.ID, op.Status))
	case storageProblem(w, err):
	case err != nil:
		s.storeError(w, id, err)
	default:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.view(r.Context(), s.base(r), op))
	}
}

// retry serves POST /v1/operations/{id}/retry: a failed operation goes
// back to pending with fresh attempt budgets (its history kept) and is
// queued again. Retrying a pending operation queues it again if its
// message was lost (a crash between the two writes below), so that a
// client that did not get its 202 can simply repeat the call.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return
	}
	ctx := r.Context()
	op, err := s.c.Retry(ctx, id)
	switch {
	case errors.Is(err, arr.ErrNotRetryable):
		writeProblem(w, http.StatusConflict, ProblemNotRetryable, "Operation not retryable",
			fmt.Sprintf("operation %s is %s; only failed operations can be retried", op.ID, op.Status))
		return
	case errors.Is(err, opstore.ErrNotFound), errors.Is(err, opstore.ErrGone):
		s.storeError(w, id, err)
		return
	case storageProblem(w, err):
		return
	case err != nil:
		s.internal(w, "retry", err)
		return
	}
	base := s.base(r)
	w.Header().Set("Location", resultLocation(base, op.ID))
	w.Header().Set("Operation-Location", operationLocation(base, op.ID))
	w.Header().Set("Cache-Control", "no-store")
	s.retryAfter(w, ctx, op)
	writeJSON(w, http.StatusAccepted, s.view(ctx, base, op))
}

// result serves GET /v1/operations/{id}/result, a status-code URL: 202
// with Retry-After and Location (this URL, its query kept) while the
// operation is not finished; then its result (see writeResult).
func (s *Server) result(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	op, ok := s.lookup(w, r)
	if !ok {
		return
	}
	base := s.base(r)
	s.writeResult(w, r, base, op, r.URL.Query().Get("redirect") != "false", func() {
		w.Header().Set("Location", base+r.URL.EscapedPath()+query(r))
		s.retryAfter(w, r.Context(), op)
		writeJSON(w, http.StatusAccepted, s.view(r.Context(), base, op))
	})
}

// query is r's query as it came, with its "?", or "".
func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// Status codes of the result of an operation that did not succeed, on
// the status-code URLs (…/result, the seed's status URL). Both are 4xx:
// the clients that poll these URLs until a non-202 (Logic Apps, Azure
// pipelines) retry a 5xx, and a stored failure does not go away.
const (
	// StatusFailed answers for a failed operation: 424 Failed Dependency
	// (the result depended on an operation that failed).
	StatusFailed = http.StatusFailedDependency
	// StatusCanceled answers for a canceled operation: 409 Conflict.
	StatusCanceled = http.StatusConflict
)

// finishedProblem is the problem answered for the result of a failed or
// canceled operation: its stored problem (type, title, detail, instance,
// extensions) with status StatusFailed or StatusCanceled.
func finishedProblem(op *operation.Operation) *operation.Problem {
	p := op.Error.Clone()
	if p == nil {
		p = &operation.Problem{Type: ProblemResultNotAvailable, Title: "No result", Detail: "operation " + string(op.Status)}
	}
	p.Status = StatusFailed
	if op.Status == operation.Canceled {
		p.Status = StatusCanceled
	}
	return p
}

// writeResult answers with a finished operation's result: 303 to its signed
// URL (redirect) or its bytes; its finishedProblem (424 or 409) when it
// failed or was canceled; pending() when it is not finished.
func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, base string, op *operation.Operation, redirect bool, pending func()) {
	w.Header().Set("Cache-Control", "no-store")
	switch op.Status {
	case operation.Succeeded:
	case operation.Failed, operation.Canceled:
		writeProblemValue(w, finishedProblem(op))
		return
	default:
		pending()
		return
	}
	if op.Result == nil {
		writeProblem(w, http.StatusInternalServerError, ProblemResultNotAvailable, "No result", "the operation has no result recorded")
		return
	}
	if redirect {
		href, _, err := s.signedResultURL(r.Context(), base, op)
		if err != nil {
			s.internal(w, "sign result URL", err)
			return
		}
		w.Header().Set("Location", href)
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	rd, err := s.c.OpenResult(r.Context(), op)
	if err != nil {
		writeProblem(w, http.StatusGone, ProblemResultNotAvailable, "Result gone", "the result is no longer stored")
		return
	}
	defer rd.Close()
	a := rd.Attributes()
	w.Header().Set("Content-Type", a.ContentType)
	if a.ETag != "" {
		w.Header().Set("ETag", a.ETag)
	}
	urlsign.SetResultHeaders(w.Header(), op.Result.Key, a.ContentType, s.inline[op.Route])
	http.ServeContent(w, r, "", a.ModTime, rd)
}

// list serves GET /v1/operations?status=…&limit=…&cursor=….
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	q := r.URL.Query()
	var opts arr.ListOptions
	for _, v := range q["status"] {
		for _, st := range strings.Split(v, ",") {
			if st = strings.TrimSpace(st); st == "" {
				continue
			}
			if !operation.Status(st).Valid() {
				writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid status",
					fmt.Sprintf("status=%q is not one of pending, running, succeeded, failed, canceled", st))
				return
			}
			opts.Status = append(opts.Status, operation.Status(st))
		}
	}
	opts.Limit = 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid limit", "limit must be a number from 1 to 1000")
			return
		}
		opts.Limit = n
	}
	if o := q.Get("owner"); o != "" {
		// An admin's filter; any other caller's listing is its own
		// whatever it asks (the core scopes it), so the parameter is
		// refused rather than silently ignored.
		if c, _ := arr.CallerFrom(r.Context()); !c.Admin {
			writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid owner",
				"only an admin may list another principal's operations; leave owner out to list your own")
			return
		}
		opts.Owner = o
	}
	if c := q.Get("cursor"); c != "" {
		id, ok := validID(w, c)
		if !ok {
			return
		}
		opts.After = id
	}
	s.writeList(w, r, q, opts)
}

// events streams Server-Sent Events: one "operation" event per change of the
// operation (its id is the revision), ending after the terminal one or
// after Config.StreamLifetime, with a retry: field first. A client that
// reconnects with Last-Event-ID gets the operation's state if it changed
// since that revision, then its later changes; one that already has the
// terminal state gets 204, which tells an EventSource to stop.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, "GET")
		return
	}
	id, ok := validID(w, r.PathValue("id"))
	if !ok {
		return
	}
	release, ok := s.streams.sse.acquire(w, s.clientKey(r))
	if !ok {
		return
	}
	defer release()
	ctx := r.Context()
	changed, stop, err := s.c.Watch(ctx, id)
	if errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
		s.storeError(w, id, err) // a caller's call: another's id is not found
		return
	}
	if err != nil {
		s.internal(w, "watch operation", err)
		return
	}
	defer stop()
	op, err := s.get(ctx, id)
	if err != nil {
		s.storeError(w, id, err)
		return
	}
	sent := r.Header.Get("Last-Event-ID") // a revision
	s.cfg.Logger.Debug("api: event stream opened", "id", id, "last_event_id", sent)
	defer func(opened time.Time) {
		s.cfg.Logger.Debug("api: event stream closed", "id", id, "duration", time.Since(opened))
	}(time.Now())
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if op.Status.Terminal() && sent == revision(op) {
		w.WriteHeader(http.StatusNoContent) // nothing more will come
		return
	}
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	base := s.base(r)
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", s.cfg.StreamRetry.Milliseconds()); err != nil {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	var end <-chan time.Time
	if s.cfg.StreamLifetime > 0 {
		t := time.NewTimer(s.cfg.StreamLifetime)
		defer t.Stop()
		end = t.C
	}
	for {
		if rev := revision(op); rev != sent {
			b, _ := json.Marshal(s.view(ctx, base, op))
			if _, err := fmt.Fprintf(w, "id: %s\nevent: operation\ndata: %s\n\n", rev, b); err != nil {
				return
			}
			sent = rev
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if op.Status.Terminal() {
			return
		}
		select {
		case <-changed:
			next, err := s.get(ctx, id)
			if err != nil {
				// Deleted: say so and end.
				fmt.Fprintf(w, "event: gone\ndata: {}\n\n")
				_ = rc.Flush()
				return
			}
			op = next
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-end:
			return // the client resumes with Last-Event-ID
		case <-ctx.Done():
			return
		}
	}
}

// seedStatus serves the seed's GET /api/RequestStatus/{id} with its
// OnComplete (Redirect | Stream) and OnPending (OK | Synchronous | Accepted)
// options.
func (s *Server) seedStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	onComplete, ok := seedOption(w, r.URL.Query(), "OnComplete", "Redirect", "Redirect", "Stream")
	if !ok {
		return
	}
	onPending, ok := seedOption(w, r.URL.Query(), "OnPending", "OK", "OK", "Synchronous", "Accepted")
	if !ok {
		return
	}
	op, ok := s.lookup(w, r)
	if !ok {
		return
	}
	base := s.base(r)
	statusURL := base + "/api/RequestStatus/" + op.ID
	if onPending == "Synchronous" && !op.Status.Terminal() {
		release, ok := s.streams.poll.acquire(w, s.clientKey(r))
		if !ok {
			return
		}
		defer release()
		next, err := s.c.WaitFor(r.Context(), op.ID, s.cfg.SyncWait, arr.Terminal)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.storeError(w, op.ID, err)
			return
		}
		if op = next; !op.Status.Terminal() {
			writeProblem(w, http.StatusNotFound, ProblemNotFinished, "Not finished",
				fmt.Sprintf("operation %s did not finish within %s", op.ID, s.cfg.SyncWait))
			return
		}
	}
	switch {
	case op.Status.Terminal():
		// Failed or canceled: a 4xx problem (finishedProblem).
		s.writeResult(w, r, base, op, onComplete == "Redirect", nil)
	case onPending == "Accepted":
		// This URL, with the options it was asked with.
		self := statusURL + query(r)
		w.Header().Set("Location", self)
		w.Header().Set("Cache-Control", "no-store")
		s.retryAfter(w, r.Context(), op)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "In progress", "location": self})
	default:
		w.Header().Set("Cache-Control", "no-store")
		s.retryAfter(w, r.Context(), op)
		writeJSON(w, http.StatusOK, map[string]string{"status": "In progress", "location": statusURL})
	}
}

// seedOption reads a seed query option, matching its name and value
// regardless of case; a value not in allowed is a 400.
func seedOption(w http.ResponseWriter, q url.Values, name, def string, allowed ...string) (string, bool) {
	var val string
	found := false
	for k, vs := range q {
		if asciiEqualFold(k, name) && len(vs) > 0 {
			val, found = vs[0], true
		}
	}
	if !found || val == "" {
		return def, true
	}
	for _, a := range allowed {
		if asciiEqualFold(a, val) {
			return a, true
		}
	}
	writeProblem(w, http.StatusBadRequest, ProblemInvalidParameter, "Invalid "+name,
		fmt.Sprintf("%s=%q is not one of %s", name, val, strings.Join(allowed, ", ")))
	return "", false
}
