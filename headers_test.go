package arr_test

import (
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"testing"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/queue"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/fileresult"
)

func TestStoredHeaders(t *testing.T) {
	in := http.Header{
		"Content-Type":         {"application/json"},
		"Accept":               {"text/plain", "application/json"},
		"User-Agent":           {"curl/8"},
		"Traceparent":          {"00-abc-def-01"},
		"X-Request-Id":         {"r1"},
		"X-Remote-User":        {"alice"},
		"X_remote_user":        {"mallory"},
		"Idempotency-Key":      {"k-1"},
		"Prefer":               {"respond-async"},
		"Authorization":        {"Bearer alice"},
		"Cookie":               {"session=1"},
		"Proxy-Authorization":  {"Basic x"},
		"X-Api-Key":            {"k"},
		"Api-Key":              {"k"},
		"X-Auth-Token":         {"t"},
		"X-Operator-Key":       {"op"},
		"X-Amz-Security-Token": {"t"},
		"X-Hub-Signature-256":  {"sha256=..."},
		"Connection":           {"X-Hop, keep-alive"},
		"X-Hop":                {"1"},
		"Keep-Alive":           {"timeout=5"},
		"Te":                   {"trailers"},
		"Upgrade":              {"h2c"},
		"X-Forwarded-For":      {"10.0.0.1"},
		"X-Forwarded-Host":     {"evil.example"},
		"Forwarded":            {"for=10.0.0.1"},
		"X-Real-Ip":            {"10.0.0.1"},
		"X-Internal":           {"drop me"},
		"Bad Name":             {"x"},
		":arr-credentials":     {"v1.forged"},
	}
	want := http.Header{
		"Content-Type":    {"application/json"},
		"Accept":          {"text/plain", "application/json"},
		"User-Agent":      {"curl/8"},
		"Traceparent":     {"00-abc-def-01"},
		"X-Request-Id":    {"r1"},
		"X-Remote-User":   {"alice"},
		"Idempotency-Key": {"k-1"},
		"Prefer":          {"respond-async"},
		"X-Internal":      {"drop me"},
	}
	stored, creds := arr.StoredHeaders(&arr.Route{}, in)
	if !reflect.DeepEqual(stored, want) || creds != nil {
		t.Errorf("default rule:\nstored %v\nwant   %v\ncredentials %v, want none", stored, want, creds)
	}

	rt := &arr.Route{DropHeaders: []string{"x-internal"}, ForwardCredentials: []string{"authorization", "X-Api-Key", "X-Forwarded-Host", "X-Hop"}}
	stored, creds = arr.StoredHeaders(rt, in)
	delete(want, "X-Internal")
	if !reflect.DeepEqual(stored, want) {
		t.Errorf("with DropHeaders: stored %v\nwant   %v", stored, want)
	}
	// Proxy and Connection-named headers are not credentials a route can keep.
	if wantCreds := (http.Header{"Authorization": {"Bearer alice"}, "X-Api-Key": {"k"}}); !reflect.DeepEqual(creds, wantCreds) {
		t.Errorf("credentials %v, want %v", creds, wantCreds)
	}
	if _, ok := in["Authorization"]; !ok {
		t.Error("StoredHeaders modified its input")
	}

	// An allow-list keeps what it names and nothing else, and still no
	// credential, hop-by-hop or proxy header it names.
	rt = &arr.Route{KeepHeaders: []string{"content-type", "X-Request-Id", "Authorization", "X-Forwarded-For", "Te"},
		ForwardCredentials: []string{"Cookie"}}
	stored, creds = arr.StoredHeaders(rt, in)
	if want := (http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r1"}}); !reflect.DeepEqual(stored, want) {
		t.Errorf("with KeepHeaders: stored %v\nwant   %v", stored, want)
	}
	if want := (http.Header{"Cookie": {"session=1"}}); !reflect.DeepEqual(creds, want) {
		t.Errorf("with KeepHeaders: credentials %v, want %v", creds, want)
	}
}

func TestRouteHeaderNamesChecked(t *testing.T) {
	r := newRig(t)
	rs, err := fileresult.Open(t.TempDir(), fileresult.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	cfg := func(rt arr.Route) arr.Config {
		return arr.Config{Store: r.store, Queue: queue.New(r.q), Results: resultstore.New(rs), Routes: []arr.Route{rt},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	good := arr.Route{Pattern: "/a", Handler: arr.Echo, DropHeaders: []string{"X-Internal"}, ForwardCredentials: []string{"Authorization"}}
	if _, err := arr.New(cfg(good)); err != nil {
		t.Fatalf("route %+v: %v", good, err)
	}
	for _, rt := range []arr.Route{
		{Pattern: "/a", Handler: arr.Echo, DropHeaders: []string{"X_Bad"}},
		{Pattern: "/a", Handler: arr.Echo, KeepHeaders: []string{"X Bad"}},
		{Pattern: "/a", Handler: arr.Echo, ForwardCredentials: []string{"Bad Name"}},
		{Pattern: "/a", Handler: arr.Echo, ForwardCredentials: []string{"Proxy-Authorization"}},
	} {
		if _, err := arr.New(cfg(rt)); err == nil {
			t.Errorf("route %+v accepted", rt)
		}
	}
}
