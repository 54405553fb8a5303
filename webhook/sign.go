package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	// HeaderID carries the event's id, the same on every attempt: a
	// receiver uses it to drop duplicates.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the attempt's time, in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries one or more space-separated "v1,<base64>"
	// signatures.
	HeaderSignature = "webhook-signature"
)

// SecretPrefix begins every secret in its text form.
const SecretPrefix = "whsec_"

// Secret sizes, in bytes of key: NewSecret makes SecretSize; ParseSecret
// accepts MinSecretSize to MaxSecretSize, the range the specification sets.
const (
	SecretSize    = 32
	MinSecretSize = 24
	MaxSecretSize = 64
)

// DefaultTolerance is how far a webhook-timestamp may be from the
// receiver's clock, either way, when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// deriveLabel separates DeriveSecret's keys from every other use of the
// master key. It must never change: it would change every derived secret.
const deriveLabel = "arr webhook secret v1\x00"

// Errors of Verify (wrapped, with details).
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or
	// webhook-signature is absent or empty.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrTimestamp: webhook-timestamp is not Unix seconds, or is further
	// from now than the tolerance.
	ErrTimestamp = errors.New("webhook: bad timestamp")
	// ErrSignature: no v1 signature in webhook-signature matches.
	ErrSignature = errors.New("webhook: no matching signature")
	// ErrSecret: a secret is not in the whsec_ form (ParseSecret).
	ErrSecret = errors.New("webhook: bad secret")
)

// NewSecret returns a new random secret (SecretSize bytes from crypto/rand)
// in its text form, "whsec_" followed by the key in standard base64: the
// form shown to an administrator and read by ParseSecret.
func NewSecret() string {
	key := make([]byte, SecretSize)
	rand.Read(key) // never fails (crypto/rand.Read crashes the program rather than returning an error)
	return FormatSecret(key)
}

// FormatSecret renders a key in the secret text form ("whsec_" + standard
// base64), as for a key DeriveSecret gives.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseSecret reads a secret in its text form and returns its key. Spaces
// around it are ignored; the prefix is required (so that a secret of another
// kind is not taken for one), and the key must be MinSecretSize to
// MaxSecretSize bytes. The error wraps ErrSecret and never contains the
// secret.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: it does not begin with %s", ErrSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: what follows %s is not standard base64", ErrSecret, SecretPrefix)
	}
	if len(key) < MinSecretSize || len(key) > MaxSecretSize {
		return nil, fmt.Errorf("%w: its key has %d bytes, not %d to %d", ErrSecret, len(key), MinSecretSize, MaxSecretSize)
	}
	return key, nil
}

// DeriveSecret derives a key for scope (say "route:orders" or
// "principal:alice") from a master key: HMAC-SHA256(master, label + scope)
// with a fixed domain-separation label. The same master and scope always
// give the same 32 bytes; different scopes give independent keys, and a key
// reveals nothing of the master nor of another scope's key. Rotating the
// master rotates every derived key.
func DeriveSecret(master []byte, scope string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(deriveLabel))
	m.Write([]byte(scope))
	return m.Sum(nil)
}

// Sign returns the webhook-signature header value for an event: one
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" per key, separated by
// spaces, where timestamp is ts in Unix seconds. Signing with the new and
// the old key during a rotation lets a receiver that knows either verify.
// It returns "" for no key.
//
// id must be the sender's own (not chosen by a caller) and contain no ".",
// as the specification requires.
func Sign(id string, ts time.Time, body []byte, keys ...[]byte) string {
	sigs := make([]string, len(keys))
	for i, key := range keys {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three Standard Webhooks headers of h for an event
// sent at ts: webhook-id, webhook-timestamp and webhook-signature (Sign).
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, keys ...[]byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(id, ts, body, keys...))
}

// b64std reads signatures: standard base64, padded, canonical (so that a
// signature has one spelling).
var b64std = base64.StdEncoding.Strict()

func mac(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received webhook: h must carry webhook-id,
// webhook-timestamp (Unix seconds, digits only, within tolerance of now
// either way; tolerance ≤ 0 means DefaultTolerance) and webhook-signature
// with at least one v1 signature that is HMAC-SHA256(key, id.timestamp.body),
// compared in constant time. Signatures of other versions (v1a, …) are
// skipped. It returns nil or an error wrapping ErrMissingHeader,
// ErrTimestamp or ErrSignature.
//
// Verify does not remember ids: a receiver that must not act twice on the
// same event keeps the webhook-ids it has seen for at least twice the
// tolerance.
func Verify(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	switch {
	case id == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderID)
	case ts == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(ts) > 12 || strings.Trim(ts, "0123456789") != "" {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrTimestamp, HeaderTimestamp)
	}
	secs, _ := strconv.ParseInt(ts, 10, 64)
	if d := now.Sub(time.Unix(secs, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s is %s away from now, more than %s", ErrTimestamp, HeaderTimestamp, d.Abs().Truncate(time.Second), tolerance)
	}
	want := mac(key, id, ts, body)
	var buf [48]byte
	for sig := range strings.FieldsSeq(sigs) {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" || b64std.DecodedLen(len(b64)) > len(buf) {
			continue
		}
		n, err := b64std.Decode(buf[:], []byte(b64))
		if err == nil && hmac.Equal(buf[:n], want) {
			return nil
		}
	}
	return ErrSignature
}
