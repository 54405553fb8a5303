// Package auth turns an HTTP request into an arr.Caller: who made it
// (principal), its tenant, and whether it is an admin.
//
// An Authenticator reads one kind of credential: API keys (APIKeys), JWTs
// from OIDC issuers such as Microsoft Entra ID (JWT), a trusted proxy's
// identity header (Proxy) or a verified TLS client certificate
// (ClientCert). A Chain tries several; Middleware puts the caller into
// the request's context (arr.WithCaller) and answers every request it
// cannot authenticate with 401 and a WWW-Authenticate challenge.
//
// No authenticator logs or returns in an error the key or token it was
// given.
package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/operation"
)

var (
	// ErrNoCredentials: the request carries none of the credentials an
	// authenticator reads. A Chain then tries the next one; Middleware
	// answers 401 when none is left.
	ErrNoCredentials = errors.New("auth: no credentials")
	// ErrInvalid: the request carries credentials of the authenticator's
	// kind, and they are bad (unknown key, bad signature, expired…). A
	// Chain stops there; Middleware answers 401.
	ErrInvalid = errors.New("auth: invalid credentials")
	// ErrInvalidToken is the ErrInvalid of a bearer token (RFC 6750): the
	// 401 then says error="invalid_token". errors.Is(ErrInvalidToken,
	// ErrInvalid) holds.
	ErrInvalidToken = fmt.Errorf("%w: invalid bearer token", ErrInvalid)
)

// Authenticator reads one kind of credential from a request.
//
// Authenticate returns the caller, which passes arr.Caller.Valid, or an
// error that wraps ErrNoCredentials or ErrInvalid (ErrInvalidToken for a
// bearer token). Its error text never holds the credential.
type Authenticator interface {
	Authenticate(r *http.Request) (arr.Caller, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (arr.Caller, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (arr.Caller, error) { return f(r) }

// Chain tries its authenticators in order: the first that returns a
// caller or an error other than ErrNoCredentials decides. A Chain whose
// every member returns ErrNoCredentials (or an empty Chain) returns
// ErrNoCredentials.
type Chain []Authenticator

// Authenticate runs the chain.
func (c Chain) Authenticate(r *http.Request) (arr.Caller, error) {
	for _, a := range c {
		caller, err := a.Authenticate(r)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return caller, err
	}
	return arr.Caller{}, ErrNoCredentials
}

// ProblemUnauthorized is the problem type of a 401.
const ProblemUnauthorized = "urn:arr:problem:unauthorized"

// Options configures Middleware.
type Options struct {
	// Realm is the realm of the WWW-Authenticate challenge. Default "arr".
	Realm string
	// Logger logs why a request was refused (at debug level), never with
	// its credentials. Default slog.Default().
	Logger *slog.Logger
}

// Middleware authenticates each request with a before calling next with
// the caller in the request's context (arr.WithCaller; arr.CallerFrom
// reads it). A request a refuses, or that carries no credentials a reads,
// is answered 401 with an application/problem+json body and
// `WWW-Authenticate: Bearer realm="arr"` (with error="invalid_token" when
// a bearer token was given and refused, RFC 6750 §3.1); next is not
// called.
//
// With a nil a, every request is the caller {Principal: arr.Anonymous}:
// the operator chose no authentication.
func Middleware(next http.Handler, a Authenticator, opts Options) http.Handler {
	if opts.Realm == "" {
		opts.Realm = "arr"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if a == nil {
		anon := arr.Caller{Principal: arr.Anonymous}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(arr.WithCaller(r.Context(), anon)))
		})
	}
	realm := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(opts.Realm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Authenticate(r)
		if err == nil {
			if verr := c.Valid(); verr != nil {
				err = fmt.Errorf("%w: %v", ErrInvalid, verr)
			}
		}
		if err != nil {
			unauthorized(w, r, realm, err, opts.Logger)
			return
		}
		next.ServeHTTP(w, r.WithContext(arr.WithCaller(r.Context(), c)))
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request, realm string, err error, log *slog.Logger) {
	scheme, cred, hasAuth := ParseAuthorization(r.Header.Get("Authorization"))
	bearer := hasAuth && strings.EqualFold(scheme, "Bearer") && cred != ""
	challenge := `Bearer realm="` + realm + `"`
	detail := "this request needs credentials: an API key or token as Authorization: Bearer <token>"
	switch {
	case errors.Is(err, ErrInvalidToken), errors.Is(err, ErrNoCredentials) && bearer:
		// A bearer token that no authenticator accepted.
		challenge += `, error="invalid_token", error_description="the token is not valid"`
		detail = "the bearer token is not valid"
	case errors.Is(err, ErrInvalid):
		detail = "the credentials are not valid"
	case hasAuth:
		detail = "the Authorization scheme is not one this server accepts; use Bearer"
	}
	log.Debug("request not authenticated", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err.Error())
	w.Header().Set("WWW-Authenticate", challenge)
	problem.Write(w, r, &operation.Problem{Type: ProblemUnauthorized, Title: "Unauthorized",
		Status: http.StatusUnauthorized, Detail: detail})
}

// ParseAuthorization splits an Authorization header value into its scheme
// and credentials (RFC 9110 §11.4): "Bearer abc" → ("Bearer", "abc",
// true). The scheme is a token; spaces between it and the credentials
// are skipped, and the credentials are the rest of the value with
// trailing spaces removed. ok is false for an empty value, a scheme that
// is not a token, or credentials holding control characters.
func ParseAuthorization(h string) (scheme, credentials string, ok bool) {
	h = strings.TrimLeft(h, " \t")
	i := strings.IndexAny(h, " \t")
	if i < 0 {
		scheme = h
	} else {
		scheme, credentials = h[:i], strings.Trim(h[i:], " \t")
	}
	if scheme == "" || !isToken(scheme) {
		return "", "", false
	}
	for i := 0; i < len(credentials); i++ {
		if c := credentials[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", "", false
		}
	}
	return scheme, credentials, true
}

// BearerToken returns the token of an `Authorization: Bearer <token>`
// header, and whether the request has one. The token is a b64token (RFC
// 6750 §2.1): letters, digits and -._~+/ followed by any '='; a value of
// another shape is refused as ok=false with bad=true. "Bearer" alone is
// no token.
func BearerToken(r *http.Request) (token string, ok, bad bool) {
	scheme, cred, hok := ParseAuthorization(r.Header.Get("Authorization"))
	if !hok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", false, false
	}
	if !isB64Token(cred) {
		return "", false, true
	}
	return cred, true, false
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return s != ""
}

func isB64Token(s string) bool {
	s2 := strings.TrimRight(s, "=")
	if s2 == "" {
		return false
	}
	for i := 0; i < len(s2); i++ {
		c := s2[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// looksLikeJWT reports whether a bearer token has a JWS compact shape:
// three base64url parts, the first a JSON object ("eyJ").
func looksLikeJWT(tok string) bool {
	return strings.HasPrefix(tok, "eyJ") && strings.Count(tok, ".") == 2
}
