package servicebus

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/engine"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Config
		err  string
	}{
		{"azservicebus://myns.servicebus.windows.net/work", Config{Namespace: "myns.servicebus.windows.net", Queue: "work"}, ""},
		{"azservicebus://myns/work?max_deliveries=5&lease=2m", Config{Namespace: "myns.servicebus.windows.net", Queue: "work", MaxDeliveries: 5, Lease: 2 * time.Minute}, ""},
		{"azservicebus://MyNS.servicebus.chinacloudapi.cn/a/b", Config{Namespace: "myns.servicebus.chinacloudapi.cn", Queue: "a/b"}, ""},
		{"azservicebus://myns/work?max_deliveries=0", Config{Namespace: "myns.servicebus.windows.net", Queue: "work"}, ""},
		{"azservicebus://myns/work?prefix=x&bogus=1", Config{}, "unknown parameters bogus, prefix"},
		{"azservicebus://myns/work?max_deliveries=-1", Config{}, "max_deliveries"},
		{"azservicebus://myns/work?max_deliveries=x", Config{}, "max_deliveries"},
		{"azservicebus://myns/work?lease=0s", Config{}, "lease"},
		{"azservicebus://myns/work?lease=soon", Config{}, "lease"},
		{"azservicebus://myns/work?lease=1m&lease=2m", Config{}, "given 2 times"},
		{"azservicebus://myns/", Config{}, "no queue"},
		{"azservicebus://myns", Config{}, "no queue"},
		{"azservicebus:///work", Config{}, "no namespace"},
		{"azservicebus://key:secret@myns/work", Config{}, "no user or key"},
		{"azservicebus://myns:5671/work", Config{}, "no port"},
		{"azservicebus:myns/work", Config{}, "NAMESPACE/QUEUE"},
		{"nats://myns/work", Config{}, "scheme"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseURL(u)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%s) = %+v, %v; want an error with %q", tc.url, got, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseURL(%s) error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%s) = %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
}

func TestParseISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"PT1M": time.Minute, "PT30S": 30 * time.Second, "PT5M": 5 * time.Minute,
		"PT1M30.5S": 90500 * time.Millisecond, "P1DT2H": 26 * time.Hour, "PT0.5S": 500 * time.Millisecond,
	} {
		if got, err := parseISODuration(in); err != nil || got != want {
			t.Errorf("parseISODuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "P", "PT", "1M", "PT1X", "P1M", "PTM", "PT1M2", "PT0S", "PT1MT"} {
		if got, err := parseISODuration(in); err == nil {
			t.Errorf("parseISODuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestCheckProps(t *testing.T) {
	if err := checkProps(queueProps{RequiresDuplicateDetection: true}); err != nil {
		t.Fatal(err)
	}
	if err := checkProps(queueProps{}); err == nil || !strings.Contains(err.Error(), "duplicate detection") {
		t.Fatalf("queue without duplicate detection: %v", err)
	}
	if err := checkProps(queueProps{RequiresDuplicateDetection: true, RequiresSession: true}); err == nil || !strings.Contains(err.Error(), "sessions") {
		t.Fatalf("queue with sessions: %v", err)
	}
}

// The engine is registered for the scheme, holds a queue and no other
// port, and refuses a bad URL when it is opened.
func TestEngine(t *testing.T) {
	ctx := context.Background()
	if _, err := engine.Open(ctx, "azservicebus://myns/work?nope=1"); err == nil || !strings.Contains(err.Error(), "unknown parameters") {
		t.Fatalf("engine.Open with an unknown parameter = %v", err)
	}
	e, err := engine.Open(ctx, "azservicebus://myns/work")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Caps() != (engine.Caps{}) || e.Atomic() != nil {
		t.Fatalf("caps %+v, atomic %v", e.Caps(), e.Atomic())
	}
	if _, err := e.Store(ctx); !errors.Is(err, engine.ErrNoPort) {
		t.Fatalf("Store = %v, want ErrNoPort", err)
	}
	if _, err := e.Results(ctx); !errors.Is(err, engine.ErrNoPort) {
		t.Fatalf("Results = %v, want ErrNoPort", err)
	}
	if _, err := e.Signer(ctx); !errors.Is(err, engine.ErrNoPort) {
		t.Fatalf("Signer = %v, want ErrNoPort", err)
	}
}
