// Package urlsign is the port of signed result URLs: short-lived URLs
// that let anyone holding one read one result, and nothing else, over any
// result store (package resultstore). The portable type is Signer, over a
// Driver. The engine of a result store hands out its signer (package
// engine: Engine.Signer), opened from the same URL, e.g.
// "file:./arr-data/results" (resultstore/fileresult),
// "embedded:./arr-data/db" (embedded), "s3://bucket?…"
// (resultstore/s3result) or "azblob://container?…"
// (resultstore/azblobresult); this package imports none of them.
//
// The driver here is HMAC: arr signs the URLs itself with rotating
// keys from a keyring (see Keys: in a file, in a blob object, in memory)
// and serves them through Signer.Handler, from the result store's bytes
// or, when the store's driver presigns (resultstore/driver.Presigner), by
// redirecting to the backend's own short-lived URL. Other drivers sign
// URLs that their backend serves (resultstore/azblobresult: Azure user
// delegation SAS URLs); their signers have no Handler.
//
// # URL format
//
//	<prefix><key, each segment path-escaped>?se=<expiry, unix seconds>&kid=<key id>&sig=<signature>
//
// where sig is the unpadded base64url (RFC 4648 §5) HMAC-SHA256, under the
// secret of the key named kid, of
//
//	<domain> 0x00 "GET" 0x00 kid 0x00 se 0x00 key
//
// with the key unescaped. "GET" is the read-only method class (GET and
// HEAD). The domain is the opener's: FileDomain for the file and embedded
// stores, "arr-s3result-url-v1" for S3; it never changes, so URLs signed
// before keep working. The prefix defaults to DefaultPrefix ("/blobs/").
// See Scheme.Verify for what verification refuses.
//
// # Keyring format
//
// A keyring is JSON:
//
//	{"version": 1, "active": "<kid>", "keys": [
//	  {"id": "<16 hex digits>", "secret": "<base64 of 32 random bytes>",
//	   "created": "<RFC 3339>", "retired": "<RFC 3339, once rotated out>"}]}
//
// The active key signs; every listed key verifies. It is generated from
// crypto/rand when a signer opens a location that has none. RotateKeys adds
// a new active key, marks the previous one retired, and prunes keys retired
// more than the maximum URL lifetime + KeyRetentionSlack ago, when every
// URL they signed has expired. Key material is never logged nor put in
// errors.
package urlsign

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/arrhq/arr/resultstore"
)

// Driver signs URLs for a Signer. Its methods are safe for concurrent use.
type Driver interface {
	// SignedURL returns a URL that lets anyone holding it GET (or HEAD)
	// the result of key until expiry, and nothing else; key has passed the
	// result store's validation. The URL may be relative (path and query
	// only) when the driver is a Verifier, whose URLs the Signer serves.
	// Every query parameter is covered by the signature: changing,
	// dropping or duplicating any of them, or moving them to another key's
	// path, gets the URL refused. An expiry in the past gives a URL that is
	// refused when used (drivers whose URLs point elsewhere may instead
	// return an error).
	SignedURL(ctx context.Context, key string, expiry time.Time) (string, error)
	// Close releases the driver.
	Close() error
}

// Verifier is implemented by drivers whose URLs arr serves itself.
type Verifier interface {
	// Prefix is the URL path under which the URLs lie; it begins and ends
	// with "/".
	Prefix() string
	// Verify checks the signed URL of r and returns its result key and
	// expiry: nil when it is validly signed for a key validKey accepts and
	// unexpired; an error wrapping ErrExpired (with the expiry) when it is
	// valid but expired; an error wrapping ErrBadSignature otherwise.
	Verify(r *http.Request, validKey func(string) error) (key string, expiry time.Time, err error)
}

// TypedDriver is implemented by drivers whose URLs name the result's
// content type (Azure's user delegation SAS carries the download's file
// name, whose extension comes from it), so that they need not read it from
// the store: SignedURLTyped is SignedURL told the content type the result
// was stored with (never "").
type TypedDriver interface {
	SignedURLTyped(ctx context.Context, key, contentType string, expiry time.Time) (string, error)
}

// Rotator is implemented by drivers with rotating keys.
type Rotator interface {
	// RotateKeys makes a new key sign from now on; URLs signed before keep
	// working until they expire.
	RotateKeys(ctx context.Context) error
}

// ErrTooLong is wrapped by the error of a SignedURL whose expiry is
// further ahead than the signer allows (see Signer.SetMaxTTL and
// HMACOptions.MaxURLLifetime).
var ErrTooLong = errors.New("urlsign: expiry beyond the longest URL lifetime")

// MaxTTLSkew is how much later than now + the signer's MaxTTL a URL may
// expire and still be served: the clock skew allowed between the process
// that signed it and the one that serves it.
const MaxTTLSkew = time.Minute

// Signer is the portable URL signer for one result store.
type Signer struct {
	d       Driver
	results *resultstore.Store
	maxTTL  atomic.Int64 // a time.Duration; 0: no bound but the driver's
}

// lifetimeLimiter is implemented by drivers whose own bound on URL
// lifetimes can be lowered (HMAC).
type lifetimeLimiter interface{ LimitURLLifetime(time.Duration) }

// New returns a Signer that signs URLs to results with d. Drivers'
// openers call it. Close closes d, not results.
func New(d Driver, results *resultstore.Store) *Signer {
	return &Signer{d: d, results: results}
}

// Driver returns the driver under s.
func (s *Signer) Driver() Driver { return s.d }

// SignedURL returns a URL that lets anyone holding it GET (or HEAD) the
// result of key until expiry, and nothing else (see Driver.SignedURL). A
// relative URL (path and query) is served by Handler; the caller resolves
// it against its public base URL. A key the result store refuses is an
// error (wrapping the store's invalid-key error). It does not check that
// the result exists.
func (s *Signer) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	if err := s.check(key, expiry); err != nil {
		return "", err
	}
	return s.d.SignedURL(ctx, key, expiry)
}

// SignedURLTyped is SignedURL for a result stored with contentType (""
// when not known): a driver whose URLs name it (a TypedDriver) is told it
// rather than reading it from the store. The core calls it with the
// content type its record of the result holds.
func (s *Signer) SignedURLTyped(ctx context.Context, key, contentType string, expiry time.Time) (string, error) {
	if err := s.check(key, expiry); err != nil {
		return "", err
	}
	if td, ok := s.d.(TypedDriver); ok && contentType != "" {
		return td.SignedURLTyped(ctx, key, contentType, expiry)
	}
	return s.d.SignedURL(ctx, key, expiry)
}

// check is what SignedURL refuses before the driver signs.
func (s *Signer) check(key string, expiry time.Time) error {
	if err := s.results.ValidateKey(key); err != nil {
		return err
	}
	if m := s.MaxTTL(); m > 0 && expiry.After(time.Now().Add(m)) {
		return fmt.Errorf("urlsign: signed URL for %q: expiry %s is more than %v ahead: %w", key, expiry.UTC().Format(time.RFC3339), m, ErrTooLong)
	}
	return nil
}

// SetMaxTTL bounds the lifetime of s's URLs to d, from now on: the
// longest result URL lifetime the program configures (package server
// sets the longest ResultURLTTL of its routes and its default), so that
// a URL outliving every configured lifetime, such as one minted with a
// leaked key, is refused. SignedURL then refuses an expiry more than d
// ahead (an error wrapping ErrTooLong), and Handler answers 403, as for a
// bad signature, to a validly signed URL that expires more than d +
// MaxTTLSkew after now. A driver with its own bound (HMAC's
// MaxURLLifetime) has it lowered to d too, so that its Verify refuses
// such URLs as well. A d of zero or less removes the bound (the driver's
// own stays).
func (s *Signer) SetMaxTTL(d time.Duration) {
	s.maxTTL.Store(int64(max(d, 0)))
	if l, ok := s.d.(lifetimeLimiter); ok {
		l.LimitURLLifetime(d)
	}
}

// MaxTTL returns the bound SetMaxTTL set, or 0.
func (s *Signer) MaxTTL() time.Duration { return time.Duration(s.maxTTL.Load()) }

// Handler returns the handler that serves the signer's URLs and the path
// prefix it serves, or a nil handler when the driver's URLs point
// elsewhere. Mount it with the request path unchanged:
// mux.Handle(prefix, h), not under http.StripPrefix.
//
// Only GET and HEAD are served (others: 405, with Allow: GET, HEAD). A URL
// that is malformed, not validly signed, expired or expiring later than
// SetMaxTTL allows gets 403; a validly
// signed URL for a result that does not exist gets 404; refusals are
// application/problem+json with Cache-Control: no-store and
// X-Content-Type-Options: nosniff (see WriteProblem).
//
// When the result store's driver is a driver.Presigner (S3), a valid URL
// of an existing result gets "307 Temporary Redirect" to the backend's
// presigned URL for the request's method, which ends no later than the
// arr URL, with Cache-Control: no-store, Referrer-Policy: no-referrer,
// X-Content-Type-Options: nosniff and no body; a store that fails gets 502
// (ProblemStoreUnavailable). HTTP clients follow a 307 with the same
// method and headers, so Range and conditional requests are answered by
// the backend.
//
// Otherwise the bytes are served with http.ServeContent, so Range,
// If-Range, If-None-Match and If-Modified-Since work, with the stored
// Content-Type and ETag, Cache-Control "private, max-age=<seconds until the
// URL expires>", X-Content-Type-Options: nosniff, a Content-Security-Policy
// that runs nothing (sandbox), and Referrer-Policy: no-referrer. Every
// result gets "Content-Disposition: attachment" with DownloadName as file
// name, so that a browser opening the URL downloads the data and never
// renders it on arr's origin. A result that cannot be read gets 500
// (ProblemInternal).
func (s *Signer) Handler() (prefix string, h http.Handler) {
	v, ok := s.d.(Verifier)
	if !ok {
		return "", nil
	}
	return v.Prefix(), &handler{v: v, results: s.results, maxTTL: s.MaxTTL}
}

// RotateKeys rotates the driver's keys (see Rotator), or fails when the
// driver has none.
func (s *Signer) RotateKeys(ctx context.Context) error {
	r, ok := s.d.(Rotator)
	if !ok {
		return errors.New("urlsign: the driver has no keys to rotate")
	}
	return r.RotateKeys(ctx)
}

// Close closes the driver; the result store stays open.
func (s *Signer) Close() error { return s.d.Close() }
