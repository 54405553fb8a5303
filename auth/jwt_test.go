package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	arr "github.com/arrhq/arr"
)

// idp is a local OIDC provider: a JWKS (and discovery document) served
// on 127.0.0.1, whose keys a test can change.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey // kid → key, served
	fetches atomic.Int32
}

func newIDP(t *testing.T) *idp {
	p := &idp{keys: map[string]*rsa.PrivateKey{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys"})
		case "/keys":
			p.fetches.Add(1)
			p.mu.Lock()
			defer p.mu.Unlock()
			var keys []map[string]string
			for kid, k := range p.keys {
				keys = append(keys, map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
					"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
			}
			json.NewEncoder(w).Encode(map[string]any{"keys": keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

var (
	keyOnce sync.Once
	rsaKeys [3]*rsa.PrivateKey
)

// testRSA returns one of three RSA keys made once per test binary.
func testRSA(t *testing.T, i int) *rsa.PrivateKey {
	keyOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return rsaKeys[i]
}

func (p *idp) serve(kid string, k *rsa.PrivateKey) {
	p.mu.Lock()
	p.keys[kid] = k
	p.mu.Unlock()
}

func sign(t *testing.T, kid string, k *rsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(iss, aud, sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": iss, "aud": aud, "sub": sub, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func newJWT(t *testing.T, issuers ...Issuer) http.Handler {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	j, err := NewJWT(ctx, issuers, JWTOptions{UnknownKIDInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return Middleware(whoami, j, Options{})
}

func TestJWT(t *testing.T) {
	p := newIDP(t)
	k1, k2, other := testRSA(t, 0), testRSA(t, 1), testRSA(t, 2)
	p.serve("k1", k1)
	iss, aud := p.srv.URL, "api://arr"
	// Discovery: no JWKS URL, the issuer's document names it.
	h := newJWT(t, Issuer{Issuer: iss, Audiences: []string{"api://other", aud}})
	bearer := func(tok string) *http.Request { return req("Bearer " + tok) }

	c := callerOf(t, do(t, h, bearer(sign(t, "k1", k1, claims(iss, aud, "alice")))))
	if c != (arr.Caller{Principal: "alice", Tenant: "alice"}) {
		t.Errorf("valid token: %+v", c)
	}

	t.Run("rotation", func(t *testing.T) {
		before := p.fetches.Load()
		p.serve("k2", k2)
		c := callerOf(t, do(t, h, bearer(sign(t, "k2", k2, claims(iss, aud, "bob")))))
		if c.Principal != "bob" {
			t.Errorf("after rotation: %+v", c)
		}
		if p.fetches.Load() != before+1 {
			t.Errorf("JWKS fetched %d times for the new kid, want 1", p.fetches.Load()-before)
		}
		// A second unknown kid within the refresh interval is refused at
		// once, without a fetch (the refresh is rate-limited).
		p.serve("k3", other)
		start := time.Now()
		check401(t, do(t, h, bearer(sign(t, "k3", other, claims(iss, aud, "eve")))), true)
		if d := time.Since(start); d > 5*time.Second || p.fetches.Load() != before+1 {
			t.Errorf("a rate-limited unknown kid took %v and %d fetches", d, p.fetches.Load()-before)
		}
	})

	expired := claims(iss, aud, "alice")
	expired["exp"] = time.Now().Add(-2 * time.Minute).Unix()
	withinLeeway := claims(iss, aud, "alice")
	withinLeeway["exp"] = time.Now().Add(-20 * time.Second).Unix()
	noExp := claims(iss, aud, "alice")
	delete(noExp, "exp")
	future := claims(iss, aud, "alice")
	future["nbf"] = time.Now().Add(10 * time.Minute).Unix()
	noSub := claims(iss, aud, "alice")
	delete(noSub, "sub")
	audList := claims(iss, aud, "alice")
	audList["aud"] = []string{"x", aud}

	c = callerOf(t, do(t, h, bearer(sign(t, "k1", k1, withinLeeway))))
	if c.Principal != "alice" {
		t.Errorf("a token expired 20 s ago, within the 1 min leeway: %+v", c)
	}
	callerOf(t, do(t, h, bearer(sign(t, "k1", k1, audList))))

	pub, _ := x509.MarshalPKIXPublicKey(&k1.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	hs := func(key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(iss, aud, "mallory"))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims(iss, aud, "mallory"))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(t, "k1", k1, claims(iss, aud, "alice"))
	parts := strings.Split(valid, ".")
	for name, tok := range map[string]string{
		"expired":            sign(t, "k1", k1, expired),
		"no exp":             sign(t, "k1", k1, noExp),
		"not yet valid":      sign(t, "k1", k1, future),
		"wrong audience":     sign(t, "k1", k1, claims(iss, "api://other-app", "alice")),
		"wrong issuer":       sign(t, "k1", k1, claims("https://evil.example", aud, "alice")),
		"issuer with slash":  sign(t, "k1", k1, claims(iss+"/", aud, "alice")),
		"no principal":       sign(t, "k1", k1, noSub),
		"signed by another":  sign(t, "k1", other, claims(iss, aud, "alice")),
		"alg none":           none(),
		"HS256 with pub PEM": hs(pubPEM),
		"HS256 with pub DER": hs(pub),
		"tampered payload":   parts[0] + "." + b64([]byte(`{"iss":"`+iss+`","aud":"`+aud+`","sub":"root","exp":9999999999}`)) + "." + parts[2],
		"no signature":       parts[0] + "." + parts[1] + ".",
		"garbage":            "eyJ.eyJ.x",
	} {
		t.Run(name, func(t *testing.T) { check401(t, do(t, h, bearer(tok)), true) })
	}
}

// A Microsoft Entra ID v2.0 access token: issuer
// https://login.microsoftonline.com/{tid}/v2.0, the user's oid as the
// principal, its tid as the tenant, an app role making an admin.
func TestJWTEntraID(t *testing.T) {
	p := newIDP(t)
	k := testRSA(t, 0)
	p.serve("entra-kid", k)
	const tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	iss := "https://login.microsoftonline.com/" + tid + "/v2.0"
	const appID = "api://8f3c1e2a-0000-4000-8000-000000000001"
	h := newJWT(t, Issuer{Issuer: iss, Audiences: []string{appID, "8f3c1e2a-0000-4000-8000-000000000001"},
		JWKSURL: p.srv.URL + "/keys", PrincipalClaim: "oid", AdminValues: []string{"arr.admin"}})
	entra := func(oid string, roles []string) jwt.MapClaims {
		c := claims(iss, appID, "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ") // pairwise sub
		c["tid"], c["oid"], c["ver"], c["azp"] = tid, oid, "2.0", "client"
		if roles != nil {
			c["roles"] = roles
		}
		return c
	}
	c := callerOf(t, do(t, h, req("Bearer "+sign(t, "entra-kid", k, entra("00000000-0000-0000-66f3-3332eca7ea81", []string{"reader", "arr.admin"})))))
	if c != (arr.Caller{Principal: "00000000-0000-0000-66f3-3332eca7ea81", Tenant: tid, Admin: true}) {
		t.Errorf("admin: %+v", c)
	}
	c = callerOf(t, do(t, h, req("Bearer "+sign(t, "entra-kid", k, entra("11111111-0000-0000-66f3-3332eca7ea81", []string{"reader"})))))
	if c != (arr.Caller{Principal: "11111111-0000-0000-66f3-3332eca7ea81", Tenant: tid}) {
		t.Errorf("user: %+v", c)
	}
	// A v1.0 token of the same tenant has another issuer (sts.windows.net).
	v1 := entra("x", nil)
	v1["iss"] = "https://sts.windows.net/" + tid + "/"
	check401(t, do(t, h, req("Bearer "+sign(t, "entra-kid", k, v1))), true)
}

// With two issuers the principal is iss|sub: the same sub from each is
// two principals.
func TestJWTMultipleIssuers(t *testing.T) {
	a, b := newIDP(t), newIDP(t)
	ka, kb := testRSA(t, 0), testRSA(t, 1)
	a.serve("a", ka)
	b.serve("b", kb)
	h := newJWT(t, Issuer{Issuer: a.srv.URL, Audiences: []string{"arr"}}, Issuer{Issuer: b.srv.URL, Audiences: []string{"arr"}, JWKSURL: b.srv.URL + "/keys"})
	ca := callerOf(t, do(t, h, req("Bearer "+sign(t, "a", ka, claims(a.srv.URL, "arr", "alice")))))
	cb := callerOf(t, do(t, h, req("Bearer "+sign(t, "b", kb, claims(b.srv.URL, "arr", "alice")))))
	if ca.Principal != a.srv.URL+"|alice" || cb.Principal != b.srv.URL+"|alice" {
		t.Errorf("principals %q and %q", ca.Principal, cb.Principal)
	}
	// Issuer b's key does not sign for issuer a.
	check401(t, do(t, h, req("Bearer "+sign(t, "b", kb, claims(a.srv.URL, "arr", "alice")))), true)
}

func TestJWTConfigErrors(t *testing.T) {
	p := newIDP(t)
	for _, c := range []struct {
		is   Issuer
		want string
	}{
		{Issuer{Audiences: []string{"a"}}, "needs its iss"},
		{Issuer{Issuer: p.srv.URL}, "at least one audience"},
		{Issuer{Issuer: p.srv.URL, Audiences: []string{"a"}, Algorithms: []string{"HS256"}}, `algorithm "HS256" is not accepted`},
		{Issuer{Issuer: p.srv.URL, Audiences: []string{"a"}, Algorithms: []string{"none"}}, `algorithm "none"`},
		{Issuer{Issuer: p.srv.URL, Audiences: []string{"a"}, JWKSURL: "http://example.com/keys"}, "https only"},
		{Issuer{Issuer: "http://idp.example.com", Audiences: []string{"a"}}, "https only"},
		{Issuer{Issuer: p.srv.URL + "/other", Audiences: []string{"a"}}, "404"},
	} {
		_, err := NewJWT(context.Background(), []Issuer{c.is}, JWTOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.is, err, c.want)
		}
	}
	// A discovery document naming another issuer is refused.
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": "https://login.example.com", "jwks_uri": p.srv.URL + "/keys"})
	}))
	defer liar.Close()
	if _, err := NewJWT(context.Background(), []Issuer{{Issuer: liar.URL, Audiences: []string{"a"}}}, JWTOptions{}); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Errorf("lying discovery: %v", err)
	}
}

// API keys and JWTs share Authorization: Bearer; in one chain each takes
// its own tokens.
func TestChainAPIKeysAndJWT(t *testing.T) {
	p := newIDP(t)
	k := testRSA(t, 0)
	p.serve("k", k)
	keys := NewAPIKeys(mustParse(t, "svc:svc-key-0123456789 role=admin"))
	j, err := NewJWT(t.Context(), []Issuer{{Issuer: p.srv.URL, Audiences: []string{"arr"}}}, JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := Middleware(whoami, Chain{keys, j}, Options{})
	if c := callerOf(t, do(t, h, req("Bearer svc-key-0123456789"))); c.Principal != "svc" || !c.Admin {
		t.Errorf("key: %+v", c)
	}
	if c := callerOf(t, do(t, h, req("Bearer "+sign(t, "k", k, claims(p.srv.URL, "arr", "alice"))))); c.Principal != "alice" {
		t.Errorf("jwt: %+v", c)
	}
	check401(t, do(t, h, req("Bearer not-a-key-0123456789")), true)
	check401(t, do(t, h, req("Bearer "+sign(t, "k", k, claims(p.srv.URL, "other", "alice")))), true)
}
