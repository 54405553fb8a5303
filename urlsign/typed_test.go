package urlsign_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
)

// typedDriver records what it was asked to sign.
type typedDriver struct {
	urlsign.Driver
	typed, plain []string
}

func (d *typedDriver) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	d.plain = append(d.plain, key)
	return "https://store.example/" + key, nil
}

func (d *typedDriver) SignedURLTyped(ctx context.Context, key, contentType string, expiry time.Time) (string, error) {
	d.typed = append(d.typed, key+" "+contentType)
	return "https://store.example/" + key + "?type", nil
}

// SignedURLTyped tells a TypedDriver the content type, falls back to
// SignedURL when it is not known, and refuses what SignedURL refuses.
func TestSignedURLTyped(t *testing.T) {
	d := &typedDriver{}
	s := urlsign.New(d, resultstore.New(mem.New().Results()))
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	if u, err := s.SignedURLTyped(ctx, "k", "text/plain", exp); err != nil || u != "https://store.example/k?type" {
		t.Fatalf("SignedURLTyped = %q, %v", u, err)
	}
	if u, err := s.SignedURLTyped(ctx, "k", "", exp); err != nil || u != "https://store.example/k" {
		t.Fatalf("SignedURLTyped without a type = %q, %v", u, err)
	}
	if len(d.typed) != 1 || d.typed[0] != "k text/plain" || len(d.plain) != 1 {
		t.Fatalf("typed %v, plain %v", d.typed, d.plain)
	}
	if _, err := s.SignedURLTyped(ctx, "", "text/plain", exp); err == nil {
		t.Fatal("an empty key was signed")
	}
	s.SetMaxTTL(time.Minute)
	if _, err := s.SignedURLTyped(ctx, "k", "text/plain", time.Now().Add(time.Hour)); !errors.Is(err, urlsign.ErrTooLong) {
		t.Fatalf("SignedURLTyped beyond the max TTL = %v", err)
	}
}
