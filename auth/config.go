package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
)

// Config selects the authentication methods of a server. The zero Config
// selects none: every request is anonymous.
type Config struct {
	// APIKeysFile is an API key file (see ParseKeys).
	APIKeysFile string
	// JWT are the trusted issuers of JWTs, and JWTOptions their shared
	// settings.
	JWT        []Issuer
	JWTOptions JWTOptions
	// ProxyHeader, when set, is a trusted proxy's identity header, read
	// only from TrustedProxies; ProxyTenantHeader its tenant header and
	// ProxyAdmins the admins among its principals (see Proxy).
	ProxyHeader       string
	ProxyTenantHeader string
	TrustedProxies    []netip.Prefix
	ProxyAdmins       []string
	// ClientCerts authenticates verified TLS client certificates (the
	// listener must verify them: ServerTLS with a client CA), with
	// ClientCertAdmins as the admins among their principals.
	ClientCerts      bool
	ClientCertAdmins []string
}

// Enabled reports whether c selects any method.
func (c Config) Enabled() bool {
	return c.APIKeysFile != "" || len(c.JWT) > 0 || c.ProxyHeader != "" || c.ClientCerts
}

// Built is what New builds: the authenticator (nil when c selects no
// method) and its API keys, if any, for Reload.
type Built struct {
	Authenticator Authenticator
	APIKeys       *APIKeys
}

// New builds the Chain of c's methods, in the order client certificate,
// proxy header, API key, JWT; warnings (a short key, a key file others
// can read) go to log. ctx bounds the fetching of JWKS.
func New(ctx context.Context, c Config, log *slog.Logger) (Built, error) {
	if log == nil {
		log = slog.Default()
	}
	var b Built
	var chain Chain
	if c.ClientCerts {
		chain = append(chain, &ClientCert{Admins: c.ClientCertAdmins})
	}
	if c.ProxyHeader != "" {
		if len(c.TrustedProxies) == 0 {
			return b, errors.New("the proxy identity header needs the proxies' addresses (-trusted-proxies CIDR,…): from any other peer it is ignored")
		}
		chain = append(chain, &Proxy{Header: c.ProxyHeader, TenantHeader: c.ProxyTenantHeader,
			Trusted: c.TrustedProxies, Admins: c.ProxyAdmins})
	}
	if c.APIKeysFile != "" {
		keys, warnings, err := LoadAPIKeys(c.APIKeysFile)
		for _, w := range warnings {
			log.Warn("API keys: " + w)
		}
		if err != nil {
			return b, err
		}
		b.APIKeys = keys
		chain = append(chain, keys)
	}
	if len(c.JWT) > 0 {
		if c.JWTOptions.Logger == nil {
			c.JWTOptions.Logger = log
		}
		j, err := NewJWT(ctx, c.JWT, c.JWTOptions)
		if err != nil {
			return b, err
		}
		chain = append(chain, j)
	}
	if len(chain) == 1 {
		b.Authenticator = chain[0]
	} else if len(chain) > 1 {
		b.Authenticator = chain
	}
	return b, nil
}
