package azurequeue

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Config
	}{
		{"azqueue://work?account=acct1", Config{Queue: "work", QueueEndpoint: "https://acct1.queue.core.windows.net",
			TableEndpoint: "https://acct1.table.core.windows.net", Table: DefaultTable, Lease: DefaultLease}},
		{"azqueue://work-1?account=acct1&table_endpoint=https://x.example/&table=Idx1&max_deliveries=5&lease=2m",
			Config{Queue: "work-1", QueueEndpoint: "https://acct1.queue.core.windows.net", TableEndpoint: "https://x.example",
				Table: "Idx1", MaxDeliveries: 5, Lease: 2 * time.Minute}},
		{"azqueue://q01?endpoint=https://devstoreaccount1.queue.localhost:10001&table_endpoint=https://devstoreaccount1.table.localhost:10002",
			Config{Queue: "q01", QueueEndpoint: "https://devstoreaccount1.queue.localhost:10001",
				TableEndpoint: "https://devstoreaccount1.table.localhost:10002", Table: DefaultTable, Lease: DefaultLease}},
	} {
		u, _ := url.Parse(tc.url)
		got, err := ParseURL(u)
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%s) = %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, err string }{
		{"azqueue://work?account=acct1&colour=blue", `unknown URL parameter "colour"`},
		{"azqueue://work?account=acct1&lease=1s&lease=2s", "given 2 times"},
		{"azqueue://?account=acct1", "names no queue"},
		{"azqueue://Work?account=acct1", "character 'W'"},
		{"azqueue://ab?account=acct1", "too short"},
		{"azqueue://a--b?account=acct1", "two hyphens"},
		{"azqueue://-ab?account=acct1", "hyphen"},
		{"azqueue://" + strings.Repeat("a", 57) + "?account=acct1", "too long"},
		{"azqueue://work/sub?account=acct1", "has a path"},
		{"azqueue://work", "names no account"},
		{"azqueue://work?account=a&endpoint=https://x", "not both"},
		{"azqueue://work?account=Bad_Name", "not a storage account name"},
		{"azqueue://work?endpoint=https://x", "give table_endpoint"},
		{"azqueue://work?endpoint=https://x&table_endpoint=ftp://y", "table_endpoint"},
		{"azqueue://work?account=acct1&table=1abc", "not an Azure table name"},
		{"azqueue://work?account=acct1&table=ab", "not an Azure table name"},
		{"azqueue://work?account=acct1&table=has-dash", "not an Azure table name"},
		{"azqueue://work?account=acct1&max_deliveries=-1", "max_deliveries"},
		{"azqueue://work?account=acct1&max_deliveries=x", "max_deliveries"},
		{"azqueue://work?account=acct1&lease=100ms", "lease"},
		{"azqueue://work?account=acct1&lease=200h", "lease"},
		{"azqueue://work?account=acct1&lease=soon", "lease"},
		{"nats://work?account=acct1", "scheme"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%s): %v", tc.url, err)
		}
		if _, err := ParseURL(u); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseURL(%s) = %v, want an error containing %q", tc.url, err, tc.err)
		}
	}
}

func TestFrame(t *testing.T) {
	for _, f := range []frame{
		{id: "a", body: []byte("b")},
		{id: "", body: nil},
		{id: "ü/\x00#?", body: []byte{0, 1, 2, 255}, due: 1 << 42, skips: 3},
	} {
		g, err := decodeFrame(f.encode())
		if err != nil || g.id != f.id || string(g.body) != string(f.body) || g.due != f.due || g.skips != f.skips {
			t.Errorf("decode(encode(%+v)) = %+v, %v", f, g, err)
		}
	}
	for _, s := range []string{"", "not base64!", "AA==", "AQU=" /* id longer than the frame */} {
		if _, err := decodeFrame(s); err == nil {
			t.Errorf("decodeFrame(%q) succeeded", s)
		}
	}
}

func TestVisibility(t *testing.T) {
	for d, want := range map[time.Duration]int32{
		-time.Second: 0, 0: 0, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2,
		maxVisibility: 604800, 30 * 24 * time.Hour: 604800,
	} {
		if got := visibility(d); got != want {
			t.Errorf("visibility(%v) = %d, want %d", d, got, want)
		}
	}
}
