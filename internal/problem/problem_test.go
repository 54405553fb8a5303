package problem

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/arrhq/arr/operation"
)

func TestCode(t *testing.T) {
	for _, c := range []struct {
		p    operation.Problem
		want string
	}{
		{operation.Problem{Type: "urn:arr:problem:handler-failed"}, "HandlerFailed"},
		{operation.Problem{Type: "urn:arr:problem:operation-canceled"}, "OperationCanceled"},
		{operation.Problem{Type: "urn:arr:problem:invalid-id"}, "InvalidId"},
		{operation.Problem{Type: "urn:example:busy"}, "Busy"},
		{operation.Problem{Type: "https://example.com/probs/out-of-credit"}, "OutOfCredit"},
		{operation.Problem{Type: "https://example.com/probs/out_of.credit/"}, "OutOfCredit"},
		{operation.Problem{Type: "https://example.com/probs#rate-limited"}, "RateLimited"},
		{operation.Problem{Type: "about:blank", Status: 424}, "FailedDependency"},
		{operation.Problem{Type: "", Status: 404}, "NotFound"},
		{operation.Problem{Type: "urn:x:---", Status: 409}, "Conflict"},
		{operation.Problem{Type: "urn:x:é"}, "Error"},
		{operation.Problem{Type: "urn:x:y", Extensions: map[string]any{"code": "Mine"}}, "Mine"},
		{operation.Problem{Type: "urn:x:y", Extensions: map[string]any{"code": 7}}, "Y"},
	} {
		if got := Code(&c.p); got != c.want {
			t.Errorf("Code(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}

func TestMessage(t *testing.T) {
	if m := Message(&operation.Problem{Title: "T", Detail: "D"}); m != "D" {
		t.Fatalf("with a detail: %q", m)
	}
	if m := Message(&operation.Problem{Title: "T"}); m != "T" {
		t.Fatalf("without a detail: %q", m)
	}
	if m := Message(&operation.Problem{Title: "T", Detail: "D", Extensions: map[string]any{"message": "M"}}); m != "M" {
		t.Fatalf("with a message extension: %q", m)
	}
}

// AppendJSON is one object: the members, code and message, and the
// extensions, each name once; the same as encoding/json makes of a map
// of them (encoding/json sorts a map's keys: compare decoded).
func TestAppendJSON(t *testing.T) {
	odd := "a\"b\\c\n<>&\u2028\xff"
	p := &operation.Problem{Type: "urn:arr:problem:upstream-error", Title: "Upstream error", Status: 502, Detail: odd,
		Instance: "/i", Extensions: map[string]any{"upstreamStatus": 503, "z<": odd, "type": "shadow", "code": 5}}
	got := AppendJSON([]byte("x"), p)
	if got[0] != 'x' {
		t.Fatal("did not append")
	}
	got = got[1:]
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	want := map[string]any{"type": p.Type, "title": p.Title, "status": float64(502), "detail": "a\"b\\c\n<>&\u2028\ufffd",
		"instance": "/i", "code": "UpstreamError", "message": "a\"b\\c\n<>&\u2028\ufffd", "upstreamStatus": float64(503),
		"z<": "a\"b\\c\n<>&\u2028\ufffd"}
	gb, _ := json.Marshal(m)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got  %s\nwant %s", gb, wb)
	}
	if bytes.Count(got, []byte(`"type"`)) != 1 || bytes.Count(got, []byte(`"code"`)) != 1 {
		t.Fatalf("a member twice: %s", got)
	}
	if !bytes.HasPrefix(got, []byte(`{"type":"urn:arr:problem:upstream-error","title":"Upstream error","status":502,`)) ||
		bytes.Contains(got, []byte("<")) {
		t.Fatalf("order or escaping: %s", got)
	}
	// Without extensions, and with only the required members.
	got = AppendJSON(nil, &operation.Problem{Type: "urn:x:y", Title: "T"})
	if string(got) != `{"type":"urn:x:y","title":"T","code":"Y","message":"T"}` {
		t.Fatalf("plain: %s", got)
	}
}

func TestWrite(t *testing.T) {
	p := &operation.Problem{Type: "urn:arr:problem:not-found", Title: "Not found", Status: 404, Detail: "no operation x"}
	w := httptest.NewRecorder()
	w.Header().Set("Content-Length", "3")
	Write(w, httptest.NewRequest("GET", "/", nil), p)
	if w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("Content-Length") != "" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if want := string(AppendJSON(nil, p)) + "\n"; w.Body.String() != want {
		t.Fatalf("body %q, want %q", w.Body.String(), want)
	}
	h := httptest.NewRecorder()
	Write(h, httptest.NewRequest(http.MethodHead, "/", nil), p)
	if h.Code != 404 || h.Body.Len() != 0 {
		t.Fatalf("HEAD: %d %q", h.Code, h.Body.String())
	}
	s := httptest.NewRecorder()
	Write(s, nil, &operation.Problem{Type: "urn:x:y", Title: "T", Status: 200})
	if s.Code != 500 {
		t.Fatalf("status 200 written as %d", s.Code)
	}
}
