package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/config"
)

// The amplifiers of issue 14 against a real arr serve: a schema bomb is a
// small, fast 400; forward operations whose upstream answers 500 with
// 64 KiB, 20 times, keep bounded records; a list of many large records is
// paged by bytes; the logs say each outcome once, cut, and the access log
// never holds a signed URL's signature.
func TestAbuseRecordsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	big := `"` + strings.Repeat("x", 64<<10-2) + `"`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		_, _ = io.WriteString(w, big)
	}))
	defer up.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "arr.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
  - path: /v1/fwd
    handler: forward
    forward:
      url: %s
    maxAttempts: 20
    backoff: 1ms
    maxBackoff: 2ms
`, up.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := "http://" + addr
	const listCap = 256 << 10
	p := startArr(t, addr, filepath.Join(dir, "data"), "-config", cfgFile, "-log-level", "info", "-log-format", "json",
		"-max-list-bytes", fmt.Sprint(listCap))
	defer p.stop(t)
	hc := &http.Client{Timeout: 20 * time.Second}

	// The schema bomb: a megabyte array of numbers where strings are due
	// is refused by its count of values; the largest array validated
	// (config.MaxSchemaValues values) is answered with its first 20 issues.
	bombOf := func(items int) *bytes.Buffer {
		var bomb bytes.Buffer
		bomb.WriteByte('[')
		for i := range items {
			if i > 0 {
				bomb.WriteByte(',')
			}
			bomb.WriteByte('1')
		}
		bomb.WriteByte(']')
		return &bomb
	}
	for _, c := range []struct {
		items, issues int
		truncated     bool
	}{{1<<19 - 1, 1, false}, {config.MaxSchemaValues - 1, 20, true}} {
		start := time.Now()
		res, err := hc.Post(base+"/v1/items", "application/json", bombOf(c.items))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(start)
		var prob struct {
			Errors    []any `json:"errors"`
			Truncated bool  `json:"truncated"`
		}
		if res.StatusCode != 400 || json.Unmarshal(b, &prob) != nil || len(prob.Errors) != c.issues || prob.Truncated != c.truncated {
			t.Fatalf("schema bomb of %d items: %d, %d bytes: %.300s", c.items, res.StatusCode, len(b), b)
		}
		if len(b) >= 64<<10 {
			t.Errorf("schema bomb of %d items answered with %d bytes", c.items, len(b))
		}
		t.Logf("schema bomb of %d items: 400 of %d bytes in %s", c.items, len(b), took)
	}

	// Forward operations failing 20 times with 64 KiB each.
	const n = 12
	ids := map[string]bool{}
	for range n {
		res, err := hc.Post(base+"/v1/fwd", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var op struct{ ID string }
		_ = json.NewDecoder(res.Body).Decode(&op)
		res.Body.Close()
		if res.StatusCode != 202 || op.ID == "" {
			t.Fatalf("submit: %d", res.StatusCode)
		}
		ids[op.ID] = true
	}
	deadline := time.Now().Add(40 * time.Second)
	maxRecord := 0
	for id := range ids {
		for {
			res, err := hc.Get(base + "/v1/operations/" + id)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var op struct {
				Status   string
				Attempts []any
			}
			_ = json.Unmarshal(b, &op)
			if op.Status == "failed" {
				maxRecord = max(maxRecord, len(b))
				if len(op.Attempts) < 2 || len(op.Attempts) >= 20 {
					t.Errorf("%s: %d attempts shown", id, len(op.Attempts))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still %s", id, op.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The stored record is bounded at about 80 KiB; the view repeats each
	// problem's detail as its message.
	if maxRecord > 180<<10 {
		t.Errorf("a failed forward operation is %d bytes", maxRecord)
	}
	t.Logf("largest failed forward operation: %d bytes", maxRecord)

	// The list pages by bytes (-max-list-bytes, 256 KiB here), whatever
	// limit says, and loses nothing.
	next := base + "/v1/operations?limit=1000"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		res, err := hc.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var page struct {
			Items []struct{ ID string }
			Next  string
		}
		if res.StatusCode != 200 || json.Unmarshal(b, &page) != nil {
			t.Fatalf("list: %d %.300s", res.StatusCode, b)
		}
		if len(b) > listCap {
			t.Errorf("a page of %d bytes", len(b))
		}
		for _, it := range page.Items {
			if seen[it.ID] {
				t.Errorf("%s listed twice", it.ID)
			}
			seen[it.ID] = true
		}
		next = page.Next
		pages++
	}
	for id := range ids {
		if !seen[id] {
			t.Errorf("%s not listed", id)
		}
	}
	if pages < 3 {
		t.Errorf("%d operations of ~%d bytes in %d page", len(seen), maxRecord, pages)
	}

	// A result read through its signed URL.
	res, err := hc.Post(base+"/v1/echo", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	var echo struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&echo)
	res.Body.Close()
	// A finished operation's status redirects to its result: read it
	// without following.
	nofollow := &http.Client{Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var href string
	for deadline := time.Now().Add(10 * time.Second); href == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := nofollow.Get(base + "/v1/operations/" + echo.ID)
		if err != nil {
			t.Fatal(err)
		}
		var op struct{ Result *struct{ Href string } }
		_ = json.NewDecoder(res.Body).Decode(&op)
		res.Body.Close()
		if op.Result != nil {
			href = op.Result.Href
		}
	}
	u, err := url.Parse(href)
	if err != nil || u.Query().Get("sig") == "" {
		t.Fatalf("result href %q of %q", href, echo.ID)
	}
	res, err = hc.Get(href)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("signed URL: %d", res.StatusCode)
	}

	// The log: JSON lines, none long; one dead-lettered line per forward
	// operation, retries with their delay; an access line per request, the
	// signature in none.
	// (Each outcome is logged just after its state is written.)
	for deadline := time.Now().Add(5 * time.Second); strings.Count(p.log.String(), `"operation dead-lettered"`) < n &&
		time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	log := p.log.String()
	if strings.Contains(log, u.Query().Get("sig")) {
		t.Error("the log holds a signed URL's signature")
	}
	dead, retrying, requests := map[string]bool{}, 0, 0
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if len(line) > 4<<10 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %.300s", line)
		}
		switch m["msg"] {
		case "operation dead-lettered":
			dead[m["id"].(string)] = true
			if m["level"] != "WARN" || m["attempt"] != 20.0 || m["route"] == nil {
				t.Errorf("dead-lettered line %v", m)
			}
		case "operation retrying":
			retrying++
			if m["delay"] == nil || m["err"] == nil {
				t.Errorf("retrying line %v", m)
			}
		case "request":
			requests++
			if m["request_id"] == "" || m["status"] == nil || m["path"] == nil {
				t.Errorf("access line %v", m)
			}
		}
	}
	if len(dead) != n || retrying < n {
		t.Errorf("%d dead-lettered lines for %d operations, %d retrying lines", len(dead), n, retrying)
	}
	if requests < n+pages+3 {
		t.Errorf("%d access lines", requests)
	}
}
