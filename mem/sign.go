package mem

import (
	"net/http"
	"time"

	"github.com/arrhq/arr/internal/urlsign"
	"github.com/arrhq/arr/resultstore/fileresult"
)

// URL signing, kept apart from the rest of the result store so that it
// can move to a signing port of its own. The URLs are the file driver's
// (see resultstore/fileresult), under this driver's own MAC domain:
//
//	<prefix><key, each segment path-escaped>?se=<expiry, unix seconds>&kid=<key id>&sig=<signature>
//
// signed with the engine's keyring, which is made from crypto/rand with
// the engine and never leaves memory: the URLs of an engine are valid on
// every handle of that engine, and die with it.

// macDomain separates this driver's signatures from other drivers'.
const macDomain = "arr-mem-url-v1"

// signer signs and verifies the URLs of one result store handle.
type signer struct {
	ring   *urlsign.Keyring
	scheme urlsign.Scheme
	prefix string
}

func newSigner(ring *urlsign.Keyring, prefix string, maxLifetime time.Duration) signer {
	// ExactQuery: nothing but se, kid and sig in the query.
	return signer{ring: ring, prefix: prefix,
		scheme: urlsign.Scheme{Domain: macDomain, MaxLifetime: maxLifetime, ExactQuery: true}}
}

// sign returns the relative URL of key, expiring at expiry.
func (s signer) sign(key string, expiry time.Time) string {
	return s.prefix + urlsign.EscapeKey(key) + "?" + s.scheme.Sign(s.ring.Active(), key, expiry.Unix())
}

// verify checks the signed URL of r and returns its key and expiry (see
// urlsign.Scheme.Verify).
func (s signer) verify(r *http.Request, now time.Time) (string, time.Time, error) {
	return s.scheme.VerifyRequest(r, s.prefix, fileresult.ValidateKey, now, s.ring.Key)
}
