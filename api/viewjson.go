package api

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

// appendJSON appends v as encoding/json would encode it (same fields,
// order, omitempty, HTML-safe escaping; TestViewJSONMatchesEncodingJSON
// holds it to that), without reflection: the 202 of every submit and every
// status read encode one, and reflection was 5% of the submit path's CPU.
func (v *opView) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, v.ID)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(v.Status))
	b = append(b, `,"createdAt":`...)
	b = appendJSONTime(b, v.CreatedAt)
	b = append(b, `,"updatedAt":`...)
	b = appendJSONTime(b, v.UpdatedAt)
	b = append(b, `,"percentComplete":`...)
	b = strconv.AppendInt(b, int64(v.PercentComplete), 10)
	if v.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, v.Message)
	}
	b = append(b, `,"attempts":[`...)
	for i := range v.Attempts {
		a := &v.Attempts[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"number":`...)
		b = strconv.AppendInt(b, int64(a.Number), 10)
		b = append(b, `,"outcome":`...)
		b = appendJSONString(b, a.Outcome)
		if !a.StartedAt.IsZero() {
			b = append(b, `,"startedAt":`...)
			b = appendJSONTime(b, a.StartedAt)
		}
		if !a.EndedAt.IsZero() {
			b = append(b, `,"endedAt":`...)
			b = appendJSONTime(b, a.EndedAt)
		}
		if a.Error != nil {
			b = append(b, `,"error":`...)
			b = appendProblemJSON(b, a.Error)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if v.Error != nil {
		b = append(b, `,"error":`...)
		b = appendProblemJSON(b, v.Error)
	}
	if r := v.Result; r != nil {
		b = append(b, `,"result":{"href":`...)
		b = appendJSONString(b, r.Href)
		b = append(b, `,"contentType":`...)
		b = appendJSONString(b, r.ContentType)
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, r.Size, 10)
		b = append(b, `,"expiresAt":`...)
		b = appendJSONTime(b, r.ExpiresAt)
		if r.StatusCode != 0 {
			b = append(b, `,"statusCode":`...)
			b = strconv.AppendInt(b, int64(r.StatusCode), 10)
		}
		if len(r.Headers) > 0 {
			h, _ := json.Marshal(r.Headers)
			b = append(b, `,"headers":`...)
			b = append(b, h...)
		}
		b = append(b, '}')
	}
	if v.ResourceLocation != "" {
		b = append(b, `,"resourceLocation":`...)
		b = appendJSONString(b, v.ResourceLocation)
	}
	if v.ExpiresAt != nil {
		b = append(b, `,"expiresAt":`...)
		b = appendJSONTime(b, *v.ExpiresAt)
	}
	b = append(b, `,"links":{"self":`...)
	b = appendJSONString(b, v.Links.Self)
	b = append(b, `,"result":`...)
	b = appendJSONString(b, v.Links.Result)
	b = append(b, `,"events":`...)
	b = appendJSONString(b, v.Links.Events)
	b = append(b, '}')
	if len(v.Callbacks) > 0 {
		j, _ := json.Marshal(v.Callbacks) // rare: reflection only then
		b = append(b, `,"callbacks":`...)
		b = append(b, j...)
	}
	return append(b, '}')
}

// MarshalJSON makes json.Marshal of a view (lists, events) use appendJSON.
func (v *opView) MarshalJSON() ([]byte, error) { return v.appendJSON(make([]byte, 0, 512)), nil }

// appendProblemJSON appends p as problem.AppendJSON does (and so as
// apiProblem.MarshalJSON does).
func appendProblemJSON(b []byte, p *apiProblem) []byte {
	return problem.AppendJSON(b, (*operation.Problem)(p))
}

// appendJSONTime is time.Time's MarshalJSON: RFC 3339 with nanoseconds.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does by default: control
// characters, '"' and '\\' escaped, '<', '>' and '&' as \u003c… (HTML-safe),
// U+2028 and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
