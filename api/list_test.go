package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

// GET /v1/operations ends a page at MaxListBytes whatever limit asks
// for, with a next link from its last item; following the links lists
// every operation once, in order, across the store reads of a page.
func TestListByteCap(t *testing.T) {
	const capBytes = 8 << 10
	s := start(t, server.Config{Workers: -1, API: api.Config{MaxListBytes: capBytes}})
	var ids []string
	for i := range 70 {
		ids = append(ids, s.submit(fmt.Sprint(i)))
	}
	var seen []string
	pages := 0
	next := "/v1/operations?limit=1000"
	for next != "" {
		r := s.get(next)
		wantStatus(t, r, 200)
		if len(r.Body) > capBytes {
			t.Errorf("page of %d bytes", len(r.Body))
		}
		m := r.JSON(t)
		items := m["items"].([]any)
		if len(items) == 0 {
			t.Fatalf("empty page %s", r.Body)
		}
		for _, it := range items {
			seen = append(seen, it.(map[string]any)["id"].(string))
		}
		next, _ = m["next"].(string)
		if next != "" && !strings.Contains(next, "limit=1000") {
			t.Errorf("next %q lost the query", next)
		}
		pages++
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Fatalf("listed %d operations, want %d in order", len(seen), len(ids))
	}
	if pages < 5 {
		t.Errorf("%d pages of at most %d bytes for 70 operations", pages, capBytes)
	}

	// Within the cap, limit rules across the store's reads: 50, then 20
	// and no next.
	s2 := start(t, server.Config{Workers: -1})
	ids = ids[:0]
	for i := range 70 {
		ids = append(ids, s2.submit(fmt.Sprint(i)))
	}
	m := s2.get("/v1/operations?limit=50").JSON(t)
	if n := len(m["items"].([]any)); n != 50 || m["next"] == nil {
		t.Fatalf("limit=50: %d items, next %v", n, m["next"])
	}
	m = s2.get(m["next"].(string)).JSON(t)
	items := m["items"].([]any)
	if len(items) != 20 || m["next"] != nil || items[19].(map[string]any)["id"] != ids[69] {
		t.Fatalf("second page: %d items, next %v", len(items), m["next"])
	}
	// A single item larger than the cap is still listed, alone.
	s3 := start(t, server.Config{Workers: -1, API: api.Config{MaxListBytes: 10}})
	a, b := s3.submit("a"), s3.submit("b")
	m = s3.get("/v1/operations").JSON(t)
	if items := m["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != a || m["next"] == nil {
		t.Fatalf("tiny cap: %v", m)
	}
	if items := s3.get(m["next"].(string)).JSON(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != b {
		t.Fatalf("tiny cap, page 2: %v", items)
	}
}
