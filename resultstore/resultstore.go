// Package resultstore is the portable result store: result bytes with a
// content type. (Signed expiring URLs to read them are package urlsign's,
// over a Store.) An engine hands one out (see package engine), e.g. the
// engine of "file:./arr-data/results" (package resultstore/fileresult),
// "s3://bucket?…" (resultstore/s3result) or "embedded:./arr-data/db"
// (package embedded).
package resultstore

import (
	"context"
	"fmt"
	"io"

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

// New wraps a driver. Engines call it (see package engine).
func New(d driver.Store) *Store { return &Store{d: d} }

// Driver returns the driver under s.
func (s *Store) Driver() driver.Store { return s.d }

// Put: see driver.Store.Put.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error) {
	return s.d.Put(ctx, key, r, contentType)
}

// PutLazy is Put without waiting for the bytes to be durable when the
// driver can (driver.LazyPutter), and Put otherwise. Call it only when a
// durable write through the same engine's other port follows before the
// result is relied on (see engine.Caps.ResultsInLog).
func (s *Store) PutLazy(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error) {
	if l, ok := s.d.(driver.LazyPutter); ok {
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
