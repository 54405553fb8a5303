package api_test

import (
	"bytes"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/arrhq/arr/server"
)

// A result kept in chunks (the embedded engine, 600 KB) is served from
// its attributes and by ranges on each URL that serves its bytes — its
// signed URL, …/result?redirect=false and the seed's OnComplete=Stream:
// HEAD answers its length with no body, If-None-Match and
// If-Modified-Since answer 304 with no body, a Range answers 206 with just
// those bytes, a GET the whole result.
func TestResultServedFromAttributesAndRanges(t *testing.T) {
	dir := t.TempDir()
	db := "embedded:" + filepath.Join(dir, "db")
	s := start(t, server.Config{DataDir: dir, StoreURL: db, QueueURL: db, ResultsURL: db})
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 600_000/36)
	id := s.submit(string(body))
	m := s.waitStatus(id, "succeeded")
	href := m["result"].(map[string]any)["href"].(string)
	for _, u := range []string{
		href,
		"/v1/operations/" + id + "/result?redirect=false",
		"/api/RequestStatus/" + id + "?OnComplete=Stream",
	} {
		r := s.get(u)
		wantStatus(t, r, 200)
		if !bytes.Equal(r.Body, body) {
			t.Fatalf("GET %s: %d bytes, not the result's %d", u, len(r.Body), len(body))
		}
		etag, mod := r.Header.Get("ETag"), r.Header.Get("Last-Modified")
		if etag == "" || mod == "" {
			t.Fatalf("GET %s: ETag %q, Last-Modified %q", u, etag, mod)
		}
		h := s.do("HEAD", u, "")
		wantStatus(t, h, 200)
		if h.Header.Get("Content-Length") != strconv.Itoa(len(body)) || len(h.Body) != 0 || h.Header.Get("ETag") != etag {
			t.Errorf("HEAD %s: Content-Length %q, %d body bytes, ETag %q", u, h.Header.Get("Content-Length"), len(h.Body), h.Header.Get("ETag"))
		}
		for _, hdr := range [][2]string{{"If-None-Match", etag}, {"If-Modified-Since", mod}} {
			c := s.get(u, hdr[0], hdr[1])
			if c.StatusCode != http.StatusNotModified || len(c.Body) != 0 {
				t.Errorf("GET %s with %s: %d, %d body bytes; want 304 and none", u, hdr[0], c.StatusCode, len(c.Body))
			}
		}
		p := s.get(u, "Range", "bytes=300000-300009")
		if p.StatusCode != http.StatusPartialContent || !bytes.Equal(p.Body, body[300000:300010]) {
			t.Errorf("GET %s with a Range: %d %q; want 206 %q", u, p.StatusCode, p.Body, body[300000:300010])
		}
	}
}
