package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Results is the result store of the DB: the bytes are kept in the DB,
// under b<key>, with their content type, a SHA-256 ETag and the time of
// the Put. Keys are path keys (resultstore.ValidatePathKey), as the file
// store's. A Put is one synced batch, so Pebble's commit pipeline groups it with the
// operations' writes into one WAL fsync, where a result file costs two
// fsyncs of its own. A result is held whole in memory while it is written
// and read (one Pebble value); values of any size work, large ones cost
// memory then, and file: suits results of many megabytes better.
type Results struct {
	db     *DB
	once   sync.Once
	closed atomic.Bool
}

var (
	_ driver.Store        = (*Results)(nil)
	_ driver.LazyPutter   = (*Results)(nil)
	_ driver.KeyValidator = (*Results)(nil)
)

func (r *Results) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	return r.db.begin(ErrClosed)
}

// resultRecordV1 is followed by uvarint-length-prefixed content type and
// ETag, the modification time (unix nanos, BE64) and the bytes.
const resultRecordV1 = 1

func encodeResult(data []byte, a driver.Attributes) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(a.ContentType)+len(a.ETag)+8+len(data))
	b = append(b, resultRecordV1)
	b = appendString(b, a.ContentType)
	b = appendString(b, a.ETag)
	b = binary.BigEndian.AppendUint64(b, uint64(a.ModTime.UnixNano()))
	return append(b, data...)
}

// decodeResult returns the bytes (a subslice of v) and the attributes.
func decodeResult(v []byte) ([]byte, driver.Attributes, error) {
	var a driver.Attributes
	if len(v) < 1 || v[0] != resultRecordV1 {
		return nil, a, errCorrupt
	}
	r := &reader{b: v[1:]}
	a.ContentType, a.ETag = r.string(), r.string()
	a.ModTime = time.Unix(0, int64(r.u64())).UTC()
	if r.err != nil {
		return nil, a, r.err
	}
	a.Size = int64(len(r.b))
	return r.b, a, nil
}

// ValidateKey implements driver.KeyValidator: path keys
// (resultstore.ValidatePathKey).
func (r *Results) ValidateKey(key string) error { return resultstore.ValidatePathKey(key) }

// Put stores the bytes of rd under key in one synced batch; see
// driver.Store.Put. An empty contentType is stored as
// resultstore.DefaultContentType.
func (r *Results) Put(ctx context.Context, key string, rd io.Reader, contentType string) (driver.Attributes, error) {
	return r.put(ctx, key, rd, contentType, pebble.Sync)
}

// PutLazy is Put without waiting for the WAL's fsync: the next synced
// write to the DB (the worker's recording of the operation's success)
// makes it durable, as Pebble's WAL is one ordered log.
func (r *Results) PutLazy(ctx context.Context, key string, rd io.Reader, contentType string) (driver.Attributes, error) {
	return r.put(ctx, key, rd, contentType, pebble.NoSync)
}

func (r *Results) put(ctx context.Context, key string, rd io.Reader, contentType string, wo *pebble.WriteOptions) (driver.Attributes, error) {
	if err := r.ValidateKey(key); err != nil {
		return driver.Attributes{}, err
	}
	contentType, err := resultstore.CheckContentType(contentType)
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("embedded: put %q: %w", key, err)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("embedded: put %q: %w", key, err)
	}
	sum := sha256.Sum256(data)
	a := driver.Attributes{ContentType: contentType, Size: int64(len(data)), ETag: `"` + hex.EncodeToString(sum[:]) + `"`,
		ModTime: time.Now().UTC().Truncate(time.Microsecond)}
	if err := r.begin(ctx); err != nil {
		return driver.Attributes{}, err
	}
	defer r.db.end()
	b := r.db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(resultKey(key), encodeResult(data, a), nil)
	if err := b.Commit(wo); err != nil {
		return driver.Attributes{}, fmt.Errorf("embedded: writing result %q: %w", key, err)
	}
	return a, nil
}

// Open reads the value under key into memory and returns a reader of it,
// or an error wrapping driver.ErrNotFound.
func (r *Results) Open(ctx context.Context, key string) (driver.Reader, error) {
	if err := r.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	defer r.db.end()
	v, ok, err := getCopy(r.db.pdb, resultKey(key))
	if err != nil {
		return nil, fmt.Errorf("embedded: reading result %q: %w", key, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q", driver.ErrNotFound, key)
	}
	data, a, err := decodeResult(v)
	if err != nil {
		return nil, fmt.Errorf("embedded: result %q: %w", key, err)
	}
	return &resultReader{Reader: bytes.NewReader(data), attrs: a}, nil
}

type resultReader struct {
	*bytes.Reader
	attrs driver.Attributes
}

func (r *resultReader) Attributes() driver.Attributes { return r.attrs }
func (r *resultReader) Close() error                  { return nil }

// Delete removes key, durably; a missing key is not an error.
func (r *Results) Delete(ctx context.Context, key string) error {
	if err := r.ValidateKey(key); err != nil {
		return err
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	defer r.db.end()
	if err := r.db.pdb.Delete(resultKey(key), pebble.Sync); err != nil {
		return fmt.Errorf("embedded: deleting result %q: %w", key, err)
	}
	return nil
}

// Close releases the reference to the DB.
func (r *Results) Close() error {
	var err error
	r.once.Do(func() {
		r.closed.Store(true)
		err = r.db.release()
	})
	return err
}

func resultKey(k string) []byte { return key(pResult, k) }

// signerParams are the URL parameters of the signer; the DB's URL
// parameters are the others.
var signerParams = []string{"keyFile", "prefix", "maxURLLifetime"}

// openSigner opens the signer of the DB's results (see urlsign.OpenFile):
// URLs signed and served as the file store's, with the keyring at keyFile
// (default: signing-keys.json beside the DB's directory, where
// file:DIR/../results keeps it too, and never inside it), served under
// prefix (default /blobs/), expiring at most maxURLLifetime (a Go
// duration; default 7 days) ahead.
func openSigner(ctx context.Context, db *DB, q url.Values, results *resultstore.Store) (*urlsign.Signer, error) {
	opts := urlsign.FileOptions{Dir: db.dir, KeyFile: q.Get("keyFile"), Prefix: q.Get("prefix")}
	if v := q.Get("maxURLLifetime"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("embedded: URL parameter maxURLLifetime=%q: %v", v, err)
		}
		opts.MaxURLLifetime = d
	}
	return urlsign.OpenFile(ctx, results, opts)
}
