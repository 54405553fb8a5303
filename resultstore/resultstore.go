// Package resultstore is the portable result store: result bytes with a
// content type. (Signed expiring URLs to read them are package urlsign's,
// over a Store.) Open one with
// OpenStore from a URL whose scheme a driver registered, e.g.
// "file:./arr-data/results" (package resultstore/fileresult) or
// "embedded:./arr-data/db" (package embedded).
package resultstore

import (
	"context"
	"fmt"
	"io"

	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/resultstore/driver"
)

// Types and errors of the store.
type (
	Attributes = driver.Attributes
	Reader     = driver.Reader
)

// ErrNotFound: no result has that key.
var ErrNotFound = driver.ErrNotFound

// Store is the portable result store over a driver.
type Store struct {
	d driver.Store
}

// New wraps a driver. Drivers' openers call it.
func New(d driver.Store) *Store { return &Store{d: d} }

var mux = urlmux.New[*Store]("resultstore")

// Register makes OpenStore open URLs of scheme with o.
func Register(scheme string, o urlmux.Opener[*Store]) { mux.Register(scheme, o) }

// OpenStore opens the store a URL names.
func OpenStore(ctx context.Context, urlstr string) (*Store, error) { return mux.Open(ctx, urlstr) }

// Driver returns the driver under s.
func (s *Store) Driver() driver.Store { return s.d }

// Put: see driver.Store.Put.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error) {
	return s.d.Put(ctx, key, r, contentType)
}

// PutSyncedBy is Put, except that when durable writes through syncedBy (a
// driver of another port, such as the operations store's) also make this
// store's writes durable (driver.LazyPutter), it returns without waiting
// for durability. The caller must then make a durable write through
// syncedBy before relying on the result, as the worker does by recording
// the operation's success.
func (s *Store) PutSyncedBy(ctx context.Context, key string, r io.Reader, contentType string, syncedBy any) (Attributes, error) {
	if l, ok := s.d.(driver.LazyPutter); ok && l.SyncedBy(syncedBy) {
		return l.PutLazy(ctx, key, r, contentType)
	}
	return s.Put(ctx, key, r, contentType)
}

// Open: see driver.Store.Open.
func (s *Store) Open(ctx context.Context, key string) (Reader, error) { return s.d.Open(ctx, key) }

// Delete: see driver.Store.Delete.
func (s *Store) Delete(ctx context.Context, key string) error { return s.d.Delete(ctx, key) }

// ValidateKey returns nil if the store accepts key: the driver's
// driver.KeyValidator decides, and without one every non-empty key is
// accepted (the empty key is refused with an error wrapping
// ErrInvalidKey). It does no I/O.
func (s *Store) ValidateKey(key string) error {
	if v, ok := s.d.(driver.KeyValidator); ok {
		return v.ValidateKey(key)
	}
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	return nil
}

// Close closes the driver.
func (s *Store) Close() error { return s.d.Close() }
