package arr

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/arrhq/arr/urlsign"
)

// Which request headers arr stores with an operation (StoredHeaders):
// every header the client sent except
//
//  1. those whose name is not made of ASCII letters, digits and '-' only
//     (X_Remote_User, say: it would pass for X-Remote-User once mapped to
//     an environment variable or by a proxy that folds '_' to '-');
//  2. the hop-by-hop headers (RFC 9110 §7.6.1): Connection, Keep-Alive,
//     Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, Te,
//     Trailer, Transfer-Encoding, Upgrade, and any header Connection names;
//  3. the headers proxies add: Forwarded, X-Forwarded-*, X-Real-Ip (a
//     forward handler sets its own from the connection);
//  4. credentials: Authorization, Cookie, and any header whose lower-cased
//     name contains "auth", "token", "secret", "passw", "cookie",
//     "session", "signature", "apikey", "api-key" or "access-key", or ends
//     in "-key" (X-Api-Key, X-Auth-Token, X-Operator-Key…), except
//     Idempotency-Key;
//  5. the headers the route names in Route.DropHeaders;
//  6. when the route has an allow-list (Route.KeepHeaders), every header
//     it does not name.
//
// The headers of Route.ForwardCredentials are kept although rule 4 drops
// them (rules 1, 2, 3 and 5 still apply), never in clear: Credentials.Seal encrypts them into the
// SealedHeader entry. A forward gateway thus passes on the caller's
// ordinary headers (Accept, Content-Type, User-Agent, trace context,
// custom X- headers) and no secret it was not told to.

// SealedHeader is the entry of a stored request's Header that holds the
// encrypted credentials of Route.ForwardCredentials (see Credentials). Its
// name is not a valid header name, so that no client header can be
// mistaken for it, and so that exec commands never see it.
const SealedHeader = ":arr-credentials"

// ValidHeaderName reports whether name is made of ASCII letters, digits
// and '-' only (and is not empty): the header names arr stores.
func ValidHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

var hopByHopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true}

// IsHopByHop reports whether name is a hop-by-hop header (RFC 9110
// §7.6.1, and Proxy-Connection).
func IsHopByHop(name string) bool { return hopByHopHeaders[http.CanonicalHeaderKey(name)] }

// IsCredentialHeader reports whether the header name carries a credential
// by arr's rule (rule 4 of StoredHeaders).
func IsCredentialHeader(name string) bool {
	n := strings.ToLower(name)
	switch {
	case n == "idempotency-key":
		return false
	case n == "authorization", n == "cookie", strings.HasSuffix(n, "-key"):
		return true
	}
	for _, s := range []string{"auth", "token", "secret", "passw", "cookie", "session", "signature", "apikey", "api-key", "access-key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// isProxyHeader reports whether name is one proxies add (rule 3).
func isProxyHeader(name string) bool {
	n := strings.ToLower(name)
	return n == "forwarded" || n == "x-real-ip" || strings.HasPrefix(n, "x-forwarded-")
}

// StoredHeaders applies arr's header rule (above) to h for a request to
// rt: stored are the headers to keep in clear, credentials those of
// rt.ForwardCredentials that h has (nil when none), to be sealed. Both are
// new headers with canonical names; the values of a header keep their
// order. h is not modified.
func StoredHeaders(rt *Route, h http.Header) (stored, credentials http.Header) {
	dropped := map[string]bool{} // named by Connection, or by the route
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			dropped[http.CanonicalHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	keep := map[string]bool{}   // sealed
	var allowed map[string]bool // nil: no allow-list
	if rt != nil {
		if len(rt.KeepHeaders) > 0 {
			allowed = map[string]bool{}
			for _, n := range rt.KeepHeaders {
				allowed[http.CanonicalHeaderKey(n)] = true
			}
		}
		for _, n := range rt.DropHeaders {
			dropped[http.CanonicalHeaderKey(n)] = true
		}
		for _, n := range rt.ForwardCredentials {
			keep[http.CanonicalHeaderKey(n)] = true
		}
	}
	stored = http.Header{}
	for name, vs := range h {
		if !ValidHeaderName(name) || len(vs) == 0 {
			continue
		}
		k := http.CanonicalHeaderKey(name)
		switch {
		case IsHopByHop(k) || dropped[k] || isProxyHeader(k):
		case keep[k]:
			if credentials == nil {
				credentials = http.Header{}
			}
			credentials[k] = append(credentials[k], vs...)
		case !IsCredentialHeader(k) && (allowed == nil || allowed[k]):
			stored[k] = append(stored[k], vs...)
		}
	}
	return stored, credentials
}

// checkHeaderNames checks a route's DropHeaders and ForwardCredentials.
func checkHeaderNames(r *Route) error {
	for _, n := range r.DropHeaders {
		if !ValidHeaderName(n) {
			return fmt.Errorf("route %s: DropHeaders: %q is not a header name (letters, digits and '-')", r.Name, n)
		}
	}
	for _, n := range r.KeepHeaders {
		if !ValidHeaderName(n) {
			return fmt.Errorf("route %s: KeepHeaders: %q is not a header name (letters, digits and '-')", r.Name, n)
		}
	}
	for _, n := range r.ForwardCredentials {
		switch {
		case !ValidHeaderName(n):
			return fmt.Errorf("route %s: ForwardCredentials: %q is not a header name (letters, digits and '-')", r.Name, n)
		case IsHopByHop(n):
			return fmt.Errorf("route %s: ForwardCredentials: %s is a hop-by-hop header, addressed to arr", r.Name, n)
		}
	}
	return nil
}

// ErrCredentials is the error of Credentials.Open for sealed credentials
// that cannot be opened: tampered with, moved from another operation, or
// sealed with a key the keyring no longer has.
var ErrCredentials = errors.New("arr: the stored credentials cannot be decrypted")

// Credentials seals (encrypts) the credential headers a route keeps, and
// opens them when a handler needs them. The ciphertext is AES-256-GCM
// under a key derived (HKDF-SHA256) from the active key of a keyring kept
// by a urlsign.Keys (the same machinery as the signing keys, in a keyring
// of its own), with the operation's id as additional data: sealed
// credentials open only for the operation they were sealed for. The key's
// id is part of the sealed text, so that after urlsign.RotateKeys new
// seals use the new key and the old ones still open with the retired key
// (keep retired keys as long as the longest retention: pass it as
// RotateKeys' maxURLLifetime). The keyring is created on first use when
// none is stored. A Credentials is safe for concurrent use.
type Credentials struct {
	keys urlsign.Keys

	mu     sync.Mutex
	kr     *urlsign.Keyring
	ver    string
	loaded time.Time
}

// credentialsReload is how often Seal reloads the keyring to pick up a
// rotation made elsewhere.
const credentialsReload = time.Minute

// sealedPrefix starts every sealed value: the format's version.
const sealedPrefix = "v1."

// NewCredentials returns the Credentials of the keyring keys holds.
func NewCredentials(keys urlsign.Keys) *Credentials { return &Credentials{keys: keys} }

// Load loads the keyring, creating it if none is stored; a server calls
// it at start so that a keyring that cannot be kept stops it there.
func (c *Credentials) Load(ctx context.Context) error {
	_, err := c.keyring(ctx, true)
	return err
}

// keyring returns the keyring, (re)loading it when force or when it is
// older than credentialsReload.
func (c *Credentials) keyring(ctx context.Context, force bool) (*urlsign.Keyring, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kr != nil && !force && time.Since(c.loaded) < credentialsReload {
		return c.kr, nil
	}
	var kr *urlsign.Keyring
	var ver string
	var err error
	if c.kr == nil {
		kr, ver, err = urlsign.LoadOrCreate(ctx, c.keys, time.Now())
	} else {
		kr, ver, err = c.keys.Load(ctx, c.ver)
		if errors.Is(err, urlsign.ErrUnchanged) {
			kr, ver, err = c.kr, c.ver, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("arr: credential keys: %w", err)
	}
	c.kr, c.ver, c.loaded = kr, ver, time.Now()
	return kr, nil
}

func credentialAEAD(k *urlsign.Key) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, k.Secret, nil, "arr credential encryption v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func credentialAD(opID string) []byte { return []byte("arr credentials v1\x00" + opID) }

// Seal encrypts h for the operation opID: "v1.<key id>.<base64url of the
// nonce and ciphertext>".
func (c *Credentials) Seal(ctx context.Context, opID string, h http.Header) (string, error) {
	kr, err := c.keyring(ctx, false)
	if err != nil {
		return "", err
	}
	k := kr.Active()
	aead, err := credentialAEAD(k)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, plain, credentialAD(opID))
	return sealedPrefix + k.ID + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts what Seal made for opID. Its error wraps ErrCredentials
// when the value is malformed, was tampered with, was sealed for another
// operation or with a key the keyring does not have (after reloading it);
// other errors are the keyring's.
func (c *Credentials) Open(ctx context.Context, opID, sealed string) (http.Header, error) {
	rest, ok := strings.CutPrefix(sealed, sealedPrefix)
	kid, data, ok2 := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(data)
	if !ok || !ok2 || err != nil {
		return nil, fmt.Errorf("%w: malformed", ErrCredentials)
	}
	kr, err := c.keyring(ctx, false)
	if err != nil {
		return nil, err
	}
	k := kr.Key(kid)
	if k == nil {
		// Sealed by another process after a rotation this one has not
		// seen yet?
		if kr, err = c.keyring(ctx, true); err != nil {
			return nil, err
		}
		if k = kr.Key(kid); k == nil {
			return nil, fmt.Errorf("%w: key %q is not in the keyring", ErrCredentials, kid)
		}
	}
	aead, err := credentialAEAD(k)
	if err != nil {
		return nil, err
	}
	if len(raw) < aead.NonceSize() {
		return nil, fmt.Errorf("%w: malformed", ErrCredentials)
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], credentialAD(opID))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered with, or not this operation's)", ErrCredentials)
	}
	var h http.Header
	if err := json.Unmarshal(plain, &h); err != nil {
		return nil, fmt.Errorf("%w: malformed", ErrCredentials)
	}
	return h, nil
}
