package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/arrhq/arr/resultstore/driver"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/fileresult"
)

// Results keeps result bytes in the DB, under b<key>, for a fileresult
// Store (Options.Blobs), which adds signed URLs and serves them. A Put is
// one synced batch, so Pebble's commit pipeline groups it with the
// operations' writes into one WAL fsync, where a result file costs two
// fsyncs of its own. A result is held whole in memory while it is written
// and read (one Pebble value); values of any size work, large ones cost
// memory then, and file: suits results of many megabytes better.
type Results struct {
	db     *DB
	once   sync.Once
	closed atomic.Bool
}

var _ fileresult.Blobs = (*Results)(nil)

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

var _ fileresult.LazyBlobs = (*Results)(nil)

// Put stores data under key in one synced batch.
func (r *Results) Put(ctx context.Context, key string, data []byte, a driver.Attributes) error {
	return r.put(ctx, key, data, a, pebble.Sync)
}

// PutLazy stores data under key without waiting for the WAL's fsync: the
// next synced write to the DB (the worker's recording of the operation's
// success) makes it durable, as Pebble's WAL is one ordered log.
func (r *Results) PutLazy(ctx context.Context, key string, data []byte, a driver.Attributes) error {
	return r.put(ctx, key, data, a, pebble.NoSync)
}

// SyncedBy reports whether other is a handle (operations store, queue or
// results) of the same DB.
func (r *Results) SyncedBy(other any) bool {
	switch o := other.(type) {
	case *store:
		return o.db == r.db
	case *queueHandle:
		return o.db == r.db
	case *Results:
		return o.db == r.db
	}
	return false
}

func (r *Results) put(ctx context.Context, key string, data []byte, a driver.Attributes, wo *pebble.WriteOptions) error {
	if err := r.begin(ctx); err != nil {
		return err
	}
	defer r.db.end()
	b := r.db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(resultKey(key), encodeResult(data, a), nil)
	if err := b.Commit(wo); err != nil {
		return fmt.Errorf("embedded: writing result %q: %w", key, err)
	}
	return nil
}

// Open reads the value under key into memory and returns a reader of it.
func (r *Results) Open(ctx context.Context, key string) (driver.Reader, error) {
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

// Delete removes key, durably.
func (r *Results) Delete(ctx context.Context, key string) error {
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

// resultsOptions reads the result store's parameters of an embedded URL
// and deletes them from q: keyFile (the signing keyring; default
// signing-keys.json beside the DB's directory, where file:DIR/../results
// keeps it too), prefix (where signed URLs are served; default /blobs/)
// and maxURLLifetime.
func resultsOptions(q url.Values) (fileresult.Options, error) {
	var opts fileresult.Options
	opts.KeyFile, opts.Prefix = q.Get("keyFile"), q.Get("prefix")
	if v := q.Get("maxURLLifetime"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return opts, fmt.Errorf("embedded: URL parameter maxURLLifetime=%q: %v", v, err)
		}
		opts.MaxURLLifetime = d
	}
	for _, k := range []string{"keyFile", "prefix", "maxURLLifetime"} {
		q.Del(k)
	}
	return opts, nil
}

// openResults opens the DB's result store: the bytes in the DB, signed
// URLs and their keyring as the file driver makes them. It holds a
// reference to the DB until its Close.
func openResults(db *DB, opts fileresult.Options) (rdriver.Store, error) {
	if !db.acquire() {
		return nil, ErrClosed
	}
	opts.Blobs = &Results{db: db} // owns the reference
	// The results "directory" is the DB's, so the default keyring lands
	// beside it.
	st, err := fileresult.Open(db.dir, opts)
	if err != nil {
		_ = opts.Blobs.Close()
		return nil, err
	}
	return st, nil
}
