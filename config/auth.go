package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// Auth is the auth: section: how arr authenticates its callers
// (docs/auth.md). Each method left out is off; the matching command-line
// flag, given, overrides the file. With no method, arr serves anonymous
// callers on loopback only, unless InsecureNoAuth.
type Auth struct {
	// APIKeys is an API key file (name:key or name:sha256:<hex>, then
	// optional role=admin and tenant=T), relative to this file's
	// directory.
	APIKeys string `yaml:"apiKeys"`
	// JWT lists the trusted issuers of bearer JWTs.
	JWT []JWTIssuer `yaml:"jwt"`
	// Proxy is a trusted reverse proxy's identity header.
	Proxy ProxyAuth `yaml:"proxy"`
	// TLS serves HTTPS, and with ClientCA authenticates client
	// certificates.
	TLS TLS `yaml:"tls"`
	// InsecureNoAuth lets arr listen beyond loopback with no
	// authentication: every caller is anonymous.
	InsecureNoAuth bool `yaml:"insecureNoAuth"`
}

// JWTIssuer is one trusted issuer; see auth.Issuer for each field's
// default.
type JWTIssuer struct {
	Issuer         string   `yaml:"issuer"`
	Audiences      []string `yaml:"audiences"`
	JWKSURL        string   `yaml:"jwksURL"`
	Algorithms     []string `yaml:"algorithms"`
	Leeway         Duration `yaml:"leeway"`
	PrincipalClaim string   `yaml:"principalClaim"`
	TenantClaim    string   `yaml:"tenantClaim"`
	AdminClaim     string   `yaml:"adminClaim"`
	AdminValues    []string `yaml:"adminValues"`
}

// ProxyAuth is an authenticating proxy's identity header, honoured only
// from the trusted proxies (server.trustedProxies, -trusted-proxies).
type ProxyAuth struct {
	Header       string   `yaml:"header"`
	TenantHeader string   `yaml:"tenantHeader"`
	Admins       []string `yaml:"admins"`
}

// TLS holds PEM files, relative to this file's directory: the server's
// Cert and Key, and ClientCA to verify client certificates, whose
// principals (first URI SAN, else CN) in ClientAdmins are admins.
type TLS struct {
	Cert         string   `yaml:"cert"`
	Key          string   `yaml:"key"`
	ClientCA     string   `yaml:"clientCA"`
	ClientAdmins []string `yaml:"clientAdmins"`
}

func init() {
	for _, v := range []any{Auth{}, JWTIssuer{}, ProxyAuth{}, TLS{}} {
		t := reflectType(v)
		keysOf[t.String()] = yamlKeys(t)
	}
}

// checkAuth checks the auth: section and resolves its relative paths.
func (p *parser) checkAuth() {
	a := &p.f.Auth
	for _, f := range []struct {
		key string
		v   *string
	}{{"auth.apiKeys", &a.APIKeys}, {"auth.tls.cert", &a.TLS.Cert}, {"auth.tls.key", &a.TLS.Key}, {"auth.tls.clientCA", &a.TLS.ClientCA}} {
		if p.notEmpty(f.key) && *f.v != "" && !filepath.IsAbs(*f.v) {
			*f.v = filepath.Join(filepath.Dir(p.name), *f.v)
		}
	}
	for i, j := range a.JWT {
		at := fmt.Sprintf("auth.jwt[%d]", i)
		if j.Issuer == "" {
			p.errorf(at, "issuer: is required (the exact iss of the tokens)")
		} else if msg := checkHTTPURL(j.Issuer); msg != "" {
			p.errorf(at+".issuer", "%s", msg)
		}
		if len(j.Audiences) == 0 || slices.Contains(j.Audiences, "") {
			p.errorf(at, "audiences: give at least one, none empty (Entra ID: the application ID URI or client ID)")
		}
		if j.JWKSURL != "" {
			if msg := checkHTTPURL(j.JWKSURL); msg != "" {
				p.errorf(at+".jwksURL", "%s", msg)
			}
		}
		for _, alg := range j.Algorithms {
			if alg == "none" || strings.HasPrefix(alg, "HS") {
				p.errorf(at+".algorithms", "%q is refused: only asymmetric algorithms (RS256, PS256, ES256…)", alg)
			}
		}
	}
	if pr := a.Proxy; pr.Header == "" && (pr.TenantHeader != "" || len(pr.Admins) > 0) {
		p.errorf("auth.proxy", "header: is required (e.g. X-Remote-User); it is honoured from server.trustedProxies only")
	}
	if t := a.TLS; (t.Cert == "") != (t.Key == "") || t.ClientCA != "" && t.Cert == "" {
		p.errorf("auth.tls", "give cert and key together (clientCA needs them too)")
	}
}

func reflectType(v any) reflect.Type { return reflect.TypeOf(v) }
