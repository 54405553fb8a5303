package arr

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/arrhq/arr/operation"
)

func TestTruncateUTF8(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	for n := 0; n <= 22; n++ {
		got := truncateUTF8(s, n)
		if len(got) > max(n, len("…")) || !utf8.ValidString(got) {
			t.Errorf("n=%d: %q (%d bytes)", n, got, len(got))
		}
		if n >= 20 && got != s {
			t.Errorf("n=%d cut %q", n, got)
		}
		if n < 20 && !strings.HasSuffix(got, "…") {
			t.Errorf("n=%d: %q does not say it was cut", n, got)
		}
	}
}

func TestBoundProblem(t *testing.T) {
	c := &Client{cfg: Config{MaxDetailBytes: 100, MaxExtensionBytes: 250}}
	small := &operation.Problem{Type: "t", Title: "T", Detail: "d", Extensions: map[string]any{"a": 1}}
	if c.boundProblem(small) != small {
		t.Error("a problem within the bounds was copied")
	}
	p := &operation.Problem{Type: "t", Title: strings.Repeat("T", 5000), Detail: strings.Repeat("d", 1000),
		Extensions: map[string]any{"big": strings.Repeat("b", 500), "mid": strings.Repeat("m", 150), "small": 7}}
	q := c.boundProblem(p)
	if len(p.Detail) != 1000 || len(p.Extensions) != 3 {
		t.Error("the original was changed")
	}
	if len(q.Detail) > 100 || q.Extensions["detailTruncated"] != true || len(q.Title) > maxProblemField {
		t.Errorf("detail %d bytes, title %d, extensions %v", len(q.Detail), len(q.Title), q.Extensions)
	}
	om, _ := q.Extensions["omittedMembers"].([]string)
	if len(om) != 1 || om[0] != "big" || q.Extensions["small"] != 7 || q.Extensions["mid"] == nil {
		t.Errorf("omitted %v, kept %v", om, q.Extensions)
	}
	_, n := extensionSizes(q.Extensions)
	if n > 250 {
		t.Errorf("extensions %d bytes", n)
	}
	if _, err := json.Marshal(q); err != nil {
		t.Error(err)
	}
}

func TestBoundHistory(t *testing.T) {
	op := &operation.Operation{}
	for i := 1; i <= 10; i++ {
		op.AddAttempt(operation.Attempt{Number: i, Outcome: operation.OutcomeFailed,
			Error: &operation.Problem{Title: "x", Detail: strings.Repeat("d", 1000)}})
		boundHistory(op, 3500)
	}
	b, _ := json.Marshal(op.History)
	if len(b) > 3500 || op.History[0].Number != 1 || op.History[len(op.History)-1].Number != 10 ||
		op.HistoryDropped != 10-len(op.History) {
		t.Errorf("%d bytes, %d entries %d..%d, dropped %d", len(b), len(op.History), op.History[0].Number,
			op.History[len(op.History)-1].Number, op.HistoryDropped)
	}
	// Two entries larger than the bound stay: the first and the latest.
	boundHistory(op, 10)
	if len(op.History) != 2 || op.History[0].Number != 1 || op.History[1].Number != 10 || op.HistoryDropped != 8 {
		t.Errorf("%d entries, dropped %d", len(op.History), op.HistoryDropped)
	}
}

func TestBoundHeader(t *testing.T) {
	h := http.Header{"A": {"1"}, "B": {strings.Repeat("b", 100)}, "C": {"3"}}
	got := boundHeader(h, 20)
	if len(got) != 2 || got.Get("A") != "1" || got.Get("C") != "3" {
		t.Errorf("%v", got)
	}
	if small := (http.Header{"A": {"1"}}); len(boundHeader(small, 20)) != 1 {
		t.Error("a header within the bound was cut")
	}
}
