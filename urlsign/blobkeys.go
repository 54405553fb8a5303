package urlsign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// DefaultCreateSettle is BlobOptions.CreateSettle's default.
const DefaultCreateSettle = 200 * time.Millisecond

// BlobOptions configure BlobKeys.
type BlobOptions struct {
	// Name names the keyring object in errors, e.g. "s3://bucket/key".
	// Default: the object's key.
	Name string
	// IfMatch makes a write conditional on the object still having the
	// ETag etag, through the bucket driver's own request type: it is
	// called from blob.WriterOptions.BeforeWrite with its asFunc (see
	// https://gocloud.dev/concepts/as/). Required to replace a keyring
	// (rotation); without it Store refuses to.
	IfMatch func(asFunc func(any) bool, etag string) error
	// IsConflict reports whether err, of a conditional write, means that
	// another writer got there first, for the codes a driver does not map
	// to gcerrors.FailedPrecondition (S3 answers 409 to conditional
	// writes racing each other). Default: none besides
	// FailedPrecondition.
	IsConflict func(err error) bool
	// CreateSettle is how long Store pauses after creating the keyring
	// (or losing the creation to another process), so that on a server
	// that does not apply the creation's condition atomically the last
	// write, which is the one that stays, has landed when the creator
	// reads the keyring back. Default: DefaultCreateSettle (200 ms).
	CreateSettle time.Duration
}

// BlobKeys keeps a keyring in one object of a gocloud.dev/blob bucket,
// JSON, so that every process opening the bucket signs and verifies with
// the same keys. A keyring's version is the object's ETag.
//
// The creation is a conditional write (IfNotExist, If-None-Match: * on
// S3), so of processes creating it at once exactly one wins; every one of
// them pauses CreateSettle and reads back the stored keyring. On a server
// that ignores the condition or does not apply it atomically, two
// processes may both write: each adopts what it reads back after the
// pause, so they agree unless one write lands more than that pause after
// another process's read-back; a signer's periodic reload then brings
// every process to the stored keyring within its ReloadInterval, and the
// URLs signed in between with the lost keyring are refused. A replacement
// is conditional on the ETag read (BlobOptions.IfMatch). Anyone who can
// read the object can sign URLs: protect it as the results themselves.
type BlobKeys struct {
	bucket *blob.Bucket
	key    string
	opts   BlobOptions
}

var _ Keys = (*BlobKeys)(nil)

// NewBlobKeys returns the BlobKeys of the object key in bucket. It owns
// bucket: Close closes it.
func NewBlobKeys(bucket *blob.Bucket, key string, opts BlobOptions) *BlobKeys {
	if opts.Name == "" {
		opts.Name = key
	}
	if opts.CreateSettle == 0 {
		opts.CreateSettle = DefaultCreateSettle
	}
	return &BlobKeys{bucket: bucket, key: key, opts: opts}
}

func (b *BlobKeys) String() string { return b.opts.Name }

// Load implements Keys: an attributes request (HEAD) gives the ETag, and
// the object is read only when it differs from ifChanged. The version
// returned may be older than the bytes read (a write landing in between),
// never newer: a Store with it then conflicts and a reload reads again.
func (b *BlobKeys) Load(ctx context.Context, ifChanged string) (*Keyring, string, error) {
	a, err := b.bucket.Attributes(ctx, b.key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, "", fmt.Errorf("%w: %s", ErrNoKeyring, b)
	}
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: reading keyring %s: %w", b, err)
	}
	if ifChanged != "" && a.ETag == ifChanged {
		return nil, "", ErrUnchanged
	}
	r, err := b.bucket.NewReader(ctx, b.key, nil)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, "", fmt.Errorf("%w: %s", ErrNoKeyring, b)
	}
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: reading keyring %s: %w", b, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxLen+1))
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: reading keyring %s: %w", b, err)
	}
	kr, err := Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: keyring %s: %v", b, err)
	}
	return kr, a.ETag, nil
}

// Store implements Keys with a conditional write: IfNotExist for a
// creation (which then pauses CreateSettle), BlobOptions.IfMatch for a
// replacement.
func (b *BlobKeys) Store(ctx context.Context, kr *Keyring, version string) error {
	data, err := kr.Marshal()
	if err != nil {
		return err
	}
	wo := &blob.WriterOptions{ContentType: "application/json", CacheControl: "no-store", DisableContentTypeDetection: true}
	if version == "" {
		wo.IfNotExist = true
	} else {
		if b.opts.IfMatch == nil {
			return fmt.Errorf("urlsign: keyring %s: the bucket's driver has no conditional replacement (BlobOptions.IfMatch)", b)
		}
		wo.BeforeWrite = func(as func(any) bool) error { return b.opts.IfMatch(as, version) }
	}
	err = b.bucket.Upload(ctx, b.key, bytes.NewReader(data), wo)
	if err != nil && (gcerrors.Code(err) == gcerrors.FailedPrecondition || b.opts.IsConflict != nil && b.opts.IsConflict(err)) {
		err = ErrConflict
	} else if err != nil {
		err = fmt.Errorf("urlsign: writing keyring %s: %w", b, err)
	}
	if version == "" && (err == nil || errors.Is(err, ErrConflict)) {
		select {
		case <-time.After(b.opts.CreateSettle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// Close closes the bucket.
func (b *BlobKeys) Close() error { return b.bucket.Close() }
