package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	arr "github.com/arrhq/arr"
)

// whoami answers with the caller the middleware put in the context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := arr.CallerFrom(r.Context())
	if !ok {
		http.Error(w, "no caller", 500)
		return
	}
	_ = json.NewEncoder(w).Encode(c)
})

// do runs one request through h and returns the response.
func do(t *testing.T, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func callerOf(t *testing.T, w *httptest.ResponseRecorder) arr.Caller {
	t.Helper()
	if w.Code != 200 {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	var c arr.Caller
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// check401 checks the shape of a refusal: 401, a problem+json body of
// the unauthorized type, and the Bearer challenge, with
// error="invalid_token" exactly when invalidToken.
func check401(t *testing.T, w *httptest.ResponseRecorder, invalidToken bool) {
	t.Helper()
	if w.Code != 401 {
		t.Fatalf("status %d, want 401: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Type != ProblemUnauthorized || p.Status != 401 || p.Detail == "" {
		t.Errorf("problem %+v (%v): %s", p, err, w.Body)
	}
	ch := w.Header().Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, `Bearer realm="arr"`) {
		t.Errorf("WWW-Authenticate %q", ch)
	}
	if got := strings.Contains(ch, `error="invalid_token"`); got != invalidToken {
		t.Errorf("WWW-Authenticate %q: invalid_token %v, want %v", ch, got, invalidToken)
	}
}

func req(auth string) *http.Request {
	r := httptest.NewRequest("GET", "/v1/operations", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func TestMiddlewareAnonymousWithoutAuthenticator(t *testing.T) {
	h := Middleware(whoami, nil, Options{})
	c := callerOf(t, do(t, h, req("Bearer whatever")))
	if c.Principal != arr.Anonymous || c.Admin {
		t.Errorf("caller %+v, want anonymous", c)
	}
}

func TestMiddlewareRefusals(t *testing.T) {
	keys := testKeys(t, "alice:alice-key-0123456789 tenant=acme\nroot:root-key-0123456789 role=admin\n")
	h := Middleware(whoami, keys, Options{})
	c := callerOf(t, do(t, h, req("Bearer alice-key-0123456789")))
	if c != (arr.Caller{Principal: "alice", Tenant: "acme"}) {
		t.Errorf("alice: %+v", c)
	}
	c = callerOf(t, do(t, h, req("bearer   root-key-0123456789  ")))
	if c != (arr.Caller{Principal: "root", Tenant: "root", Admin: true}) {
		t.Errorf("root: %+v", c)
	}
	for _, tc := range []struct {
		auth    string
		invalid bool
	}{
		{"", false},
		{"Basic YWxpY2U6eA==", false},
		{"Bearer", false},
		{"Bearer wrong-key-0123456789", true},
		{"Bearer alice-key-012345678", true},   // a prefix of a key
		{"Bearer alice-key-01234567890", true}, // a key plus one
		{"Bearer a l i c e", true},
		{"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true}, // JWT-shaped, no JWT authenticator
	} {
		w := do(t, h, req(tc.auth))
		check401(t, w, tc.invalid)
		if strings.Contains(w.Body.String()+w.Header().Get("WWW-Authenticate"), "key-0123") {
			t.Errorf("%q: the answer echoes the key", tc.auth)
		}
	}
}

func TestChain(t *testing.T) {
	no := AuthenticatorFunc(func(*http.Request) (arr.Caller, error) { return arr.Caller{}, ErrNoCredentials })
	bad := AuthenticatorFunc(func(*http.Request) (arr.Caller, error) { return arr.Caller{}, ErrInvalid })
	bob := AuthenticatorFunc(func(*http.Request) (arr.Caller, error) { return arr.Caller{Principal: "bob"}, nil })
	r := req("")
	if c, err := (Chain{no, bob, bad}).Authenticate(r); err != nil || c.Principal != "bob" {
		t.Errorf("no, bob, bad: %v %v", c, err)
	}
	if _, err := (Chain{no, bad, bob}).Authenticate(r); !errors.Is(err, ErrInvalid) {
		t.Errorf("no, bad, bob: %v, want ErrInvalid (a bad credential is not passed over)", err)
	}
	if _, err := (Chain{no, no}).Authenticate(r); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("no, no: %v", err)
	}
	if _, err := (Chain{}).Authenticate(r); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("empty: %v", err)
	}
	// A caller that is not a valid arr.Caller is refused by the middleware.
	ctl := AuthenticatorFunc(func(*http.Request) (arr.Caller, error) { return arr.Caller{Principal: "a\nb"}, nil })
	check401(t, do(t, Middleware(whoami, ctl, Options{}), req("")), false)
}

func TestParseAuthorization(t *testing.T) {
	for _, c := range []struct {
		in, scheme, cred string
		ok               bool
	}{
		{"Bearer abc", "Bearer", "abc", true},
		{"  bearer \t abc  ", "bearer", "abc", true},
		{"Bearer", "Bearer", "", true},
		{"Basic a b", "Basic", "a b", true},
		{"", "", "", false},
		{"   ", "", "", false},
		{"Bea(rer x", "", "", false},
		{"Bearer a\x00b", "", "", false},
		{"Bearer a\rb", "", "", false},
	} {
		s, cr, ok := ParseAuthorization(c.in)
		if s != c.scheme || cr != c.cred || ok != c.ok {
			t.Errorf("ParseAuthorization(%q) = %q, %q, %v; want %q, %q, %v", c.in, s, cr, ok, c.scheme, c.cred, c.ok)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x==", "Basic YTpi", "", " ", "Bearer a\x00", "Bearer eyJ.a.b", "\xff Bearer"} {
		f.Add(s)
	}
	keys := NewAPIKeys(mustParse(f, "alice:alice-key-0123456789\n"))
	h := Middleware(whoami, keys, Options{})
	f.Fuzz(func(t *testing.T, h0 string) {
		scheme, cred, ok := ParseAuthorization(h0)
		if ok {
			if !isToken(scheme) || strings.TrimSpace(cred) != cred && strings.Trim(cred, " \t") != cred {
				t.Fatalf("%q → %q %q", h0, scheme, cred)
			}
		} else if scheme != "" || cred != "" {
			t.Fatalf("%q: not ok but %q %q", h0, scheme, cred)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h0}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 && w.Code != 401 {
			t.Fatalf("%q: status %d", h0, w.Code)
		}
		if w.Code == 200 && !strings.Contains(h0, "alice-key-0123456789") {
			t.Fatalf("%q authenticated", h0)
		}
	})
}

func TestProxyHeader(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	p := &Proxy{Header: "X-Remote-User", TenantHeader: "X-Remote-Tenant", Trusted: trusted, Admins: []string{"root"}}
	h := Middleware(whoami, p, Options{})
	mk := func(remote string, hdr map[string][]string) *http.Request {
		r := httptest.NewRequest("GET", "/v1/operations", nil)
		r.RemoteAddr = remote
		for k, v := range hdr {
			r.Header[http.CanonicalHeaderKey(k)] = v
		}
		return r
	}
	c := callerOf(t, do(t, h, mk("10.2.3.4:5000", map[string][]string{"X-Remote-User": {"alice"}, "X-Remote-Tenant": {"acme"}})))
	if c != (arr.Caller{Principal: "alice", Tenant: "acme"}) {
		t.Errorf("from a trusted proxy: %+v", c)
	}
	c = callerOf(t, do(t, h, mk("127.0.0.1:1", map[string][]string{"X-Remote-User": {"root"}})))
	if c != (arr.Caller{Principal: "root", Tenant: "root", Admin: true}) {
		t.Errorf("root: %+v", c)
	}
	for name, r := range map[string]*http.Request{
		"untrusted peer":    mk("192.168.1.5:5000", map[string][]string{"X-Remote-User": {"alice"}}),
		"untrusted loop":    mk("127.0.0.2:5000", map[string][]string{"X-Remote-User": {"root"}}),
		"trusted, no hdr":   mk("10.0.0.1:1", nil),
		"trusted, empty":    mk("10.0.0.1:1", map[string][]string{"X-Remote-User": {""}}),
		"trusted, repeated": mk("10.0.0.1:1", map[string][]string{"X-Remote-User": {"alice", "root"}}),
		"trusted, control":  mk("10.0.0.1:1", map[string][]string{"X-Remote-User": {"al\x01ice"}}),
	} {
		t.Run(name, func(t *testing.T) { check401(t, do(t, h, r), false) })
	}
}

func testKeys(t testing.TB, content string) *APIKeys {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	k, _, err := LoadAPIKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustParse(t testing.TB, content string) *KeySet {
	t.Helper()
	s, _, err := ParseKeys("keys", strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
