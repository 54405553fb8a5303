// Package driver defines the interface a result store driver implements.
// Users use the portable type in package resultstore; every driver must pass
// the conformance suite in package resultstore/resultstoretest.
package driver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// ErrNotFound: no result has that key.
var ErrNotFound = errors.New("resultstore: not found")

// Attributes describe a stored result.
type Attributes struct {
	ContentType string
	Size        int64
	// ETag is a strong entity tag, quoted, e.g. `"5d41402abc4b2a76"`.
	ETag    string
	ModTime time.Time
}

// Reader reads a stored result; it supports Seek for range requests.
type Reader interface {
	io.ReadSeekCloser
	Attributes() Attributes
}

// Store keeps result bytes and hands out signed, expiring URLs to them.
// Every method is safe for concurrent use.
type Store interface {
	// Put stores the bytes under key, replacing any earlier value, and is
	// durable when it returns nil: a reader never sees a partial value.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error)
	// Open returns a reader of the stored bytes, or ErrNotFound.
	Open(ctx context.Context, key string) (Reader, error)
	// Delete removes the result; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// SignedURL returns a URL that lets anyone holding it GET the bytes until
	// expiry, and nothing else. The URL may be relative (path and query
	// only) when the driver serves it itself through Handler; the caller
	// resolves it against its public base URL. Every query parameter is
	// covered by the signature: changing or dropping any of them, or moving
	// them to another key's path, gets the URL refused. An expiry in the
	// past gives a URL that is refused when used (drivers that do not serve
	// their own URLs may instead return an error).
	SignedURL(ctx context.Context, key string, expiry time.Time) (string, error)
	Close() error
}

// Server is implemented by drivers that serve their own signed URLs (the
// file driver). Handler serves GET and HEAD of signed URLs under Prefix,
// refusing with 403 any URL that is not validly signed and unexpired, with
// 404 a validly signed URL whose result is gone, and with 405 other
// methods; refusals are application/problem+json. Prefix begins and ends
// with "/". Mount Handler with the request path unchanged:
// mux.Handle(Prefix(), Handler()), not under http.StripPrefix.
type Server interface {
	Prefix() string
	Handler() http.Handler
}

// LazyPutter is implemented by result stores that live in the same engine
// as another port's driver (the embedded database holds operations, queue
// and results): PutLazy stores the bytes without waiting for them to be
// durable, and the next durable write through the other driver makes them
// durable. SyncedBy reports whether that holds for other, a driver of
// another port.
type LazyPutter interface {
	PutLazy(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error)
	SyncedBy(other any) bool
}
