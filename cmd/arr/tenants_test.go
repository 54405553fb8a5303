package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/internal/pgtest"
)

// The keys of the two-tenant test: alice's in clear, bob's as its stored
// hash, and an admin's.
const (
	aliceKey = "alice-7f3c2a9b1e5d4c6a8b0f2e4d6c8a0b1c"
	bobKey   = "bob-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	rootKey  = "root-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
)

// writeKeys writes the API key file of the two-tenant test.
func writeKeys(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(bobKey))
	p := filepath.Join(t.TempDir(), "keys")
	body := "# alice, bob and an admin\n" +
		"alice:" + aliceKey + "\n" +
		"bob:sha256:" + hex.EncodeToString(sum[:]) + "\n" +
		"root:" + rootKey + " role=admin\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// as sends a request with key's bearer credentials ("" sends none).
func as(t *testing.T, key, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, b
}

// storeEngines are the engines that keep operations, as arr serve's
// flags: the embedded default, NATS and PostgreSQL (results in files).
var storeEngines = []struct {
	name  string
	flags func(t *testing.T) []string
}{
	{"embedded", func(t *testing.T) []string { return nil }},
	{"nats", func(t *testing.T) []string {
		c := natstest.StartServer(t)
		return []string{"-store", c.URL(), "-results", "file:" + t.TempDir()}
	}},
	{"postgres", func(t *testing.T) []string {
		return []string{"-store", pgtest.URL(t), "-results", "file:" + t.TempDir()}
	}},
}

// Two tenants on one arr: bob cannot see, list, stream, download, cancel,
// retry or idempotency-replay alice's operations (each is a 404, as for an
// id that does not exist); a request without credentials is a 401 with
// WWW-Authenticate; the admin sees both. On every engine that keeps
// operations.
func TestTwoTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, eng := range storeEngines {
		t.Run(eng.name, func(t *testing.T) {
			args := append([]string{"-api-keys", writeKeys(t)}, eng.flags(t)...)
			p := startArr(t, freeAddr(t), t.TempDir(), args...)
			defer p.stop(t)
			twoTenants(t, "http://"+p.addr)
		})
	}
}

func twoTenants(t *testing.T, base string) {
	submit := func(key, body, idem string) (string, *http.Response) {
		t.Helper()
		res, b := as(t, key, "POST", base+"/v1/echo", body, "Content-Type", "text/plain", "Idempotency-Key", idem)
		if res.StatusCode != 202 {
			t.Fatalf("submit: %d %s", res.StatusCode, b)
		}
		var op opJSON
		if err := json.Unmarshal(b, &op); err != nil {
			t.Fatal(err)
		}
		return op.ID, res
	}

	// Without credentials, or with a wrong key: 401 and a challenge.
	for _, key := range []string{"", "not-a-key"} {
		for _, r := range [][2]string{{"POST", "/v1/echo"}, {"GET", "/v1/operations"}, {"POST", "/api/AsyncProcessingWorkAcceptor"}} {
			res, b := as(t, key, r[0], base+r[1], `{"id":"1","customername":"x"}`, "Content-Type", "application/json")
			if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") ||
				res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s with key %q: %d %q %q %s", r[0], r[1], key, res.StatusCode,
					res.Header.Get("WWW-Authenticate"), res.Header.Get("Content-Type"), b)
			}
		}
	}

	a, _ := submit(aliceKey, "alice's secret", "report-1")
	b, bres := submit(bobKey, "alice's secret", "report-1") // alice's key and body, bob's own
	if b == a || bres.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("bob's submit with alice's key and body replayed %s (got %s)", a, b)
	}
	for _, id := range []string{a, b} {
		for _, key := range []string{aliceKey, bobKey} {
			if (id == a) == (key == aliceKey) {
				waitOwn(t, base, key, id)
			}
		}
	}

	// Everything bob tries on alice's operation is a 404, and changes
	// nothing.
	for _, r := range [][2]string{
		{"GET", "/v1/operations/" + a},
		{"GET", "/v1/operations/" + a + "?redirect=false"},
		{"GET", "/v1/operations/" + a + "?wait=1s"},
		{"GET", "/v1/operations/" + a + "/result"},
		{"GET", "/v1/operations/" + a + "/result?redirect=false"},
		{"GET", "/v1/operations/" + a + "/events"},
		{"DELETE", "/v1/operations/" + a},
		{"POST", "/v1/operations/" + a + "/retry"},
		{"GET", "/api/RequestStatus/" + a},
		{"GET", "/api/RequestStatus/" + a + "?OnComplete=Stream"},
	} {
		res, body := as(t, bobKey, r[0], base+r[1], "")
		if res.StatusCode != 404 || strings.Contains(string(body), "alice's secret") {
			t.Errorf("bob %s %s: %d %s", r[0], r[1], res.StatusCode, body)
		}
	}
	res, body := as(t, aliceKey, "GET", base+"/v1/operations/"+a+"/result?redirect=false", "")
	if res.StatusCode != 200 || string(body) != "alice's secret" {
		t.Fatalf("alice's result after bob's tries: %d %s", res.StatusCode, body)
	}
	// The events stream is alice's to read.
	req, _ := http.NewRequest("GET", base+"/v1/operations/"+a+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	if res, err := hc.Do(req); err != nil {
		t.Fatal(err)
	} else {
		line, _ := bufio.NewReader(res.Body).ReadString('\n')
		res.Body.Close()
		if res.StatusCode != 200 || line == "" {
			t.Errorf("alice's events: %d %q", res.StatusCode, line)
		}
	}

	list := func(key, query string) []string {
		t.Helper()
		res, body := as(t, key, "GET", base+"/v1/operations?limit=1000"+query, "")
		if res.StatusCode != 200 {
			t.Fatalf("list: %d %s", res.StatusCode, body)
		}
		var page struct{ Items []opJSON }
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, op := range page.Items {
			ids = append(ids, op.ID)
		}
		return ids
	}
	if got := list(bobKey, ""); !slices.Equal(got, []string{b}) {
		t.Errorf("bob lists %v, want only his %s", got, b)
	}
	if got := list(aliceKey, ""); !slices.Equal(got, []string{a}) {
		t.Errorf("alice lists %v, want only her %s", got, a)
	}
	if res, _ := as(t, bobKey, "GET", base+"/v1/operations?owner=alice", ""); res.StatusCode != 400 {
		t.Errorf("bob asking for alice's listing: %d, want 400", res.StatusCode)
	}
	// The admin sees both, and may narrow to one principal.
	if got := list(rootKey, ""); !slices.Equal(got, []string{a, b}) {
		t.Errorf("the admin lists %v, want %v", got, []string{a, b})
	}
	if got := list(rootKey, "&owner=alice"); !slices.Equal(got, []string{a}) {
		t.Errorf("the admin lists alice's as %v, want [%s]", got, a)
	}
	if res, body := as(t, rootKey, "GET", base+"/v1/operations/"+a+"/result?redirect=false", ""); res.StatusCode != 200 || string(body) != "alice's secret" {
		t.Errorf("the admin reads alice's result: %d %s", res.StatusCode, body)
	}
	// Alice's own calls on her finished operation get the answers of its
	// state (not 404).
	if res, _ := as(t, aliceKey, "DELETE", base+"/v1/operations/"+a, ""); res.StatusCode != 409 {
		t.Errorf("alice cancels her succeeded operation: %d, want 409", res.StatusCode)
	}
}

// waitOwn waits until the caller with key sees its operation id succeed.
func waitOwn(t *testing.T, base, key, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, b := as(t, key, "GET", base+"/v1/operations/"+id+"?redirect=false", "")
		var op opJSON
		_ = json.Unmarshal(b, &op)
		if res.StatusCode == 200 && op.Status == "succeeded" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s: %d %s", id, res.StatusCode, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
