package natsjs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/natsjs"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for 127.0.0.1 signed by ca, and its key, as
// name.pem and name-key.pem in dir, and returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, cf, "CERTIFICATE", der)
	writePEM(t, kf, "EC PRIVATE KEY", kder)
	return cf, kf
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A nats:// URL's TLS parameters (and the tls:// scheme) connect to a real
// nats-server that requires TLS and client certificates; a URL without
// them, without a client certificate, or trusting another CA is refused.
func TestTLSURL(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, dir, "ca"), newCA(t, dir, "other-ca")
	srvCert, srvKey := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
	c := natstest.StartTLSServer(t, natstest.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.file,
		ConnectOptions: []nats.Option{nats.RootCAs(ca.file), nats.ClientCert(cliCert, cliKey)}})
	host := strings.TrimPrefix(c.Nodes[0].URL(), "nats://")
	q := func(kv ...string) string {
		v := url.Values{"prefix": {"tlstest"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	ok := []string{
		"nats://" + host + "?" + q("tls_ca", ca.file, "tls_cert", cliCert, "tls_key", cliKey),
		"nats://" + host + "?" + q("tls_ca", ca.file, "tls_cert", cliCert, "tls_key", cliKey, "tls_required", "true"),
		"tls://" + host + "?" + q("tls_ca", ca.file, "tls_cert", cliCert, "tls_key", cliKey),
	}
	for _, u := range ok {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		e, err := engine.Open(ctx, u)
		if err == nil {
			if _, err = e.Queue(ctx); err == nil {
				_, err = e.Store(ctx)
			}
			_ = e.Close()
		}
		cancel()
		if err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	refused := map[string]string{
		"no TLS":                "nats://" + host + "?" + q(),
		"no client certificate": "nats://" + host + "?" + q("tls_ca", ca.file),
		"server of another CA":  "nats://" + host + "?" + q("tls_ca", other.file, "tls_cert", cliCert, "tls_key", cliKey),
	}
	for why, u := range refused {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pu, _ := url.Parse(u)
		_, err := natsjs.OpenStoreURL(ctx, pu)
		cancel()
		if err == nil {
			t.Errorf("%s: %s connected", why, u)
		}
	}
}

func TestParseURLTLS(t *testing.T) {
	for _, c := range []struct {
		url     string
		wantErr string
		tls     bool
	}{
		{"nats://h:4222", "", false},
		{"tls://h:4222", "", true},
		{"nats://h:4222?tls_required=true", "", true},
		{"nats://h:4222?tls_required=false", "", false},
		{"nats://h:4222?tls_ca=/ca.pem", "", true},
		{"nats://h:4222?tls_cert=/c.pem", "tls_cert and tls_key go together", false},
		{"nats://h:4222?tls_key=/k.pem", "tls_cert and tls_key go together", false},
		{"tls://h:4222?tls_required=false", "requires TLS", false},
		{"nats://h:4222?tls_required=maybe", "invalid syntax", false},
	} {
		u, _ := url.Parse(c.url)
		cfg, err := natsjs.ParseURL(u)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseURL(%s) = %v, want an error mentioning %q", c.url, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("ParseURL(%s): %v", c.url, err)
		case (cfg.TLSRequired || cfg.TLSCAFile != "" || cfg.TLSCertFile != "") != c.tls:
			t.Errorf("ParseURL(%s): TLS %+v, want TLS %v", c.url, cfg, c.tls)
		}
	}
}
