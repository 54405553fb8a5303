package natsjs_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/internal/testcert"
	"github.com/arrhq/arr/natsjs"
)

// A nats:// URL's TLS parameters (and the tls:// scheme) connect to a real
// nats-server that requires TLS and client certificates; a URL without
// them, without a client certificate, or trusting another CA is refused.
func TestTLSURL(t *testing.T) {
	dir := t.TempDir()
	ca, other := testcert.NewCA(t, "ca"), testcert.NewCA(t, "other CA")
	caFile, otherFile := testcert.Write(t, dir, "ca.pem", ca.PEM), testcert.Write(t, dir, "other-ca.pem", other.PEM)
	cp, kp := ca.Issue(t, true, "server")
	srvCert, srvKey := testcert.Write(t, dir, "server.pem", cp), testcert.Write(t, dir, "server-key.pem", kp)
	cp, kp = ca.Issue(t, false, "client")
	cliCert, cliKey := testcert.Write(t, dir, "client.pem", cp), testcert.Write(t, dir, "client-key.pem", kp)
	c := natstest.StartTLSServer(t, natstest.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile,
		ConnectOptions: []nats.Option{nats.RootCAs(caFile), nats.ClientCert(cliCert, cliKey)}})
	host := strings.TrimPrefix(c.Nodes[0].URL(), "nats://")
	q := func(kv ...string) string {
		v := url.Values{"prefix": {"tlstest"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	ok := []string{
		"nats://" + host + "?" + q("tls_ca", caFile, "tls_cert", cliCert, "tls_key", cliKey),
		"nats://" + host + "?" + q("tls_ca", caFile, "tls_cert", cliCert, "tls_key", cliKey, "tls_required", "true"),
		"tls://" + host + "?" + q("tls_ca", caFile, "tls_cert", cliCert, "tls_key", cliKey),
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
		"no client certificate": "nats://" + host + "?" + q("tls_ca", caFile),
		"server of another CA":  "nats://" + host + "?" + q("tls_ca", otherFile, "tls_cert", cliCert, "tls_key", cliKey),
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
