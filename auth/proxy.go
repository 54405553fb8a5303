package auth

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/trustedproxy"
)

// Proxy authenticates requests by an identity header that an
// authenticating reverse proxy (oauth2-proxy, Azure App Service
// authentication, an ingress) sets, e.g. X-Remote-User. The header is
// honoured only when the request's direct peer (r.RemoteAddr) is in
// Trusted; from any other peer it is ignored (ErrNoCredentials), so a
// client cannot name itself.
type Proxy struct {
	// Header holds the principal. Required.
	Header string
	// TenantHeader, if set, holds the tenant (default: the principal).
	TenantHeader string
	// Trusted are the proxies' addresses. Empty: the header is never
	// honoured.
	Trusted []netip.Prefix
	// Admins are the principals that are admins.
	Admins []string
}

// Authenticate implements Authenticator. A trusted peer's request with
// an empty or absent header carries no credentials; one whose header is
// not a valid principal (or that repeats the header) is ErrInvalid.
func (p *Proxy) Authenticate(r *http.Request) (arr.Caller, error) {
	if p.Header == "" || !trustedproxy.Contains(p.Trusted, r.RemoteAddr) {
		return arr.Caller{}, ErrNoCredentials
	}
	vs := r.Header.Values(p.Header)
	if len(vs) == 0 || len(vs) == 1 && vs[0] == "" {
		return arr.Caller{}, ErrNoCredentials
	}
	if len(vs) > 1 {
		return arr.Caller{}, fmt.Errorf("%w: %s is given %d times", ErrInvalid, p.Header, len(vs))
	}
	c := arr.Caller{Principal: vs[0], Admin: slices.Contains(p.Admins, vs[0])}
	if p.TenantHeader != "" {
		c.Tenant = r.Header.Get(p.TenantHeader)
	}
	if err := c.Valid(); err != nil {
		return arr.Caller{}, fmt.Errorf("%w: %s: %v", ErrInvalid, p.Header, err)
	}
	return c, nil
}
