package operation

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestProblemJSONExtensions(t *testing.T) {
	p := Problem{Type: "urn:arr:upstream", Title: "Bad gateway", Status: 502,
		Extensions: map[string]any{
			"upstreamStatus": 503, "b": "x", "a": []string{"1"},
			// Reserved names never override the members.
			"title": "ignored", "status": 7, "type": "ignored", "detail": "ignored", "instance": "ignored",
		}}
	const want = `{"type":"urn:arr:upstream","title":"Bad gateway","status":502,"a":["1"],"b":"x","upstreamStatus":503}`
	for range 20 { // map order is random; the output is not
		b, err := json.Marshal(p)
		if err != nil || string(b) != want {
			t.Fatalf("Marshal = %s, %v\nwant %s", b, err, want)
		}
	}
	// Through a pointer and inside an operation too.
	if b, err := json.Marshal(&p); err != nil || string(b) != want {
		t.Fatalf("Marshal(&p) = %s, %v", b, err)
	}
	if b, err := json.Marshal(Operation{ID: "x", Error: &p}); err != nil || !json.Valid(b) ||
		!strings.Contains(string(b), `"error":`+want) {
		t.Fatalf("Marshal of an operation = %s, %v", b, err)
	}

	var got Problem
	if err := json.Unmarshal([]byte(want), &got); err != nil {
		t.Fatal(err)
	}
	wantP := Problem{Type: "urn:arr:upstream", Title: "Bad gateway", Status: 502,
		Extensions: map[string]any{"upstreamStatus": 503.0, "b": "x", "a": []any{"1"}}}
	if !reflect.DeepEqual(got, wantP) {
		t.Fatalf("Unmarshal = %+v, want %+v", got, wantP)
	}
	// And round-trips from there exactly.
	b, _ := json.Marshal(got)
	var again Problem
	if err := json.Unmarshal(b, &again); err != nil || !reflect.DeepEqual(again, wantP) {
		t.Fatalf("second round trip = %+v, %v", again, err)
	}

	// Without extensions: no extra members, and nil Extensions back.
	plain := Problem{Type: "about:blank", Title: "Not found", Status: 404, Detail: "d", Instance: "/i"}
	b, err := json.Marshal(plain)
	if err != nil || string(b) != `{"type":"about:blank","title":"Not found","status":404,"detail":"d","instance":"/i"}` {
		t.Fatalf("Marshal without extensions = %s, %v", b, err)
	}
	got = Problem{}
	if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, plain) {
		t.Fatalf("Unmarshal without extensions = %+v, %v", got, err)
	}
	// Only reserved names: same as none.
	only := Problem{Type: "t", Title: "T", Extensions: map[string]any{"title": "x"}}
	if b, err := json.Marshal(only); err != nil || string(b) != `{"type":"t","title":"T"}` {
		t.Fatalf("Marshal with only reserved extensions = %s, %v", b, err)
	}
	// An extension that cannot be marshalled is an error.
	if _, err := json.Marshal(Problem{Extensions: map[string]any{"f": func() {}}}); err == nil {
		t.Fatal("Marshal of an unmarshallable extension succeeded")
	}
	// Not an object: an error.
	if err := json.Unmarshal([]byte(`[1]`), &got); err == nil {
		t.Fatal("Unmarshal of an array succeeded")
	}
}

func TestAddAttemptCap(t *testing.T) {
	var op Operation
	for i := 1; i <= MaxHistory+5; i++ {
		op.AddAttempt(Attempt{Number: i, Outcome: OutcomeFailed})
		if want := min(i, MaxHistory); len(op.History) != want {
			t.Fatalf("after %d attempts, %d in History, want %d", i, len(op.History), want)
		}
		if first, last := op.History[0].Number, op.History[len(op.History)-1].Number; first != max(1, i-MaxHistory+1) || last != i {
			t.Fatalf("after %d attempts, History holds %d..%d", i, first, last)
		}
	}
	// A clone taken before an append that drops the oldest is unchanged by
	// it.
	c := op.Clone()
	op.AddAttempt(Attempt{Number: 99})
	if c.History[0].Number != 6 || c.History[MaxHistory-1].Number != MaxHistory+5 || len(c.History) != MaxHistory {
		t.Fatalf("clone changed by a later AddAttempt: %d..%d", c.History[0].Number, c.History[len(c.History)-1].Number)
	}
}

func TestCloneDeep(t *testing.T) {
	now := time.Now()
	op := &Operation{ID: "x", Status: Failed,
		History: []Attempt{{Number: 1, EndedAt: now, Error: &Problem{Title: "a", Extensions: map[string]any{"k": 1.0}}}},
		Error:   &Problem{Title: "e", Extensions: map[string]any{"k": 1.0}},
		Result:  &Result{Key: "k", StatusCode: 201, Header: http.Header{"A": {"1"}}},
		Meta:    map[string]string{"m": "1"}}
	c := op.Clone()
	if !reflect.DeepEqual(c, op) {
		t.Fatalf("Clone = %+v, want %+v", c, op)
	}
	c.History[0].Error.Extensions["k"] = 2.0
	c.History[0].Number = 5
	c.Error.Extensions["k"] = 2.0
	c.Result.Header["A"][0] = "2"
	c.Meta["m"] = "2"
	if op.History[0].Error.Extensions["k"] != 1.0 || op.History[0].Number != 1 || op.Error.Extensions["k"] != 1.0 ||
		op.Result.Header.Get("A") != "1" || op.Meta["m"] != "1" {
		t.Fatalf("mutating a clone changed the original: %+v", op)
	}
}
