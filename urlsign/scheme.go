package urlsign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SigLen is the length of a URL's sig parameter: unpadded base64 of a
// SHA-256 HMAC.
const SigLen = 43

// Reasons a signed URL is refused. Their texts are the details of the
// problem responses (see WriteRefusal).
var (
	ErrBadSignature = errors.New("the URL's signature is missing, malformed or not valid")
	ErrExpired      = errors.New("the URL has expired")
)

// Scheme is how one driver signs and verifies URLs.
type Scheme struct {
	// Domain separates the signatures of one driver from another's: a
	// URL signed under one domain never verifies under another, even
	// with the same keyring. It is part of every signature, so it must
	// never change for a driver (e.g. "arr-fileresult-url-v1").
	Domain string
	// MaxLifetime is the longest lifetime of a URL. Verify refuses a URL
	// that expires more than MaxLifetime (+1 minute for clock skew) after
	// now, or after the time its key was retired.
	MaxLifetime time.Duration
	// ExactQuery makes Verify refuse any query but exactly the three
	// name=value parameters se, kid and sig: nothing added, even empty.
	// Without it, parameters other than se, kid and sig are ignored.
	ExactQuery bool
}

// mac is the HMAC-SHA256, with k's secret, of the NUL-separated domain,
// method "GET", key id, expiry (decimal Unix seconds) and result key.
func (sc Scheme) mac(k *Key, key, se string) []byte {
	m := hmac.New(sha256.New, k.Secret)
	for i, part := range []string{sc.Domain, "GET", k.ID, se, key} {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(part))
	}
	return m.Sum(nil)
}

// Sign returns the query of a URL for the result key, expiring at se (Unix
// seconds), signed with k: "se=<se>&kid=<k.ID>&sig=<signature>".
func (sc Scheme) Sign(k *Key, key string, se int64) string {
	ses := strconv.FormatInt(se, 10)
	return "se=" + ses + "&kid=" + k.ID + "&sig=" + base64.RawURLEncoding.EncodeToString(sc.mac(k, key, ses))
}

// Verify checks the raw query of a signed URL for the result key at now.
// The query must hold se, kid and sig exactly once each (see also
// ExactQuery), se in canonical decimal form; the signature is compared in
// constant time. lookup returns the key with an id, or nil; it is called
// only for a well-formed query. Verify returns the expiry and nil when the
// signature is valid and unexpired; the expiry and ErrExpired when it is
// valid but expired; ErrBadSignature for anything else, including a URL
// that would outlive MaxLifetime.
func (sc Scheme) Verify(key, rawQuery string, now time.Time, lookup func(kid string) *Key) (time.Time, error) {
	if sc.ExactQuery {
		// Exactly three name=value parameters: nothing empty or added.
		parts := strings.Split(rawQuery, "&")
		if len(parts) != 3 {
			return time.Time{}, ErrBadSignature
		}
		for _, p := range parts {
			if !strings.Contains(p, "=") {
				return time.Time{}, ErrBadSignature
			}
		}
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil || sc.ExactQuery && len(q) != 3 {
		return time.Time{}, ErrBadSignature
	}
	one := func(name string) (string, bool) {
		v := q[name]
		if len(v) != 1 {
			return "", false
		}
		return v[0], true
	}
	ses, ok1 := one("se")
	kid, ok2 := one("kid")
	sig, ok3 := one("sig")
	if !ok1 || !ok2 || !ok3 || len(sig) != SigLen || !ValidKID(kid) {
		return time.Time{}, ErrBadSignature
	}
	se, err := strconv.ParseInt(ses, 10, 64)
	if err != nil || se <= 0 || strconv.FormatInt(se, 10) != ses {
		return time.Time{}, ErrBadSignature
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return time.Time{}, ErrBadSignature
	}
	k := lookup(kid)
	if k == nil {
		return time.Time{}, ErrBadSignature
	}
	if !hmac.Equal(got, sc.mac(k, key, ses)) {
		return time.Time{}, ErrBadSignature
	}
	exp := time.Unix(se, 0)
	// No URL outlives MaxLifetime: not from now, and not from the time
	// its key stopped signing.
	if exp.After(now.Add(sc.MaxLifetime + time.Minute)) {
		return time.Time{}, ErrBadSignature
	}
	if !k.Retired.IsZero() && exp.After(k.Retired.Add(sc.MaxLifetime+time.Minute)) {
		return time.Time{}, ErrBadSignature
	}
	if !now.Before(exp) {
		return exp, ErrExpired
	}
	return exp, nil
}
