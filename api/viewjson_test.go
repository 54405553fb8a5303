package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/arrhq/arr/operation"
)

// opView's hand-written encoding is byte for byte what encoding/json makes
// of the same struct, for every optional part and awkward strings.
func TestViewJSONMatchesEncodingJSON(t *testing.T) {
	type plain opView // no MarshalJSON: encoding/json's own encoding
	now := time.Date(2026, 11, 21, 9, 0, 0, 123456789, time.UTC)
	exp := now.Add(time.Hour)
	odd := "a\"b\\c\n\r\t\b\f\x01\x1f<>&\u2028\u2029é日本\xff\xfe ok"
	views := []*opView{
		{ID: "1", Status: operation.Pending, CreatedAt: now, UpdatedAt: now, Attempts: []attemptView{}, Links: links{"s", "r", "e"}},
		{ID: odd, Status: operation.Failed, CreatedAt: now, UpdatedAt: now.In(time.FixedZone("x", 3600)), PercentComplete: -3,
			Message: odd, Attempts: []attemptView{
				{Number: 1, Outcome: operation.OutcomeInterrupted, EndedAt: now, Error: &apiProblem{Type: odd, Title: odd}},
				{Number: 2, Outcome: operation.OutcomeFailed, StartedAt: now, EndedAt: exp,
					Error: &apiProblem{Type: "u", Title: "v", Status: 502, Extensions: map[string]any{"upstreamStatus": 503, "z<": odd}}},
				{Number: 3, Outcome: "running"},
			}, Error: &apiProblem{Type: odd, Title: "t", Status: 500, Detail: odd, Instance: "/i"},
			ExpiresAt: &exp, Links: links{odd, odd, odd}},
		{ID: "3", Status: operation.Succeeded, Error: &apiProblem{Type: "t", Title: "x"},
			Attempts: []attemptView{{Number: 1, Outcome: operation.OutcomeSucceeded, EndedAt: now}},
			Result: &resultView{Href: "http://h/blobs/k?a=1&b=<2>", ContentType: "text/plain", Size: 1 << 40, ExpiresAt: exp,
				StatusCode: 201, Headers: http.Header{"X-B": {"2", odd}, "A": {"1"}}},
			ResourceLocation: "http://h/v1/operations/3/result?redirect=false&x=<&>"},
	}
	for i, v := range views {
		want, err := json.Marshal((*plain)(v))
		if err != nil {
			t.Fatal(err)
		}
		got := v.appendJSON(nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("view %d:\n got %s\nwant %s", i, got, want)
		}
		viaMarshal, err := json.Marshal(v)
		if err != nil || !bytes.Equal(viaMarshal, want) {
			t.Fatalf("json.Marshal of view %d: %s, %v", i, viaMarshal, err)
		}
	}
}
