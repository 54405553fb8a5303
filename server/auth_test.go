package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/auth"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate: a server's for 127.0.0.1, or a
// client's with cn and uris.
func (ca *testCA) issue(t *testing.T, server bool, cn string, uris ...string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func write(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// arr serves HTTPS, authenticates verified client certificates and API
// keys, refuses a certificate of another CA at the handshake, and serves
// the probes and a signed result URL to a client with no credentials.
func TestServeTLSClientCertsAndKeys(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := newCA(t, "arr test CA"), newCA(t, "rogue CA")
	srvCert, srvKey := ca.issue(t, true, "arr")
	tlsCfg, err := auth.ServerTLS(write(t, dir, "srv.pem", srvCert), write(t, dir, "srv.key", srvKey), write(t, dir, "ca.pem", ca.pem))
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
	roots.AppendCertsFromPEM(ca.pem)
	client := func(c *testCA, cn string, uris ...string) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if c != nil {
			cp, kp := c.issue(t, false, cn, uris...)
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
	id := strings.TrimPrefix(res.Header.Get("Operation-Location"), base+"/v1/operations/")
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
