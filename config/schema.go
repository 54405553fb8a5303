package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// SchemaError is a body that does not conform to its route's JSON Schema,
// or is not JSON at all.
type SchemaError struct {
	// Issues are the reasons, sorted by Pointer; there is at least one,
	// and at most MaxIssues.
	Issues []Issue
	// Truncated says that the body had more issues than Issues holds:
	// the first MaxIssues found are reported, the rest left out.
	Truncated bool
}

// MaxIssues bounds SchemaError.Issues: a body with more issues is
// reported by its first MaxIssues (in the validator's order, then sorted
// by Pointer) and Truncated, so that the answer to a hostile body (a
// megabyte array of wrong-typed items has half a million issues) stays a
// few kilobytes and its cost is not spent describing it.
const MaxIssues = 20

// MaxSchemaValues bounds the JSON values (each array item, member value
// and the document itself) of a body that a route's schema checks: a body
// with more is refused before it is decoded or validated. The validator
// decodes a body into a tree and visits every value (about half a
// microsecond and 300–500 bytes each), so that without this bound a body
// of 1 MiB, half a million values, costs a third of a second of CPU and
// 160–280 MB whatever it holds; at the bound it costs about 40 ms and
// 26 MB (BenchmarkSchemaAtValueLimit), and a body over it about 1 ms.
const MaxSchemaValues = 50_000

// Issue is one reason a body was refused.
type Issue struct {
	// Pointer is the RFC 6901 JSON Pointer of the offending value in the
	// body: "" is the whole body, "/items/0/id" a member. For a missing
	// required member it points where the member should be.
	Pointer string
	// Message says what is wrong, e.g. "must not be empty".
	Message string
}

// Error lists the issues on one line: "/customername: must not be empty;
// /id: is required".
func (e *SchemaError) Error() string {
	var b strings.Builder
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteString("; ")
		}
		if is.Pointer != "" {
			b.WriteString(is.Pointer)
			b.WriteString(": ")
		}
		b.WriteString(is.Message)
	}
	if e.Truncated {
		b.WriteString("; …")
	}
	return b.String()
}

// ProblemExtensions returns the members an RFC 9457 problem about the body
// carries: {"errors": [{"pointer": "/id", "detail": "is required"}, ...]},
// and "truncated": true when more issues were left out.
func (e *SchemaError) ProblemExtensions() map[string]any {
	list := make([]map[string]any, len(e.Issues))
	for i, is := range e.Issues {
		list[i] = map[string]any{"pointer": is.Pointer, "detail": is.Message}
	}
	ext := map[string]any{"errors": list}
	if e.Truncated {
		ext["truncated"] = true
	}
	return ext
}

// Validate checks body against the route's JSON Schema, as compiled by
// Parse; it returns nil when the route has none. Otherwise a body that is
// not JSON, or does not conform, is a *SchemaError.
func (r *Route) Validate(body []byte) error {
	if r.schema == nil {
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return &SchemaError{Issues: []Issue{{Message: "the body is empty; a JSON document is required"}}}
	}
	if n := countValues(body); n > MaxSchemaValues {
		return &SchemaError{Issues: []Issue{{Message: printer.Sprintf(
			"the body has more than %d JSON values (array items and member values); this route checks bodies of at most %d", MaxSchemaValues, MaxSchemaValues)}}}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("unexpected end of input")
		}
		return &SchemaError{Issues: []Issue{{Message: "the body is not JSON: " + err.Error()}}}
	}
	err = r.schema.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &SchemaError{Issues: []Issue{{Message: err.Error()}}}
	}
	is, truncated := issues(ve, MaxIssues)
	return &SchemaError{Issues: is, Truncated: truncated}
}

var printer = message.NewPrinter(language.English)

// issues flattens a validation error into its leaves, in the words of
// a body's author rather than a schema's: the first limit of them found
// (all when limit <= 0), and whether more were left out.
func issues(ve *jsonschema.ValidationError, limit int) (_ []Issue, truncated bool) {
	var out []Issue
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if truncated {
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		if limit > 0 && len(out) >= limit {
			truncated = true
			return
		}
		ptr := pointer(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, Issue{ptr + "/" + escapePointer(m), "is required"})
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, Issue{ptr + "/" + escapePointer(p), "is not allowed"})
			}
		case *kind.Type:
			want := make([]string, len(k.Want))
			for i, w := range k.Want {
				want[i] = article(w)
			}
			out = append(out, Issue{ptr, fmt.Sprintf("must be %s, not %s", strings.Join(want, " or "), article(k.Got))})
		case *kind.MinLength:
			msg := fmt.Sprintf("must be at least %d characters long", k.Want)
			if k.Want == 1 {
				msg = "must not be empty"
			}
			out = append(out, Issue{ptr, msg})
		case *kind.MaxLength:
			out = append(out, Issue{ptr, fmt.Sprintf("must be at most %d characters long", k.Want)})
		case *kind.FalseSchema:
			out = append(out, Issue{ptr, "is not allowed"})
		default:
			out = append(out, Issue{ptr, e.ErrorKind.LocalizedString(printer)})
		}
	}
	walk(ve)
	if len(out) == 0 {
		out = append(out, Issue{Message: "the body does not conform to the schema"})
	}
	if limit > 0 && len(out) > limit {
		out, truncated = out[:limit], true // a Required or AdditionalProperties leaf adds several
	}
	slices.SortStableFunc(out, func(a, b Issue) int { return strings.Compare(a.Pointer, b.Pointer) })
	return slices.Compact(out), truncated
}

func article(t string) string {
	switch t {
	case "null":
		return "null"
	case "object", "array", "integer":
		return "an " + t
	}
	return "a " + t
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}

func escapePointer(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// compileSchema compiles doc, a JSON value, as the schema at loc (an
// absolute file path: relative $refs resolve against it). The error is
// one line; when it is about a place in the schema, ptr is that place's
// JSON pointer tokens.
func compileSchema(loc string, doc any) (s *jsonschema.Schema, ptr []string, err error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(loc, doc); err != nil {
		return nil, nil, err
	}
	s, err = c.Compile(loc)
	if err == nil {
		return s, nil, nil
	}
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			// Alternatives (anyOf) fail together; the first says most.
			all, _ := issues(ve, 0)
			is := slices.CompactFunc(all, func(a, b Issue) bool { return a.Pointer == b.Pointer })
			msgs := make([]string, len(is))
			for i, x := range is {
				msgs[i] = x.Message
				if x.Pointer != "" {
					msgs[i] = x.Pointer + ": " + x.Message
				}
			}
			first := is[0].Pointer
			for _, x := range is[1:] {
				if len(x.Pointer) > len(first) {
					first = x.Pointer
				}
			}
			return nil, splitPointer(first), errors.New(strings.Join(msgs, "; "))
		}
	}
	return nil, nil, errors.New(oneLine(err.Error()))
}

func splitPointer(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// jsonValue converts a value decoded from YAML into the types of
// encoding/json (with int and float64 for numbers). path names it; an
// error is a *pathError.
func jsonValue(v any, path string) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, int, int64, uint64, json.Number:
		return v, nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, &pathError{path, fmt.Sprintf("%v is not a JSON number", v)}
		}
		return v, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			c, err := jsonValue(x, path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			ks := fmt.Sprint(k)
			c, err := jsonValue(x, path+"."+ks)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			c, err := jsonValue(x, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return nil, &pathError{path, fmt.Sprintf("%v (%T) has no JSON form", v, v)}
}

type pathError struct{ path, msg string }

func (e *pathError) Error() string { return e.path + ": " + e.msg }

// countValues is an upper bound of the JSON values in body, if it is JSON:
// one, plus one per array or object opened and per comma, outside
// strings. It reads each byte once and allocates nothing; what it returns
// for a body that is not JSON does not matter (the decoder refuses it).
func countValues(body []byte) int {
	n, inString, escaped := 1, false, false
	for _, c := range body {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ',' || c == '[' || c == '{':
			n++
		}
	}
	return n
}
