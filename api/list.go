package api

import (
	"encoding/json"
	"net/http"
	"net/url"

	arr "github.com/arrhq/arr"
)

// DefaultMaxListBytes is Config.MaxListBytes's default: 2 MiB.
const DefaultMaxListBytes = 2 << 20

// listChunk is how many operations a page reads from the store at a time:
// what a page holds in memory is at most this many records (each bounded
// by the core's record bounds) and the bytes written so far in the
// ResponseWriter's buffer.
const listChunk = 32

// writeList writes the page of operations opts selects: {"items": [...],
// "next": "…"}. The items are read listChunk at a time and written as
// they are encoded; the page ends at opts.Limit items, or before the item
// that would take it past MaxListBytes (it holds at least one), and then
// next continues after its last item. A store error before anything is
// written is a 500; one after ends the page early, with next from its last
// item, so that the client goes on from there.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, q url.Values, opts arr.ListOptions) {
	ctx := r.Context()
	limit := opts.Limit
	opts.Limit = min(limit, listChunk)
	ops, next, err := s.c.List(ctx, opts)
	if err != nil {
		s.internal(w, "list operations", err)
		return
	}
	base := s.base(r)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)

	buf := make([]byte, 0, 4<<10)
	buf = append(buf, `{"items":[`...)
	written, n := 0, 0
	last := ""
	cut := false
	for {
		for _, op := range ops {
			mark := len(buf)
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = s.view(ctx, base, op).appendJSON(buf)
			if n > 0 && written+len(buf) > s.cfg.MaxListBytes-256 {
				buf, cut = buf[:mark], true // leaves room for the next link
				break
			}
			written += len(buf)
			if _, err := w.Write(buf); err != nil {
				return // the client is gone
			}
			buf = buf[:0]
			n++
			last = op.ID
		}
		if cut || next == "" || n >= limit {
			break
		}
		opts.After, opts.Limit = next, min(limit-n, listChunk)
		if ops, next, err = s.c.List(ctx, opts); err != nil {
			s.cfg.Logger.Error("api: list operations", "after", opts.After, "err", arr.TruncateError(err, maxLoggedError))
			cut = true
			break
		}
	}
	buf = append(buf, ']')
	if cut {
		next = last
	}
	if next != "" {
		q.Set("cursor", next)
		link, _ := json.Marshal(base + "/v1/operations?" + q.Encode())
		buf = append(buf, `,"next":`...)
		buf = append(buf, link...)
	}
	buf = append(buf, "}\n"...)
	_, _ = w.Write(buf)
}
