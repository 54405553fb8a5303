package worker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/handler/forward"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// submitForward stores and enqueues an operation of route "r" whose
// request is a POST to /x.
func (r *rig) submitForward(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	op := &operation.Operation{ID: now.Format("20060102150405.000000000") + name, Route: "r", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	if _, _, err := r.store.Create(ctx, op, &operation.Request{Method: "POST", Path: "/x", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := r.queue.Enqueue(ctx, arr.Message{ID: op.ID, Route: op.Route}.Encode()); err != nil {
		t.Fatal(err)
	}
	return op.ID
}

func forwardTo(t *testing.T, url string) worker.Handler {
	t.Helper()
	h, err := forward.New(forward.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A forward operation whose upstream answers 500 with 64 KiB of JSON,
// attempted 20 times, keeps a record within the documented bound: the
// detail cut to MaxDetailBytes and marked, upstreamBody left out and
// named, the history within MaxHistoryBytes with its first and latest
// attempts and a count of those dropped. Unbounded, this record was over
// 1 MB.
func TestForwardFailureRecordBounded(t *testing.T) {
	big := `"` + strings.Repeat("x", 64<<10-2) + `"`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		_, _ = w.Write([]byte(big))
	}))
	defer up.Close()
	r := newRig(t)
	id := r.submitForward(t, "fail")
	r.run(t, arr.Config{MaxAttempts: 20, Backoff: func(int) time.Duration { return time.Millisecond }},
		worker.Config{Handlers: map[string]worker.Handler{"r": forwardTo(t, up.URL)}})
	op := r.waitTerminal(t, id)
	if op.Status != operation.Failed || op.Attempts != 20 {
		t.Fatalf("status %s after %d attempts", op.Status, op.Attempts)
	}
	rec, _ := json.Marshal(op)
	// Fixed members, the error (≈ 3 KiB + detail + extensions) and the
	// history (MaxHistoryBytes).
	bound := 4<<10 + (3<<10 + arr.DefaultMaxDetailBytes + arr.DefaultMaxExtensionBytes) + arr.DefaultMaxHistoryBytes
	if len(rec) > bound {
		t.Fatalf("record is %d bytes, bound %d", len(rec), bound)
	}
	e := op.Error
	if len(e.Detail) > arr.DefaultMaxDetailBytes || !strings.HasSuffix(e.Detail, "…") || e.Extensions["detailTruncated"] != true {
		t.Errorf("detail of %d bytes, extensions %v", len(e.Detail), keys(e.Extensions))
	}
	if _, ok := e.Extensions["upstreamBody"]; ok {
		t.Error("64 KiB upstreamBody kept")
	}
	// As JSON: read from the store's disk rather than its cache, the
	// values are JSON's ([]any, float64).
	if om, _ := json.Marshal(e.Extensions["omittedMembers"]); string(om) != `["upstreamBody"]` {
		t.Errorf("omittedMembers %s", om)
	}
	if us, _ := json.Marshal(e.Extensions["upstreamStatus"]); string(us) != "500" {
		t.Errorf("upstreamStatus %s", us)
	}
	h := op.History
	if len(h) < 2 || h[0].Number != 1 || h[len(h)-1].Number != 20 || op.HistoryDropped != 20-len(h) {
		t.Errorf("history of %d (dropped %d): %d..%d", len(h), op.HistoryDropped, h[0].Number, h[len(h)-1].Number)
	}
	hb, _ := json.Marshal(h)
	if len(hb) > arr.DefaultMaxHistoryBytes {
		t.Errorf("history is %d bytes", len(hb))
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An upstream's response headers kept with a result are bounded by
// MaxResultHeaderBytes: 200 headers of 1 KiB keep about 16 of them.
func TestResultHeadersBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 200 {
			w.Header().Set("X-H"+strconv.Itoa(i), strings.Repeat("v", 1<<10))
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok"))
	}))
	defer up.Close()
	r := newRig(t)
	id := r.submitForward(t, "headers")
	r.run(t, arr.Config{}, worker.Config{Handlers: map[string]worker.Handler{"r": forwardTo(t, up.URL)}})
	op := r.waitTerminal(t, id)
	if op.Status != operation.Succeeded {
		t.Fatalf("status %s: %v", op.Status, op.Error)
	}
	n := 0
	for k, vs := range op.Result.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > arr.DefaultMaxResultHeaderBytes || len(op.Result.Header) < 10 {
		t.Errorf("%d header fields, %d bytes", len(op.Result.Header), n)
	}
	if op.Result.Header.Get("Content-Type") == "" {
		t.Error("Content-Type not kept")
	}
}
