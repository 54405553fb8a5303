package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	arr "github.com/arrhq/arr"
)

// Issuer configures one trusted issuer of JWTs (an OIDC provider such as
// Microsoft Entra ID, Auth0, Keycloak, Dex).
type Issuer struct {
	// Issuer is the exact `iss` of its tokens, e.g.
	// https://login.microsoftonline.com/{tenant id}/v2.0. Required.
	Issuer string
	// Audiences: a token's `aud` must hold one of them (Entra ID: the
	// application ID URI or client ID). At least one is required.
	Audiences []string
	// JWKSURL is where the signing keys are. Default: the jwks_uri of the
	// issuer's OIDC discovery document
	// ({Issuer}/.well-known/openid-configuration), read once at start.
	// Both must be https, except on a loopback host.
	JWKSURL string
	// Algorithms are the accepted signature algorithms. Default RS256,
	// PS256 and ES256. Only asymmetric ones are allowed: "none" and HS*
	// are refused, since anyone who has the public key could sign.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 1m.
	Leeway time.Duration
	// PrincipalClaim names the claim that is the principal. Default sub
	// (Entra ID: oid is the user's stable id across applications).
	PrincipalClaim string
	// TenantClaim names the claim that is the tenant when present.
	// Default tid (Entra ID's directory id). Absent: the tenant is the
	// principal.
	TenantClaim string
	// AdminClaim names the claim, a string or a list of strings, that
	// makes a caller an admin when it holds one of AdminValues. Default
	// roles (Entra ID's app roles).
	AdminClaim string
	// AdminValues, e.g. ["arr.admin"]. Empty: no token is an admin's.
	AdminValues []string
}

// JWTOptions are the settings shared by a JWT authenticator's issuers.
type JWTOptions struct {
	// Client fetches discovery documents and JWKS. Default: a client with
	// a 10 s timeout.
	Client *http.Client
	// RefreshInterval is how often each JWKS is fetched again. Default 1h.
	RefreshInterval time.Duration
	// UnknownKIDInterval bounds how often a token with a key id the
	// cached JWKS lacks makes it be fetched again (a new key after a
	// rotation). Default 1m. Tokens with unknown key ids beyond that are
	// refused at once, not held.
	UnknownKIDInterval time.Duration
	// Logger logs failed JWKS fetches. Default slog.Default().
	Logger *slog.Logger
}

// DefaultAlgorithms are the signature algorithms accepted when an Issuer
// lists none.
var DefaultAlgorithms = []string{"RS256", "PS256", "ES256"}

var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWT authenticates requests by `Authorization: Bearer <JWT>` signed by
// one of its issuers. A token must be signed with one of the issuer's
// algorithms by a key of its JWKS, have its `iss`, one of its audiences,
// an `exp` in the future (within the leeway), and a string principal
// claim. Any other token is refused with ErrInvalidToken; a bearer token
// that does not have a JWT's shape is ErrNoCredentials (an API key,
// perhaps).
//
// With one issuer the principal is the principal claim as is; with
// several it is "{iss}|{claim}", so two issuers' subjects cannot collide.
type JWT struct {
	issuers map[string]*jwtIssuer
	multi   bool
}

type jwtIssuer struct {
	cfg    Issuer
	parser *jwt.Parser
	kf     keyfunc.Keyfunc
}

// NewJWT checks the issuers, reads the discovery documents of those
// without a JWKSURL, and starts fetching their JWKS; the fetching stops
// when ctx ends.
func NewJWT(ctx context.Context, issuers []Issuer, opts JWTOptions) (*JWT, error) {
	if len(issuers) == 0 {
		return nil, errors.New("JWT: no issuer")
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = time.Hour
	}
	if opts.UnknownKIDInterval <= 0 {
		opts.UnknownKIDInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	j := &JWT{issuers: map[string]*jwtIssuer{}, multi: len(issuers) > 1}
	for _, cfg := range issuers {
		if err := checkIssuer(&cfg); err != nil {
			return nil, err
		}
		if j.issuers[cfg.Issuer] != nil {
			return nil, fmt.Errorf("JWT: issuer %s is configured twice", cfg.Issuer)
		}
		if cfg.JWKSURL == "" {
			u, err := discoverJWKS(ctx, opts.Client, cfg.Issuer)
			if err != nil {
				return nil, err
			}
			cfg.JWKSURL = u
		}
		if err := checkFetchURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("JWT: issuer %s: JWKS URL: %w", cfg.Issuer, err)
		}
		log := opts.Logger
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			Client:          opts.Client,
			HTTPTimeout:     10 * time.Second,
			RefreshInterval: opts.RefreshInterval,
			// A token with an unknown kid waits at most this long, for a
			// refresh that is due within it or for the fetch itself.
			RateLimitWaitMax:  10 * time.Second,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1),
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					log.Warn("JWKS fetch failed", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("JWT: issuer %s: %w", cfg.Issuer, err)
		}
		p := jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audiences...),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
		)
		j.issuers[cfg.Issuer] = &jwtIssuer{cfg: cfg, parser: p, kf: kf}
	}
	return j, nil
}

func checkIssuer(c *Issuer) error {
	if c.Issuer == "" {
		return errors.New("JWT: an issuer needs its iss URL")
	}
	if len(c.Audiences) == 0 || slices.Contains(c.Audiences, "") {
		return fmt.Errorf("JWT: issuer %s: give at least one audience, none empty (Entra ID: the application ID URI or client ID)", c.Issuer)
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(asymmetric, a) {
			return fmt.Errorf("JWT: issuer %s: algorithm %q is not accepted (use one of %s)", c.Issuer, a, strings.Join(asymmetric, ", "))
		}
	}
	if c.Leeway == 0 {
		c.Leeway = time.Minute
	}
	if c.Leeway < 0 {
		return fmt.Errorf("JWT: issuer %s: the leeway is negative", c.Issuer)
	}
	if c.PrincipalClaim == "" {
		c.PrincipalClaim = "sub"
	}
	if c.TenantClaim == "" {
		c.TenantClaim = "tid"
	}
	if c.AdminClaim == "" {
		c.AdminClaim = "roles"
	}
	return nil
}

// checkFetchURL allows https URLs, and http ones on a loopback host.
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%q: keys are fetched over https only (http on a loopback host)", s)
}

// discoverJWKS reads {issuer}/.well-known/openid-configuration and returns
// its jwks_uri; the document's issuer must be the issuer (OIDC Discovery
// §4.3).
func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"
	if err := checkFetchURL(u); err != nil {
		return "", fmt.Errorf("JWT: issuer discovery: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("JWT: issuer discovery: %w", err)
	}
	res, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("JWT: issuer discovery (or give the JWKS URL): %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("JWT: issuer discovery: %s answered %s (or give the JWKS URL)", u, res.Status)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("JWT: issuer discovery: %s: %w", u, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("JWT: issuer discovery: %s names issuer %q, not %q", u, doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("JWT: issuer discovery: %s has no jwks_uri", u)
	}
	return doc.JWKSURI, nil
}

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(r *http.Request) (arr.Caller, error) {
	tok, ok, bad := BearerToken(r)
	switch {
	case bad:
		return arr.Caller{}, fmt.Errorf("%w: the Authorization header is not a b64token", ErrInvalidToken)
	case !ok || !looksLikeJWT(tok):
		return arr.Caller{}, ErrNoCredentials
	}
	return j.authenticate(r.Context(), tok)
}

func (j *JWT) authenticate(ctx context.Context, tok string) (arr.Caller, error) {
	var unverified jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &unverified); err != nil {
		return arr.Caller{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	iss, _ := unverified["iss"].(string)
	is := j.issuers[iss]
	if is == nil {
		return arr.Caller{}, fmt.Errorf("%w: the token's issuer is not trusted", ErrInvalidToken)
	}
	claims := jwt.MapClaims{}
	if _, err := is.parser.ParseWithClaims(tok, claims, is.kf.KeyfuncCtx(ctx)); err != nil {
		return arr.Caller{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	p, _ := claims[is.cfg.PrincipalClaim].(string)
	if p == "" {
		return arr.Caller{}, fmt.Errorf("%w: the token has no %q claim", ErrInvalidToken, is.cfg.PrincipalClaim)
	}
	if j.multi {
		p = iss + "|" + p
	}
	c := arr.Caller{Principal: p}
	if t, ok := claims[is.cfg.TenantClaim].(string); ok && t != "" {
		c.Tenant = t
	}
	if len(is.cfg.AdminValues) > 0 {
		switch v := claims[is.cfg.AdminClaim].(type) {
		case string:
			c.Admin = slices.Contains(is.cfg.AdminValues, v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && slices.Contains(is.cfg.AdminValues, s) {
					c.Admin = true
					break
				}
			}
		}
	}
	if err := c.Valid(); err != nil {
		return arr.Caller{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return c, nil
}
