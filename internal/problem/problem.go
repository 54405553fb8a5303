// Package problem writes RFC 9457 problem details over HTTP: the one
// writer of application/problem+json that the api and the signed-URL
// handler share, and the one encoding of a problem object, which the
// api's operation JSON uses for its error members too.
package problem

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/arrhq/arr/operation"
)

// Write answers r (which may be nil) with p: its Status (a 5xx for a
// status outside 400–599), Content-Type application/problem+json,
// Cache-Control: no-store and X-Content-Type-Options: nosniff, and p as
// AppendJSON encodes it, left out when r is a HEAD. A Content-Length set
// before is removed.
func Write(w http.ResponseWriter, r *http.Request, p *operation.Problem) {
	status := p.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(append(AppendJSON(make([]byte, 0, 256), p), '\n'))
}

// members are the names AppendJSON writes itself; an extension of the
// same name is not written again.
var members = map[string]bool{"type": true, "title": true, "status": true, "detail": true, "instance": true,
	"code": true, "message": true}

// wire is the order of a problem's own members.
type wire struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// AppendJSON appends p as one JSON object: RFC 9457's type, title, status,
// detail and instance (the last three when set), then code and message,
// always (Azure's error shape, which its SDKs read: see Code and Message),
// then p's extensions in key order, those named like a member above left
// out. Strings are escaped as encoding/json escapes them.
func AppendJSON(b []byte, p *operation.Problem) []byte {
	j, _ := json.Marshal(wire{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail, Instance: p.Instance,
		Code: Code(p), Message: Message(p)})
	if len(p.Extensions) == 0 {
		return append(b, j...)
	}
	keys := make([]string, 0, len(p.Extensions))
	for k := range p.Extensions {
		if !members[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b = append(b, j[:len(j)-1]...)
	for _, k := range keys {
		vb, err := json.Marshal(p.Extensions[k])
		if err != nil {
			continue // a value JSON cannot hold is left out, not the problem
		}
		kb, _ := json.Marshal(k)
		b = append(b, ',')
		b = append(b, kb...)
		b = append(b, ':')
		b = append(b, vb...)
	}
	return append(b, '}')
}

// Code is p's stable, PascalCase error code: its "code" extension when
// that is a non-empty string (a handler's own), else the last segment of
// its type in PascalCase (urn:arr:problem:handler-failed → HandlerFailed,
// https://example.com/probs/out-of-credit → OutOfCredit), else (no type,
// about:blank, a segment with no letter or digit) the PascalCase reason
// phrase of its status (424 → FailedDependency), else "Error".
func Code(p *operation.Problem) string {
	if c, ok := p.Extensions["code"].(string); ok && c != "" {
		return c
	}
	if t := strings.TrimRight(p.Type, "/#"); t != "" && t != "about:blank" {
		if c := pascal(t[strings.LastIndexAny(t, ":/#")+1:]); c != "" {
			return c
		}
	}
	if c := pascal(http.StatusText(p.Status)); c != "" {
		return c
	}
	return "Error"
}

// Message is p's human-readable message: its "message" extension when
// that is a non-empty string, else its detail, else its title.
func Message(p *operation.Problem) string {
	if m, ok := p.Extensions["message"].(string); ok && m != "" {
		return m
	}
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

// pascal joins the ASCII letter-and-digit words of s, each with its first
// letter upper-cased: "handler-failed" → "HandlerFailed".
func pascal(s string) string {
	var b strings.Builder
	up := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
			if up {
				c -= 'a' - 'A'
			}
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			up = true
			continue
		}
		b.WriteByte(c)
		up = false
	}
	return b.String()
}
