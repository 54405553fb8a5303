// Package driver defines the interface a result store driver implements.
// Users use the portable type in package resultstore; every driver must pass
// the conformance suite in package resultstore/resultstoretest.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// Store keeps result bytes. Every method is safe for concurrent use.
// Signed URLs to the bytes are another port's (package urlsign), which
// works over any Store.
type Store interface {
	// Put stores the bytes under key, replacing any earlier value, and is
	// durable when it returns nil: a reader never sees a partial value.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error)
	// Open returns a reader of the stored bytes, or ErrNotFound.
	Open(ctx context.Context, key string) (Reader, error)
	// Delete removes the result; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	Close() error
}

// KeyValidator is implemented by stores that refuse some keys. ValidateKey
// returns nil for exactly the keys Put, Open and Delete accept (never the
// empty key), else an error; it does no I/O. A URL signer (package urlsign) signs and serves
// only keys the store accepts.
type KeyValidator interface {
	ValidateKey(key string) error
}

// ErrExpired is returned (wrapped) by Presigner.PresignedURL when the end
// it was given has passed.
var ErrExpired = errors.New("resultstore: the URL's end has passed")

// Presigner is implemented by stores whose backend hands out URLs of its
// own (S3's presigned URLs). A URL signer (package urlsign) that has
// verified a request for a result redirects the client to the URL
// PresignedURL returns, so that the bytes go from the backend to the
// client, never through arr.
type Presigner interface {
	// PresignedURL returns an absolute URL of the backend that lets its
	// holder make requests of one method, method (GET or HEAD), for the
	// result under key, and that is refused after end (it may end
	// sooner). A GET of it is answered as a download: with
	// "Content-Disposition: attachment" and the file name
	// urlsign.DownloadName gives. It returns an error wrapping ErrNotFound
	// when there is no result, and one wrapping ErrExpired when end has
	// passed.
	PresignedURL(ctx context.Context, method, key string, end time.Time) (string, error)
}

// LazyPutter is implemented by result stores that live in one log with
// another port of their engine (the embedded database holds operations,
// queue and results): PutLazy stores the bytes without waiting for them to
// be durable, and the next durable write of the engine makes them durable.
// Whether that other write is the caller's to make is the engine's fact
// (engine.Caps.ResultsInLog), not the driver's.
type LazyPutter interface {
	PutLazy(ctx context.Context, key string, r io.Reader, contentType string) (Attributes, error)
}

// SeekPosition is the position a Reader's Seek(offset, whence) moves to,
// from pos in a result of size bytes: the one home of io.Seeker's rule
// for the readers that keep their own position. A position past the end
// is allowed (reads there return io.EOF); a negative one, or an unknown
// whence, is an error.
func SeekPosition(pos, size, offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += pos
	case io.SeekEnd:
		offset += size
	default:
		return pos, fmt.Errorf("resultstore: Seek: invalid whence %d", whence)
	}
	if offset < 0 {
		return pos, errors.New("resultstore: Seek: negative position")
	}
	return offset, nil
}

// SourceReader is what a driver's Put hands its storage library in place
// of the caller's reader: it hides every method of R but Read (so that no
// library takes a shortcut through Seek, WriterTo or Len and reads other
// bytes than the stream's), counts the bytes read (N) and remembers the
// first error other than io.EOF (Err), so that Put can tell the caller's
// failure from the backend's.
type SourceReader struct {
	R   io.Reader
	N   int64
	Err error
}

func (s *SourceReader) Read(p []byte) (int, error) {
	n, err := s.R.Read(p)
	s.N += int64(n)
	if err != nil && err != io.EOF && s.Err == nil {
		s.Err = err
	}
	return n, err
}
