package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/auth"
	"github.com/arrhq/arr/internal/testcert"
)

// arr serves HTTPS, authenticates verified client certificates and API
// keys, refuses a certificate of another CA at the handshake, and serves
// the probes and a signed result URL to a client with no credentials.
func TestServeTLSClientCertsAndKeys(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := testcert.NewCA(t, "arr test CA"), testcert.NewCA(t, "rogue CA")
	srvCert, srvKey := ca.Issue(t, true, "arr")
	tlsCfg, err := auth.ServerTLS(testcert.Write(t, dir, "srv.pem", srvCert), testcert.Write(t, dir, "srv.key", srvKey), testcert.Write(t, dir, "ca.PEM", ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewAPIKeys(mustKeys(t, "svc:svc-key-0123456789"))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), TLS: tlsCfg,
		Auth:   auth.Chain{&auth.ClientCert{}, keys},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	base := "https://" + s.Addr()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	client := func(c *testcert.CA, cn string, uris ...string) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if c != nil {
			cp, kp := c.Issue(t, false, cn, uris...)
			pair, err := tls.X509KeyPair(cp, kp)
			if err != nil {
				t.Fatal(err)
			}
			// Sent even when the server asks for another CA's.
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	call := func(c *http.Client, method, path, bearer string, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}

	alice := client(ca, "alice")
	res, body := call(alice, "POST", "/v1/echo", "", "hello")
	if res.StatusCode != 202 || res.TLS == nil {
		t.Fatalf("alice's submit: %d %s", res.StatusCode, body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(res.Header.Get("Operation-Location"), base+"/v1/operations/"), "?redirect=false")
	var op struct {
		Status string
		Result struct{ Href string }
	}
	for deadline := time.Now().Add(10 * time.Second); op.Status != "succeeded"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not finished: %+v", op)
		}
		res, body = call(alice, "GET", "/v1/operations/"+id+"?redirect=false", "", "")
		if res.StatusCode != 200 {
			t.Fatalf("alice's status: %d %s", res.StatusCode, body)
		}
		json.Unmarshal([]byte(body), &op)
	}

	anon := client(nil, "")
	res, body = call(anon, "GET", "/v1/operations/"+id, "", "")
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Bearer realm="arr"`) {
		t.Errorf("no credentials: %d %q %s", res.StatusCode, res.Header.Get("WWW-Authenticate"), body)
	}
	for _, p := range []string{"/metrics", "/openapi.json", "/api/RequestStatus/" + id, "/blobs/../v1/operations", "/healthz/"} {
		if res, _ := call(anon, "GET", p, "", ""); res.StatusCode != 401 {
			t.Errorf("GET %s with no credentials: %d, want 401", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if res, body := call(anon, "GET", p, "", ""); res.StatusCode != 200 {
			t.Errorf("GET %s with no credentials: %d %s", p, res.StatusCode, body)
		}
	}
	href, _ := url.Parse(op.Result.Href)
	if res, body := call(anon, "GET", href.RequestURI(), "", ""); res.StatusCode != 200 || body != "hello" {
		t.Errorf("the signed result URL %s with no credentials: %d %q", href.Path, res.StatusCode, body)
	}
	if res, _ := call(anon, "GET", "/v1/operations/"+id, "svc-key-0123456789", ""); res.StatusCode == 401 {
		t.Errorf("an API key over TLS: 401")
	}
	if res, _ := call(anon, "GET", "/v1/operations", "wrong-key-0123456789", ""); res.StatusCode != 401 ||
		!strings.Contains(res.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a wrong API key: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	// A URI SAN names the principal before the CN.
	spiffe := client(ca, "ignored", "spiffe://example.org/billing")
	if res, body := call(spiffe, "POST", "/v1/echo", "", "x"); res.StatusCode != 202 {
		t.Errorf("a SPIFFE client: %d %s", res.StatusCode, body)
	}
	// A certificate of another CA fails the handshake.
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	if res, err := client(rogue, "alice").Do(req); err == nil {
		res.Body.Close()
		t.Errorf("a rogue CA's client certificate was accepted: %d", res.StatusCode)
	}
}

func mustKeys(t *testing.T, s string) *auth.KeySet {
	set, _, err := auth.ParseKeys("keys", strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return set
}
