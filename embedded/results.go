package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
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

// Results is the result store of the DB: the bytes are kept in the DB with
// their content type, a SHA-256 ETag and the time of the Put. Keys are
// path keys (resultstore.ValidatePathKey), as the file store's.
//
// A result of up to resultInlineMax bytes is one value, b<key>, holding
// its attributes and its bytes (the v1 record). A larger one is a header,
// b<key>, holding its attributes, size, chunk size and generation (the v2
// record), and its bytes in chunks of resultChunkSize under
// b<key>\x00<generation><index>. Put reads its reader one chunk at a time,
// hashing as it goes, and never holds more than a chunk of it; Open reads
// only the header, and the reader it returns reads the chunk a Read or
// Seek lands in, so that serving a HEAD, a 304 or a one-byte Range costs
// a header read (or a chunk), whatever the size of the result.
//
// A Put is atomic: the chunks of a large result go to a generation of
// their own (in batches that do not wait for an fsync, with a marker,
// u<generation><key>, in the first), and the last batch writes the header
// that points at them, deletes the marker and the generation the header
// replaced. A reader never sees a partial value: it reads the header and
// the chunks from one Pebble snapshot, so it reads one whole value even if
// the result is overwritten or deleted while it is open. A crash in the
// middle of a Put leaves chunks that no header points at, with their
// marker: Open deletes them. Put (and the last batch of a large one) is
// synced, so Pebble's commit pipeline groups it with the operations'
// writes into one WAL fsync.
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

const (
	// resultInlineMax is the largest result kept in one value with its
	// attributes (a v1 record): a small result costs one key, as it did
	// before results had chunks, and reading it whole costs little.
	resultInlineMax = 4 << 10
	// resultChunkSize is the size of the chunks of a larger result (the
	// last one may be shorter). A Put holds one chunk in memory, and a
	// Read copies from at most one chunk.
	resultChunkSize = 256 << 10
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

// pPending prefixes the markers of chunks being written:
// u<gen BE64><result key> → (empty). The chunks themselves are under
// pResult: b<result key>\x00<gen BE64><index BE32>.
const pPending = 'u'

// Result records: the first byte of b<key>.
const (
	// resultRecordV1 is followed by uvarint-length-prefixed content type
	// and ETag, the modification time (unix nanos, BE64) and the bytes.
	resultRecordV1 = 1
	// resultRecordV2 (a header) is followed by uvarint-length-prefixed
	// content type and ETag, the modification time (unix nanos, BE64),
	// the size and the chunk size (uvarints) and the generation (BE64) of
	// the chunks.
	resultRecordV2 = 2
)

func encodeResult(data []byte, a driver.Attributes) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(a.ContentType)+len(a.ETag)+8+len(data))
	b = append(b, resultRecordV1)
	b = appendString(b, a.ContentType)
	b = appendString(b, a.ETag)
	b = binary.BigEndian.AppendUint64(b, uint64(a.ModTime.UnixNano()))
	return append(b, data...)
}

// resultHeader is a decoded b<key> record.
type resultHeader struct {
	attrs driver.Attributes
	// data is the bytes of a v1 record (a subslice of the value); nil for
	// a v2 record.
	data      []byte
	chunked   bool // v2
	chunkSize int64
	gen       uint64
}

// chunks is the number of chunks of a v2 result.
func (h *resultHeader) chunks() int64 { return (h.attrs.Size + h.chunkSize - 1) / h.chunkSize }

func encodeHeader(a driver.Attributes, chunkSize int64, gen uint64) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(a.ContentType)+len(a.ETag)+16)
	b = append(b, resultRecordV2)
	b = appendString(b, a.ContentType)
	b = appendString(b, a.ETag)
	b = binary.BigEndian.AppendUint64(b, uint64(a.ModTime.UnixNano()))
	b = binary.AppendUvarint(b, uint64(a.Size))
	b = binary.AppendUvarint(b, uint64(chunkSize))
	return binary.BigEndian.AppendUint64(b, gen)
}

// decodeResult decodes a v1 or v2 record; the bytes of a v1 record are a
// subslice of v.
func decodeResult(v []byte) (resultHeader, error) {
	var h resultHeader
	if len(v) < 1 || (v[0] != resultRecordV1 && v[0] != resultRecordV2) {
		return h, errCorrupt
	}
	r := &reader{b: v[1:]}
	h.attrs.ContentType, h.attrs.ETag = r.string(), r.string()
	h.attrs.ModTime = time.Unix(0, int64(r.u64())).UTC()
	if r.err != nil {
		return h, r.err
	}
	if v[0] == resultRecordV1 {
		h.data = r.b
		h.attrs.Size = int64(len(r.b))
		return h, nil
	}
	size, cs := r.uvarint(), r.uvarint()
	h.gen = r.u64()
	if r.err != nil || len(r.b) != 0 || cs == 0 || cs > 1<<30 || size > 1<<62 {
		return h, errCorrupt
	}
	h.chunked, h.chunkSize, h.attrs.Size = true, int64(cs), int64(size)
	return h, nil
}

// chunkPrefix is the prefix of the chunk keys of generation gen of key:
// b<key>\x00<gen BE64>. A path key holds no NUL, so no other result's
// header or chunks share it, and the chunks of a result sort right after
// its header.
func chunkPrefix(key string, gen uint64) []byte {
	k := make([]byte, 0, 1+len(key)+1+8+4)
	k = append(k, pResult)
	k = append(k, key...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, gen)
}

// chunkKey is the key of chunk i of generation gen of key.
func chunkKey(key string, gen uint64, i int64) []byte {
	return binary.BigEndian.AppendUint32(chunkPrefix(key, gen), uint32(i))
}

// pendingKey marks generation gen of key as being written:
// u<gen BE64><key>.
func pendingKey(gen uint64, key string) []byte {
	k := make([]byte, 0, 9+len(key))
	k = append(k, pPending)
	k = binary.BigEndian.AppendUint64(k, gen)
	return append(k, key...)
}

// deleteChunks adds to b the deletion of the chunks h points at: one point
// deletion per chunk for a few of them, one range deletion for more
// (range deletions are cheap to write, but every one in a memtable costs
// its readers, so the many small results do not use them).
func deleteChunks(b *pebble.Batch, key string, h *resultHeader) {
	if n := h.chunks(); n <= 4 {
		for i := range n {
			_ = b.Delete(chunkKey(key, h.gen, i), nil)
		}
		return
	}
	p := chunkPrefix(key, h.gen)
	_ = b.DeleteRange(p, prefixEnd(p), nil)
}

// ValidateKey implements driver.KeyValidator: path keys
// (resultstore.ValidatePathKey).
func (r *Results) ValidateKey(key string) error { return resultstore.ValidatePathKey(key) }

// Put stores the bytes of rd under key; see driver.Store.Put and Results.
// An empty contentType is stored as resultstore.DefaultContentType.
func (r *Results) Put(ctx context.Context, key string, rd io.Reader, contentType string) (driver.Attributes, error) {
	return r.put(ctx, key, rd, contentType, pebble.Sync)
}

// PutLazy is Put without waiting for the WAL's fsync: the next synced
// write to the DB (the worker's recording of the operation's success)
// makes it durable, as Pebble's WAL is one ordered log.
func (r *Results) PutLazy(ctx context.Context, key string, rd io.Reader, contentType string) (driver.Attributes, error) {
	return r.put(ctx, key, rd, contentType, pebble.NoSync)
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, resultChunkSize); return &b }}

func (r *Results) put(ctx context.Context, key string, rd io.Reader, contentType string, wo *pebble.WriteOptions) (driver.Attributes, error) {
	if err := r.ValidateKey(key); err != nil {
		return driver.Attributes{}, err
	}
	contentType, err := resultstore.CheckContentType(contentType)
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("embedded: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return driver.Attributes{}, err
	}
	bufp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bufp)
	buf := *bufp
	// The first resultInlineMax+1 bytes say whether the result is small.
	n, err := io.ReadFull(rd, buf[:resultInlineMax+1])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return driver.Attributes{}, fmt.Errorf("embedded: put %q: %w", key, err)
	}
	if err != nil {
		sum := sha256.Sum256(buf[:n])
		a := driver.Attributes{ContentType: contentType, Size: int64(n), ETag: etagOf(sum[:]),
			ModTime: time.Now().UTC().Truncate(time.Microsecond)}
		if err := r.commit(ctx, key, wo, nil, func(b *pebble.Batch) { _ = b.Set(resultKey(key), encodeResult(buf[:n], a), nil) }); err != nil {
			return driver.Attributes{}, err
		}
		return a, nil
	}
	w := &chunkWriter{r: r, ctx: ctx, key: key, gen: r.db.results.nextGen(), h: sha256.New()}
	a, err := w.write(rd, buf, n, contentType, wo)
	if err != nil {
		w.abort()
		return driver.Attributes{}, fmt.Errorf("embedded: put %q: %w", key, err)
	}
	return a, nil
}

func etagOf(sum []byte) string { return `"` + hex.EncodeToString(sum) + `"` }

// commit writes, under key's stripe lock, the deletion of the chunks of
// the value key holds (when it has chunks), then the batch fill makes,
// then the deletion of the marker pending (when not nil); it waits for the
// fsync when wo says so. (A Set after a deletion of the same key in one
// batch wins, so a new value whose generation is the old one's is kept.)
func (r *Results) commit(ctx context.Context, key string, wo *pebble.WriteOptions, pending []byte, fill func(*pebble.Batch)) error {
	if err := r.begin(ctx); err != nil {
		return err
	}
	defer r.db.end()
	hk := resultKey(key)
	lk := r.db.lockStripes(string(hk))
	defer r.db.unlockStripes(lk)
	b := r.db.pdb.NewBatch()
	defer b.Close()
	// A key above the ceiling was never written: no old value to read.
	rs := &r.db.results
	if !rs.ceil.above(hk) && !rs.unchunked(hk) {
		old, ok, err := r.header(r.db.pdb, hk, false)
		if err != nil && !errors.Is(err, errCorrupt) {
			return fmt.Errorf("embedded: put %q: %w", key, err)
		}
		if ok && err == nil && old.chunked {
			deleteChunks(b, key, &old)
		}
	}
	fill(b)
	if pending != nil {
		_ = b.Delete(pending, nil)
	}
	r.db.results.ceil.raise(hk)
	if err := b.Commit(wo); err != nil {
		return fmt.Errorf("embedded: writing result %q: %w", key, err)
	}
	return nil
}

// header reads and decodes the record under hk (a result key) in rd. The
// bytes of a v1 record are copied when data is true, left out otherwise.
func (r *Results) header(rd pebble.Reader, hk []byte, data bool) (resultHeader, bool, error) {
	v, closer, err := rd.Get(hk)
	if errors.Is(err, pebble.ErrNotFound) {
		return resultHeader{}, false, nil
	}
	if err != nil {
		return resultHeader{}, false, err
	}
	defer closer.Close()
	h, err := decodeResult(v)
	if err != nil {
		return h, true, err
	}
	if h.data != nil && data {
		h.data = bytes.Clone(h.data)
	} else {
		h.data = nil
	}
	return h, true, nil
}

// chunkWriter writes the chunks of one large result under a generation of
// its own.
type chunkWriter struct {
	r       *Results
	ctx     context.Context
	key     string
	gen     uint64
	h       hash.Hash
	next    int64 // index of the next chunk
	written bool  // some chunk (and the marker) may be in the DB
}

// write stores what rd has after the n bytes already in buf[:n], one
// chunk at a time, and commits the header.
func (w *chunkWriter) write(rd io.Reader, buf []byte, n int, contentType string, wo *pebble.WriteOptions) (driver.Attributes, error) {
	var size int64
	for {
		m, err := io.ReadFull(rd, buf[n:])
		n += m
		last := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !last {
			return driver.Attributes{}, err
		}
		if last {
			break
		}
		if err := w.chunk(buf[:n]); err != nil {
			return driver.Attributes{}, err
		}
		size += int64(n)
		n = 0
	}
	w.h.Write(buf[:n])
	size += int64(n)
	a := driver.Attributes{ContentType: contentType, Size: size, ETag: etagOf(w.h.Sum(nil)),
		ModTime: time.Now().UTC().Truncate(time.Microsecond)}
	var pending []byte
	if w.written {
		pending = pendingKey(w.gen, w.key)
	}
	last := w.next
	// Before the commit (a Put of the key from now on reads it): a key
	// is recorded too early at worst, never too late.
	w.r.db.results.noteChunked(resultKey(w.key))
	err := w.r.commit(w.ctx, w.key, wo, pending, func(b *pebble.Batch) {
		if n > 0 {
			_ = b.Set(chunkKey(w.key, w.gen, last), buf[:n], nil)
		}
		_ = b.Set(resultKey(w.key), encodeHeader(a, resultChunkSize, w.gen), nil)
	})
	return a, err
}

// chunk writes one full chunk, without waiting for an fsync (the header's
// commit makes it durable); the first also writes the marker, so that a
// crash before the header leaves nothing that Open does not delete.
func (w *chunkWriter) chunk(data []byte) error {
	w.h.Write(data)
	if err := w.r.begin(w.ctx); err != nil {
		return err
	}
	defer w.r.db.end()
	if w.next == 0 {
		// The generation must differ from the one the header (of an
		// earlier run) points at; ours are unique within a run.
		for {
			old, ok, err := w.r.header(w.r.db.pdb, resultKey(w.key), false)
			if err != nil || !ok || !old.chunked || old.gen != w.gen {
				break
			}
			w.gen = w.r.db.results.nextGen()
		}
	}
	b := w.r.db.pdb.NewBatch()
	defer b.Close()
	if w.next == 0 {
		_ = b.Set(pendingKey(w.gen, w.key), nil, nil)
	}
	_ = b.Set(chunkKey(w.key, w.gen, w.next), data, nil)
	w.written = true
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("writing a chunk: %w", err)
	}
	w.next++
	return nil
}

// abort deletes the chunks written and their marker, best effort: what it
// cannot delete, the marker has Open delete.
func (w *chunkWriter) abort() {
	if !w.written || w.r.db.begin(ErrClosed) != nil {
		return
	}
	defer w.r.db.end()
	b := w.r.db.pdb.NewBatch()
	defer b.Close()
	p := chunkPrefix(w.key, w.gen)
	_ = b.DeleteRange(p, prefixEnd(p), nil)
	_ = b.Delete(pendingKey(w.gen, w.key), nil)
	_ = b.Commit(pebble.NoSync)
}

// Open returns a reader of the result under key, or an error wrapping
// driver.ErrNotFound. It reads the header only (a small result's record
// holds its bytes); the reader reads one Pebble snapshot, so it reads the
// value Open found even if it is overwritten or deleted meanwhile, until
// it is closed (or the DB is).
func (r *Results) Open(ctx context.Context, key string) (driver.Reader, error) {
	if err := r.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	defer r.db.end()
	snap := r.db.pdb.NewSnapshot()
	h, ok, err := r.header(snap, resultKey(key), true)
	if err != nil || !ok || !h.chunked {
		_ = snap.Close()
		switch {
		case err != nil:
			return nil, fmt.Errorf("embedded: reading result %q: %w", key, err)
		case !ok:
			return nil, fmt.Errorf("%w: %q", driver.ErrNotFound, key)
		}
		return &smallReader{Reader: bytes.NewReader(h.data), attrs: h.attrs}, nil
	}
	cr := &chunkReader{db: r.db, snap: snap, key: key, h: h}
	r.db.results.track(cr)
	return cr, nil
}

// smallReader reads a result kept in one value.
type smallReader struct {
	*bytes.Reader
	attrs driver.Attributes
}

func (r *smallReader) Attributes() driver.Attributes { return r.attrs }
func (r *smallReader) Close() error                  { return nil }

// chunkReader reads a result kept in chunks, from a snapshot: each Read
// reads the chunk its position is in and copies from it; it holds nothing
// between reads but the snapshot.
type chunkReader struct {
	db   *DB
	snap *pebble.Snapshot // guarded by db.results.mu; nil once closed
	key  string
	h    resultHeader
	pos  int64
}

func (c *chunkReader) Attributes() driver.Attributes { return c.h.attrs }

func (c *chunkReader) Read(p []byte) (int, error) {
	size := c.h.attrs.Size
	if c.pos >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.db.begin(ErrClosed); err != nil {
		return 0, err
	}
	defer c.db.end()
	snap := c.db.results.snapshot(c)
	if snap == nil {
		return 0, ErrClosed
	}
	i, off := c.pos/c.h.chunkSize, c.pos%c.h.chunkSize
	v, closer, err := snap.Get(chunkKey(c.key, c.h.gen, i))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("embedded: result %q: chunk %d: %w", c.key, i, errCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("embedded: reading result %q: %w", c.key, err)
	}
	defer closer.Close()
	if want := min(c.h.chunkSize, size-i*c.h.chunkSize); int64(len(v)) != want {
		return 0, fmt.Errorf("embedded: result %q: chunk %d has %d bytes, want %d: %w", c.key, i, len(v), want, errCorrupt)
	}
	n := copy(p, v[off:])
	c.pos += int64(n)
	return n, nil
}

// Seek sets the position; it reads nothing.
func (c *chunkReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := driver.SeekPosition(c.pos, c.h.attrs.Size, offset, whence)
	c.pos = pos
	return pos, err
}

// Close releases the snapshot.
func (c *chunkReader) Close() error { return c.db.results.untrack(c) }

// resultsState is the DB's state of its result store.
type resultsState struct {
	// ceil bounds the result keys ever written, so that a Put of a new
	// key (arr's are UUIDv7 ids with the attempt) reads no old header.
	ceil ceiling
	gen  atomic.Uint64 // the last generation handed out

	// base is the ceiling of result keys at open. A key above it was not
	// written before this process opened the DB, so only this process's
	// chunked writes can have left chunks under it: those it records in
	// chunked (up to maxChunkedKeys; beyond, every key not above ceil is
	// read, as before). So a Put of a new key skips its read even when
	// concurrent Puts of later keys raised ceil first.
	base      []byte
	ckMu      sync.Mutex
	chunked   map[string]struct{}
	ckOverrun bool

	mu      sync.Mutex
	readers map[*chunkReader]struct{} // open, with their snapshots
}

// nextGen returns a generation for a result's chunks, unique in this
// process. Generations start at the clock of the DB's opening, so they
// differ from an earlier run's too unless the clock went back; a writer
// checks the one header that matters (see chunkWriter.chunk).
func (s *resultsState) nextGen() uint64 { return s.gen.Add(1) }

func (s *resultsState) track(c *chunkReader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readers == nil {
		s.readers = map[*chunkReader]struct{}{}
	}
	s.readers[c] = struct{}{}
}

func (s *resultsState) snapshot(c *chunkReader) *pebble.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.snap
}

func (s *resultsState) untrack(c *chunkReader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.snap == nil {
		return nil
	}
	err := c.snap.Close()
	c.snap = nil
	delete(s.readers, c)
	return err
}

// closeReaders releases the snapshots of the readers still open, before
// the DB closes (their reads then fail with ErrClosed).
func (s *resultsState) closeReaders() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.readers {
		_ = c.snap.Close()
		c.snap = nil
	}
	s.readers = nil
}

// openResults loads the result key ceiling and the first generation, and
// deletes the chunks of the Puts a crash interrupted (those whose marker
// is still there: a committed Put deletes its marker with the header's
// write).
func (db *DB) openResults() error {
	db.results.gen.Store(uint64(time.Now().UnixNano()))
	if err := db.results.ceil.load(db.pdb, pResult); err != nil {
		return err
	}
	db.results.base = bytes.Clone(db.results.ceil.max)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pPending}, UpperBound: []byte{pPending + 1}})
	if err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 9 {
			_ = b.Delete(k, nil)
			continue
		}
		gen := binary.BigEndian.Uint64(k[1:9])
		if g := db.results.gen.Load(); gen >= g {
			db.results.gen.Store(gen + 1)
		}
		p := chunkPrefix(string(k[9:]), gen)
		_ = b.DeleteRange(p, prefixEnd(p), nil)
		_ = b.Delete(k, nil)
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.Sync)
}

// Delete removes key and its chunks, durably; a missing key is not an
// error.
func (r *Results) Delete(ctx context.Context, key string) error {
	if err := r.ValidateKey(key); err != nil {
		return err
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	defer r.db.end()
	hk := resultKey(key)
	lk := r.db.lockStripes(string(hk))
	defer r.db.unlockStripes(lk)
	h, ok, err := r.header(r.db.pdb, hk, false)
	if err != nil && !errors.Is(err, errCorrupt) {
		return fmt.Errorf("embedded: deleting result %q: %w", key, err)
	}
	if !ok {
		return nil
	}
	b := r.db.pdb.NewBatch()
	defer b.Close()
	_ = b.Delete(hk, nil)
	if err == nil && h.chunked {
		deleteChunks(b, key, &h)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("embedded: deleting result %q: %w", key, err)
	}
	return nil
}

// maxChunkedKeys bounds resultsState.chunked (about 100 bytes each).
const maxChunkedKeys = 1 << 16

// unchunked reports whether hk (a result key) is known to hold no chunked
// value without a read: it was not written before open, nor chunked since.
func (rs *resultsState) unchunked(hk []byte) bool {
	if bytes.Compare(hk, rs.base) <= 0 {
		return false
	}
	rs.ckMu.Lock()
	defer rs.ckMu.Unlock()
	if rs.ckOverrun {
		return false
	}
	_, ok := rs.chunked[string(hk)]
	return !ok
}

// noteChunked records that a chunked value is being written under hk.
func (rs *resultsState) noteChunked(hk []byte) {
	if bytes.Compare(hk, rs.base) <= 0 {
		return
	}
	rs.ckMu.Lock()
	defer rs.ckMu.Unlock()
	switch {
	case rs.ckOverrun:
	case len(rs.chunked) >= maxChunkedKeys:
		rs.ckOverrun, rs.chunked = true, nil
	default:
		if rs.chunked == nil {
			rs.chunked = map[string]struct{}{}
		}
		rs.chunked[string(hk)] = struct{}{}
	}
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
