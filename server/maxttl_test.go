package server

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/urlsign"
)

// A URL signed with the server's own key (as with a leaked keyring) but
// expiring beyond the longest configured result URL lifetime is refused;
// one within it is served.
func TestLeakedKeyCannotMintLongURLs(t *testing.T) {
	dir := t.TempDir()
	s := serveReal(t, Config{Addr: "127.0.0.1:0", DataDir: dir, Core: arr.Config{ResultURLTTL: 15 * time.Minute}})
	if got := s.signer.MaxTTL(); got != 15*time.Minute {
		t.Fatalf("signer MaxTTL %v, want the configured 15m", got)
	}
	resp, err := http.Post("http://"+s.Addr()+"/v1/echo", "text/plain", strings.NewReader("secret result"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := strings.TrimSuffix(resp.Header.Get("Operation-Location"), "?redirect=false")
	id = id[strings.LastIndex(id, "/")+1:]
	ctx := context.Background()
	var op *operation.Operation
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if op, err = s.client.Get(ctx, id); err == nil && op.Status == operation.Succeeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s: %+v %v", id, op, err)
		}
	}
	keys, err := urlsign.OpenFileKeys(filepath.Join(dir, urlsign.DefaultKeyFileName), "")
	if err != nil {
		t.Fatal(err)
	}
	leaked, err := urlsign.NewHMAC(ctx, keys, urlsign.HMACOptions{Domain: urlsign.FileDomain})
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.Close()
	for _, c := range []struct {
		ttl  time.Duration
		want int
	}{{7 * 24 * time.Hour, http.StatusForbidden}, {time.Hour, http.StatusForbidden}, {14 * time.Minute, http.StatusOK}} {
		u, err := leaked.SignedURL(ctx, op.Result.Key, time.Now().Add(c.ttl))
		if err != nil {
			t.Fatal(err)
		}
		code, body := get(t, "http://"+s.Addr()+u)
		if code != c.want {
			t.Errorf("URL minted for %v: %d, want %d: %.200s", c.ttl, code, c.want, body)
		}
	}
}

func TestMaxResultURLTTL(t *testing.T) {
	for _, c := range []struct {
		cfg  arr.Config
		want time.Duration
	}{
		{arr.Config{}, arr.DefaultResultURLTTL},
		{arr.Config{ResultURLTTL: time.Minute}, time.Minute},
		{arr.Config{ResultURLTTL: time.Minute, Routes: []arr.Route{{ResultURLTTL: time.Hour}, {}}}, time.Hour},
		{arr.Config{ResultURLTTL: 2 * time.Hour, Routes: []arr.Route{{ResultURLTTL: time.Hour}}}, 2 * time.Hour},
	} {
		if got := maxResultURLTTL(c.cfg); got != c.want {
			t.Errorf("maxResultURLTTL(%+v) = %v, want %v", c.cfg, got, c.want)
		}
	}
}
