package urlsign_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/internal/enginetest"
	_ "github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/urlsign"
)

// The Handler itself refuses a validly signed URL expiring beyond the
// signer's MaxTTL, whatever its driver's own bound.
func TestHandlerRefusesBeyondMaxTTL(t *testing.T) {
	ctx := context.Background()
	e := enginetest.Open(t, "mem:maxttl-handler")
	rs, err := e.Results(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, err := urlsign.NewHMAC(ctx, urlsign.NewMemKeys(), urlsign.HMACOptions{Domain: "test"})
	if err != nil {
		t.Fatal(err)
	}
	type plain struct {
		urlsign.Driver
		urlsign.Verifier
	}
	// Only the methods of Driver and Verifier: no LimitURLLifetime.
	sg := urlsign.New(plain{h, h}, rs)
	defer sg.Close()
	if _, err := rs.Put(ctx, "r/1", strings.NewReader("x"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	long, err := sg.SignedURL(ctx, "r/1", time.Now().Add(6*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	short, err := sg.SignedURL(ctx, "r/1", time.Now().Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	prefix, hd := sg.Handler()
	get := func(u string) int {
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
		return rec.Code
	}
	if prefix != urlsign.DefaultPrefix || get(long) != http.StatusOK {
		t.Fatalf("before SetMaxTTL: prefix %q, long URL %d", prefix, get(long))
	}
	sg.SetMaxTTL(10 * time.Minute)
	if h.MaxURLLifetime() != 7*24*time.Hour {
		t.Fatalf("the hidden driver's bound changed: %v", h.MaxURLLifetime())
	}
	if c := get(long); c != http.StatusForbidden {
		t.Errorf("6-day URL under a 10-minute MaxTTL: %d, want 403", c)
	}
	if c := get(short); c != http.StatusOK {
		t.Errorf("5-minute URL: %d, want 200", c)
	}
	sg.SetMaxTTL(0)
	if c := get(long); c != http.StatusOK {
		t.Errorf("6-day URL after SetMaxTTL(0): %d, want 200", c)
	}
}

// An HMAC driver's own Verify refuses, after LimitURLLifetime, a validly
// signed URL expiring beyond the limit (+1 minute), and signs none.
func TestHMACLimitURLLifetime(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	h, err := urlsign.NewHMAC(ctx, urlsign.NewMemKeys(), urlsign.HMACOptions{Domain: "test", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	u, err := h.SignedURL(ctx, "r/1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	verify := func() error {
		_, _, err := h.Verify(httptest.NewRequest(http.MethodGet, u, nil), func(string) error { return nil })
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("before the limit: %v", err)
	}
	h.LimitURLLifetime(58 * time.Minute) // the URL is 2 minutes beyond
	if err := verify(); err != urlsign.ErrBadSignature {
		t.Errorf("beyond the limit: %v, want ErrBadSignature", err)
	}
	if _, err := h.SignedURL(ctx, "r/1", now.Add(time.Hour)); err == nil {
		t.Error("signed beyond the limit")
	}
	h.LimitURLLifetime(59*time.Minute + 30*time.Second) // within the minute of skew
	if err := verify(); err != nil {
		t.Errorf("within the skew: %v", err)
	}
	h.LimitURLLifetime(30 * 24 * time.Hour) // above MaxURLLifetime: back to it
	if got := h.MaxURLLifetime(); got != urlsign.DefaultMaxURLLifetime {
		t.Errorf("MaxURLLifetime() = %v, want the default", got)
	}
}
