package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthSection(t *testing.T) {
	f, err := Parse(filepath.Join("etc", "arr.yaml"), []byte(`
auth:
  apiKeys: keys.txt
  jwt:
    - issuer: https://login.microsoftonline.com/tid/v2.0
      audiences: [api://arr]
      principalClaim: oid
      adminValues: [arr.admin]
      leeway: 30s
  proxy:
    header: X-Remote-User
  tls:
    cert: /tls/cert.pem
    key: tls/key.pem
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := f.Auth
	if a.APIKeys != filepath.Join("etc", "keys.txt") || a.TLS.Key != filepath.Join("etc", "tls/key.pem") || a.TLS.Cert != "/tls/cert.pem" {
		t.Errorf("paths: %q %q %q", a.APIKeys, a.TLS.Key, a.TLS.Cert)
	}
	if len(a.JWT) != 1 || a.JWT[0].PrincipalClaim != "oid" || a.JWT[0].Leeway.Std().Seconds() != 30 || a.Proxy.Header != "X-Remote-User" {
		t.Errorf("%+v", a)
	}
	for in, want := range map[string]string{
		"auth:\n  jwt:\n    - audiences: [x]\n":                                                     "arr.yaml:3: auth.jwt[0]: issuer: is required",
		"auth:\n  jwt:\n    - issuer: https://i\n":                                                  "auth.jwt[0]: audiences: give at least one",
		"auth:\n  jwt:\n    - issuer: https://i\n      audiences: [a]\n      algorithms: [HS256]\n": `"HS256" is refused`,
		"auth:\n  proxy:\n    admins: [ops]\n":                                                      "auth.proxy: header: is required",
		"auth:\n  tls:\n    cert: c.pem\n":                                                          "give cert and key together",
		"auth:\n  apikeys: k\n":                                                                     "apikeys",
	} {
		_, err := Parse("arr.yaml", []byte(in), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
