package webhook

import (
	"math"
	"net/http"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	var b Backoff // the defaults
	for _, c := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 2500 * time.Millisecond, 5 * time.Second},
		{1, 2500 * time.Millisecond, 5 * time.Second},
		{2, 5 * time.Second, 10 * time.Second},
		{4, 20 * time.Second, 40 * time.Second},
		{10, 1280 * time.Second, 2560 * time.Second},
		{11, 30 * time.Minute, time.Hour},
		{40, 30 * time.Minute, time.Hour},
		{math.MaxInt, 30 * time.Minute, time.Hour},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(c.attempt, 0)
			if d < c.lo || d > c.hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", c.attempt, d, c.lo, c.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d) took only %d values in 200 draws: no jitter", c.attempt, len(seen))
		}
	}
}

func TestBackoffRetryAfter(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 10 * time.Minute}
	for range 50 {
		if d := b.Delay(1, 3*time.Minute); d != 3*time.Minute {
			t.Fatalf("Delay(1, 3m) = %v, want 3m", d)
		}
		if d := b.Delay(1, 5*time.Hour); d != 10*time.Minute {
			t.Fatalf("Delay(1, 5h) = %v, want Max (10m)", d)
		}
		if d := b.Delay(20, time.Second); d < 5*time.Minute || d > 10*time.Minute {
			t.Fatalf("Delay(20, 1s) = %v: a short Retry-After shortened the backoff", d)
		}
	}
}

func TestBackoffExtremes(t *testing.T) {
	huge := Backoff{Min: time.Duration(math.MaxInt64 / 3), Max: time.Duration(math.MaxInt64)}
	for _, a := range []int{1, 2, 3, 100} {
		if d := huge.Delay(a, 0); d <= 0 {
			t.Fatalf("Delay(%d) overflowed: %v", a, d)
		}
	}
	// Min above Max: Max wins.
	if d := (Backoff{Min: time.Hour, Max: time.Minute}).Delay(1, 0); d > time.Minute {
		t.Fatalf("Delay = %v, above Max", d)
	}
	if d := (Backoff{Min: 1, Max: 1}).Delay(5, 0); d != 0 && d != 1 {
		t.Fatalf("Delay with 1ns bounds = %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                        0,
		"120":                     2 * time.Minute,
		" 5 ":                     5 * time.Second,
		"0":                       0,
		"-5":                      0,
		"1.5":                     0,
		"soon":                    0,
		"99999999999999999999999": DefaultMaxAge,
		"172800":                  DefaultMaxAge,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
		now.Add(72 * time.Hour).Format(http.TimeFormat):   DefaultMaxAge,
		"Sunday, 06-Dec-26 12:10:00 GMT":                  10 * time.Minute, // RFC 850
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
