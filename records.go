package arr

import (
	"encoding/json"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/arrhq/arr/operation"
)

// Defaults of Config's record bounds. Together they bound what an
// operation's record holds whatever its handler or upstream answers: a
// problem (Error, and each History entry's) is at most about
// 3×maxProblemField + MaxDetailBytes + MaxExtensionBytes bytes as JSON
// (≈ 15 KiB by default); History is at most MaxHistoryBytes, or its first
// and latest entries when those alone are larger; a result's headers are
// at most MaxResultHeaderBytes.
const (
	// DefaultMaxDetailBytes bounds a problem's detail and a progress
	// message: 4 KiB.
	DefaultMaxDetailBytes = 4 << 10
	// DefaultMaxExtensionBytes bounds a problem's extension members (an
	// upstream's status, content type and JSON body, a handler's own), as
	// JSON: 8 KiB.
	DefaultMaxExtensionBytes = 8 << 10
	// DefaultMaxHistoryBytes bounds an operation's attempt history, as
	// JSON: 64 KiB.
	DefaultMaxHistoryBytes = 64 << 10
	// DefaultMaxResultHeaderBytes bounds the headers kept with a result
	// (a forward handler's upstream response headers): 16 KiB.
	DefaultMaxResultHeaderBytes = 16 << 10
)

// maxProblemField bounds a problem's type, title and instance.
const maxProblemField = 1 << 10

// The extension members the bounds add to a problem they cut.
const (
	// extDetailTruncated (true) says the detail was cut.
	extDetailTruncated = "detailTruncated"
	// extOmitted lists the extension members left out (largest first)
	// to keep the problem within MaxExtensionBytes.
	extOmitted = "omittedMembers"
)

// boundProblem returns p cut to the record bounds: detail to
// MaxDetailBytes (ending in "…", with detailTruncated: true), type, title
// and instance to 1 KiB, and the extension members, largest first, left
// out (named in omittedMembers) until the rest fit MaxExtensionBytes. p
// is returned as it is when it fits; otherwise a copy is cut.
func (c *Client) boundProblem(p *operation.Problem) *operation.Problem {
	if p == nil {
		return nil
	}
	maxDetail, maxExt := c.cfg.MaxDetailBytes, c.cfg.MaxExtensionBytes
	sizes, extBytes := extensionSizes(p.Extensions)
	if len(p.Detail) <= maxDetail && len(p.Type) <= maxProblemField && len(p.Title) <= maxProblemField &&
		len(p.Instance) <= maxProblemField && extBytes <= maxExt {
		return p
	}
	q := p.Clone()
	q.Type = truncateUTF8(q.Type, maxProblemField)
	q.Title = truncateUTF8(q.Title, maxProblemField)
	q.Instance = truncateUTF8(q.Instance, maxProblemField)
	if len(q.Detail) > maxDetail {
		q.Detail = truncateUTF8(q.Detail, maxDetail)
		if q.Extensions == nil {
			q.Extensions = map[string]any{}
		}
		q.Extensions[extDetailTruncated] = true
		extBytes += len(`,"detailTruncated":true`)
		sizes[extDetailTruncated] = len(`,"detailTruncated":true`)
	}
	if extBytes > maxExt {
		names := make([]string, 0, len(sizes))
		for k := range sizes {
			if k != extDetailTruncated {
				names = append(names, k)
			}
		}
		// Largest first; by name among equals, so the cut is the same
		// every time.
		slices.SortFunc(names, func(a, b string) int {
			if sizes[a] != sizes[b] {
				return sizes[b] - sizes[a]
			}
			if a < b {
				return -1
			}
			return 1
		})
		var omitted []string
		for _, k := range names {
			if extBytes+omittedBytes(omitted) <= maxExt {
				break
			}
			delete(q.Extensions, k)
			extBytes -= sizes[k]
			omitted = append(omitted, truncateUTF8(k, 64))
		}
		if len(omitted) > 0 {
			q.Extensions[extOmitted] = omitted
		}
	}
	return q
}

// omittedBytes is the size, as JSON, of the omittedMembers member
// listing omitted.
func omittedBytes(omitted []string) int {
	if len(omitted) == 0 {
		return 0
	}
	n := len(`,"omittedMembers":[]`)
	for _, k := range omitted {
		n += len(k) + 3
	}
	return n
}

// extensionSizes returns each extension member's size as JSON
// (,"name":value) and their sum. A member that does not encode counts as
// over any bound (the problem would not encode either).
func extensionSizes(ext map[string]any) (map[string]int, int) {
	sizes := make(map[string]int, len(ext))
	total := 0
	for k, v := range ext {
		b, err := json.Marshal(v)
		n := len(k) + len(b) + 4
		if err != nil {
			n = 1 << 30
		}
		sizes[k] = n
		total += n
	}
	return sizes, total
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary, ending in
// "…" when it cut.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := max(n-len(ell), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// TruncateError is err's text cut to n bytes (on a rune boundary, ending
// in "…" when cut): how an error value is logged, so that a log line
// never carries an upstream's whole body.
func TruncateError(err error, n int) string {
	if err == nil {
		return ""
	}
	return truncateUTF8(err.Error(), n)
}

// boundHistory keeps op.History within maxBytes (as JSON): while it is
// larger, the oldest entry after the first is dropped and counted in
// op.HistoryDropped, so that the first attempt and the latest ones stay.
func boundHistory(op *operation.Operation, maxBytes int) {
	if maxBytes <= 0 || len(op.History) <= 2 {
		return
	}
	sizes := make([]int, len(op.History))
	total := 0
	for i, a := range op.History {
		b, _ := json.Marshal(a)
		sizes[i] = len(b) + 1
		total += sizes[i]
	}
	drop := 0
	for total > maxBytes && len(op.History)-drop > 2 {
		total -= sizes[1+drop]
		drop++
	}
	if drop > 0 {
		op.History = slices.Delete(op.History, 1, 1+drop)
		op.HistoryDropped += drop
	}
}

// boundHeader returns h's fields, in name order, as far as they fit in
// maxBytes (a field counts its name, its values and 4 bytes each); a field
// that does not fit whole is left out. h is returned as it is when it
// fits.
func boundHeader(h http.Header, maxBytes int) http.Header {
	total := 0
	for k, vs := range h {
		for _, v := range vs {
			total += len(k) + len(v) + 4
		}
	}
	if total <= maxBytes {
		return h
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := http.Header{}
	used := 0
	for _, k := range keys {
		n := 0
		for _, v := range h[k] {
			n += len(k) + len(v) + 4
		}
		if used+n > maxBytes {
			continue
		}
		used += n
		out[k] = h[k]
	}
	return out
}
