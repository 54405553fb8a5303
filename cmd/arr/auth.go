package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/arrhq/arr/auth"
	"github.com/arrhq/arr/config"
	"github.com/arrhq/arr/internal/trustedproxy"
	"github.com/arrhq/arr/server"
)

// authFlags are the authentication flags of arr serve and arr api.
type authFlags struct {
	apiKeys                       string
	jwtIssuer, jwtAudience        string
	jwtJWKS, jwtAlgs              string
	jwtPrincipal, jwtTenant       string
	jwtAdminClaim, jwtAdminValues string
	proxyHeader                   string
	trusted                       trustedproxy.Flag
	tlsCert, tlsKey, tlsClientCA  string
	insecureNoAuth                bool
}

// authEnv maps flags to the environment variables that set them when
// the flag is not given.
var authEnv = map[string]string{
	"api-keys":          "ARR_API_KEYS",
	"jwt-issuer":        "ARR_JWT_ISSUER",
	"jwt-audience":      "ARR_JWT_AUDIENCE",
	"auth-proxy-header": "ARR_AUTH_PROXY_HEADER",
	"trusted-proxies":   "ARR_TRUSTED_PROXIES",
}

func (a *authFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.apiKeys, "api-keys", "", "API key file: one `name:key` or name:sha256:<hex> a line, then optional role=admin tenant=T; clients send Authorization: Bearer <key>; SIGHUP reloads it (env ARR_API_KEYS; docs/auth.md)")
	fs.StringVar(&a.jwtIssuer, "jwt-issuer", "", "accept bearer JWTs of this issuer (exact iss, e.g. https://login.microsoftonline.com/{tenant}/v2.0); several issuers: the config file (env ARR_JWT_ISSUER)")
	fs.StringVar(&a.jwtAudience, "jwt-audience", "", "comma-separated audiences, one of which a JWT's aud must hold (env ARR_JWT_AUDIENCE)")
	fs.StringVar(&a.jwtJWKS, "jwt-jwks-url", "", "JWKS URL (default: the jwks_uri of {issuer}/.well-known/openid-configuration)")
	fs.StringVar(&a.jwtAlgs, "jwt-algorithms", "", "comma-separated JWT signature algorithms (default RS256,PS256,ES256; none and HS* are refused)")
	fs.StringVar(&a.jwtPrincipal, "jwt-principal-claim", "", "JWT claim naming the caller (default sub; Entra ID: oid)")
	fs.StringVar(&a.jwtTenant, "jwt-tenant-claim", "", "JWT claim naming the tenant (default tid)")
	fs.StringVar(&a.jwtAdminClaim, "jwt-admin-claim", "", "JWT claim whose values may make an admin (default roles)")
	fs.StringVar(&a.jwtAdminValues, "jwt-admin-values", "", "comma-separated values of the admin claim that make an admin, e.g. arr.admin")
	fs.StringVar(&a.proxyHeader, "auth-proxy-header", "", "trust this identity header (e.g. X-Remote-User) from -trusted-proxies only (env ARR_AUTH_PROXY_HEADER)")
	fs.Var(&a.trusted, "trusted-proxies", "comma-separated CIDRs of trusted reverse proxies, e.g. 10.0.0.0/8,127.0.0.1/32 (env ARR_TRUSTED_PROXIES)")
	fs.StringVar(&a.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain)")
	fs.StringVar(&a.tlsKey, "tls-key", "", "the PEM key of -tls-cert")
	fs.StringVar(&a.tlsClientCA, "tls-client-ca", "", "PEM CAs of client certificates: a verified certificate authenticates its first URI SAN, else its CN")
	fs.BoolVar(&a.insecureNoAuth, "insecure-no-auth", false, "allow listening beyond loopback with no authentication: every caller is anonymous")
}

// applyAuthEnv sets the flags not given from their environment
// variables, before the file's settings are applied: flag, then
// environment, then file.
func applyAuthEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range authEnv {
		if v := getenv(env); v != "" && !given[name] && fs.Lookup(name) != nil {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
		}
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// resolve combines the flags with the file's auth: section (a flag given
// wins) into the authentication and TLS settings.
func (a *authFlags) resolve(f *config.File, set map[string]bool) (c auth.Config, tlsFiles [3]string, insecure bool, err error) {
	var fa config.Auth
	if f != nil {
		fa = f.Auth
	}
	pick := func(flag, v, file string) string {
		if set[flag] || file == "" {
			return v
		}
		return file
	}
	c.APIKeysFile = pick("api-keys", a.apiKeys, fa.APIKeys)
	if a.jwtIssuer != "" {
		c.JWT = []auth.Issuer{{Issuer: a.jwtIssuer, Audiences: splitList(a.jwtAudience), JWKSURL: a.jwtJWKS,
			Algorithms: splitList(a.jwtAlgs), PrincipalClaim: a.jwtPrincipal, TenantClaim: a.jwtTenant,
			AdminClaim: a.jwtAdminClaim, AdminValues: splitList(a.jwtAdminValues)}}
	} else {
		for _, j := range fa.JWT {
			c.JWT = append(c.JWT, auth.Issuer{Issuer: j.Issuer, Audiences: j.Audiences, JWKSURL: j.JWKSURL,
				Algorithms: j.Algorithms, Leeway: j.Leeway.Std(), PrincipalClaim: j.PrincipalClaim,
				TenantClaim: j.TenantClaim, AdminClaim: j.AdminClaim, AdminValues: j.AdminValues})
		}
	}
	c.ProxyHeader = pick("auth-proxy-header", a.proxyHeader, fa.Proxy.Header)
	c.ProxyTenantHeader, c.ProxyAdmins = fa.Proxy.TenantHeader, fa.Proxy.Admins
	c.TrustedProxies = []netip.Prefix(a.trusted)
	tlsFiles = [3]string{pick("tls-cert", a.tlsCert, fa.TLS.Cert), pick("tls-key", a.tlsKey, fa.TLS.Key), pick("tls-client-ca", a.tlsClientCA, fa.TLS.ClientCA)}
	if tlsFiles[2] != "" {
		c.ClientCerts, c.ClientCertAdmins = true, fa.TLS.ClientAdmins
	}
	return c, tlsFiles, a.insecureNoAuth || fa.InsecureNoAuth, nil
}

// checkExposure refuses to serve anonymous callers beyond loopback.
func checkExposure(addr string, c auth.Config, insecure bool) error {
	if c.Enabled() || insecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s with no authentication: anyone who can reach it could read and cancel every operation. "+
		"Configure one: -api-keys FILE (lines name:key), -jwt-issuer URL -jwt-audience AUD, -auth-proxy-header X-Remote-User -trusted-proxies CIDR, "+
		"or -tls-client-ca FILE with -tls-cert/-tls-key (or the config file's auth: section; see docs/auth.md); "+
		"listen on 127.0.0.1 instead; or give -insecure-no-auth to serve everyone anonymously", addr)
}

// isLoopback reports whether addr (host:port) listens on loopback only:
// localhost, 127.0.0.0/8 or ::1. An empty host (":8080") is every
// interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// setupAuth builds the authenticator and TLS of cfg; SIGHUP reloads the
// API key file while ctx lasts.
func setupAuth(ctx context.Context, cfg *server.Config, c auth.Config, tlsFiles [3]string, logger *slog.Logger) error {
	if tlsFiles != [3]string{} {
		t, err := auth.ServerTLS(tlsFiles[0], tlsFiles[1], tlsFiles[2])
		if err != nil {
			return err
		}
		cfg.TLS = t
	}
	b, err := auth.New(ctx, c, logger)
	if err != nil {
		return err
	}
	cfg.Auth = b.Authenticator
	if b.APIKeys != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go func() {
			defer signal.Stop(hup)
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					warnings, err := b.APIKeys.Reload()
					for _, w := range warnings {
						logger.Warn("API keys: " + w)
					}
					if err != nil {
						logger.Error("API keys not reloaded; the previous keys stay", "err", err)
					} else {
						logger.Info("API keys reloaded", "keys", b.APIKeys.Len())
					}
				}
			}
		}()
	}
	if cfg.Auth != nil {
		logger.Info("authentication on", "api_keys", c.APIKeysFile != "", "jwt_issuers", len(c.JWT),
			"proxy_header", c.ProxyHeader, "client_certs", c.ClientCerts)
	}
	return nil
}
