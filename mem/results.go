package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// blob is a stored result. It is never modified once stored (a Put
// replaces it whole), so readers share its bytes.
type blob struct {
	data  []byte
	attrs rdriver.Attributes
}

// results is a handle on an engine's result store.
type results struct {
	eng    *engine
	held   bool // holds a reference (false: born closed)
	closed atomic.Bool
	once   sync.Once
}

var (
	_ rdriver.Store        = (*results)(nil)
	_ rdriver.KeyValidator = (*results)(nil)
)

// ValidateKey accepts the file store's keys (resultstore.ValidatePathKey),
// so that the engine stands in for it in tests.
func (r *results) ValidateKey(key string) error { return resultstore.ValidatePathKey(key) }

func newResults(eng *engine, held bool) *results {
	r := &results{eng: eng, held: held}
	r.closed.Store(!held)
	return r
}

// withDefaults checks o; urlsign.NewHMAC fills in the defaults.
func (o ResultsOptions) withDefaults() (ResultsOptions, error) {
	if o.Prefix != "" {
		if err := urlsign.ValidatePrefix(o.Prefix); err != nil {
			return o, fmt.Errorf("mem: prefix %q: %v", o.Prefix, err)
		}
	}
	if o.MaxURLLifetime < 0 {
		return o, errors.New("mem: negative MaxURLLifetime")
	}
	return o, nil
}

// checkContentType refuses what cannot be a header value.
func (r *results) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Put stores the bytes of rd under key. Keys are validated as the file
// driver does (resultstore.ValidatePathKey), so that a key this store accepts
// works with the file driver too; an empty content type is stored as
// application/octet-stream.
func (r *results) Put(ctx context.Context, key string, rd io.Reader, contentType string) (rdriver.Attributes, error) {
	if err := resultstore.ValidatePathKey(key); err != nil {
		return rdriver.Attributes{}, err
	}
	contentType, err := resultstore.CheckContentType(contentType)
	if err != nil {
		return rdriver.Attributes{}, fmt.Errorf("mem: %w", err)
	}
	if err := r.begin(ctx); err != nil {
		return rdriver.Attributes{}, err
	}
	data, err := io.ReadAll(rd)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return rdriver.Attributes{}, fmt.Errorf("mem: put %q: %w", key, err)
	}
	sum := sha256.Sum256(data)
	b := &blob{data: data, attrs: rdriver.Attributes{ContentType: contentType, Size: int64(len(data)),
		ETag: `"` + hex.EncodeToString(sum[:]) + `"`, ModTime: time.Now().UTC()}}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return rdriver.Attributes{}, ErrClosed
	}
	eng.blobs[key] = b
	return b.attrs, nil
}

// get returns the blob under key, or ErrNotFound.
func (r *results) get(ctx context.Context, key string) (*blob, error) {
	if err := resultstore.ValidatePathKey(key); err != nil {
		return nil, err
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return nil, ErrClosed
	}
	b := eng.blobs[key]
	if b == nil {
		return nil, fmt.Errorf("%w: %q", rdriver.ErrNotFound, key)
	}
	return b, nil
}

type reader struct {
	*bytes.Reader
	attrs rdriver.Attributes
}

func (rd *reader) Attributes() rdriver.Attributes { return rd.attrs }
func (rd *reader) Close() error                   { return nil }

// Open returns a reader of the result under key as it is now; a later Put
// or Delete does not change what it reads.
func (r *results) Open(ctx context.Context, key string) (rdriver.Reader, error) {
	b, err := r.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &reader{Reader: bytes.NewReader(b.data), attrs: b.attrs}, nil
}

func (r *results) Delete(ctx context.Context, key string) error {
	if err := resultstore.ValidatePathKey(key); err != nil {
		return err
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return ErrClosed
	}
	delete(eng.blobs, key)
	return nil
}

// Close releases the handle's reference to the engine.
func (r *results) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		if r.held {
			r.eng.release()
		}
	})
	return nil
}
