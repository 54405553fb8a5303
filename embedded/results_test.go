package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
)

// openResultsT opens a DB in dir and its result store; both are closed at
// the end of the test (closing an already closed one does nothing).
func openResultsT(t testing.TB, dir string) (*DB, *Results) {
	t.Helper()
	db := openT(t, dir, Options{})
	if !db.acquire() {
		t.Fatal("acquire")
	}
	r := &Results{db: db}
	t.Cleanup(func() { r.Close(); db.Close() })
	return db, r
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = mrand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// keysUnder returns the keys of db that start with p.
func keysUnder(t testing.TB, db *DB, p []byte) [][]byte {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for it.First(); it.Valid(); it.Next() {
		out = append(out, bytes.Clone(it.Key()))
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return out
}

// resultKeys returns the keys of the result under key: its record (or
// header) and its chunks.
func resultKeys(t testing.TB, db *DB, key string) [][]byte {
	t.Helper()
	hk := resultKey(key)
	var out [][]byte
	for _, k := range keysUnder(t, db, hk) {
		if len(k) == len(hk) || k[len(hk)] == 0 {
			out = append(out, k)
		}
	}
	return out
}

func readAll(t *testing.T, r *Results, key string) ([]byte, driver.Attributes) {
	t.Helper()
	return resultstoretest.NewStore(resultstore.New(r)).Read(t, key)
}

// A result larger than a chunk is a header and its chunks, which read back
// byte for byte, from any position; a small one is one key, as before.
func TestResultsChunks(t *testing.T) {
	ctx := context.Background()
	db, r := openResultsT(t, t.TempDir())
	size := 3*resultChunkSize + 17
	want := randomBytes(size, 1)
	a, err := r.Put(ctx, "big/one", bytes.NewReader(want), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	if a.Size != int64(size) || a.ETag != etagOf(sum[:]) {
		t.Fatalf("Put = %+v; want size %d, ETag of the bytes", a, size)
	}
	if n := len(resultKeys(t, db, "big/one")); n != 1+4 {
		t.Errorf("%d keys under the result, want the header and 4 chunks", n)
	}
	got, ga := readAll(t, r, "big/one")
	if !bytes.Equal(got, want) || ga != a {
		t.Fatalf("read %d bytes (equal %v), attributes %+v; want %+v", len(got), bytes.Equal(got, want), ga, a)
	}
	rd, err := r.Open(ctx, "big/one")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, off := range []int64{0, resultChunkSize - 3, resultChunkSize, 2*resultChunkSize + 5, int64(size) - 2} {
		if _, err := rd.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		n, err := io.ReadFull(rd, buf)
		end := min(off+10, int64(size))
		if int64(n) != end-off || !bytes.Equal(buf[:n], want[off:end]) || (err != nil && end-off == 10) {
			t.Errorf("at %d: read %d bytes %x, err %v; want %x", off, n, buf[:n], err, want[off:end])
		}
	}
	if n, err := rd.Seek(10, io.SeekEnd); err != nil || n != int64(size)+10 {
		t.Fatalf("Seek past the end = %d, %v", n, err)
	}
	if n, err := rd.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v; want 0, EOF", n, err)
	}

	// Small results are one key; a result of exactly the inline size too.
	for _, n := range []int{0, 1, resultInlineMax} {
		k := "small/" + strings.Repeat("x", n%7+1)
		if _, err := r.Put(ctx, k, bytes.NewReader(randomBytes(n, 2)), "text/plain"); err != nil {
			t.Fatal(err)
		}
		if keys := resultKeys(t, db, k); len(keys) != 1 {
			t.Errorf("a result of %d bytes has %d keys, want 1", n, len(keys))
		}
		if got, _ := readAll(t, r, k); !bytes.Equal(got, randomBytes(n, 2)) {
			t.Errorf("a result of %d bytes read back wrong", n)
		}
	}
	// Exactly one chunk, and exactly two: no empty chunk.
	for _, n := range []int{resultInlineMax + 1, resultChunkSize, 2 * resultChunkSize} {
		k := "edge"
		want := randomBytes(n, 3)
		if _, err := r.Put(ctx, k, bytes.NewReader(want), ""); err != nil {
			t.Fatal(err)
		}
		chunks := (n + resultChunkSize - 1) / resultChunkSize
		if keys := resultKeys(t, db, k); len(keys) != 1+chunks {
			t.Errorf("a result of %d bytes has %d keys, want %d", n, len(keys), 1+chunks)
		}
		if got, _ := readAll(t, r, k); !bytes.Equal(got, want) {
			t.Errorf("a result of %d bytes read back wrong", n)
		}
	}
}

// Overwriting a chunked result deletes the old chunks, and Delete deletes
// all of them; no marker is left behind.
func TestResultsDeleteChunks(t *testing.T) {
	ctx := context.Background()
	db, r := openResultsT(t, t.TempDir())
	for i, n := range []int{5*resultChunkSize + 1, 2 * resultChunkSize, 100, 9 * resultChunkSize} {
		if _, err := r.PutLazy(ctx, "k", bytes.NewReader(randomBytes(n, byte(i))), ""); err != nil {
			t.Fatal(err)
		}
		chunks := 0
		if n > resultInlineMax {
			chunks = (n + resultChunkSize - 1) / resultChunkSize
		}
		if keys := resultKeys(t, db, "k"); len(keys) != 1+chunks {
			t.Fatalf("after a Put of %d bytes: %d keys, want %d", n, len(keys), 1+chunks)
		}
	}
	if err := r.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if keys := resultKeys(t, db, "k"); len(keys) != 0 {
		t.Errorf("after Delete: %d keys left", len(keys))
	}
	if keys := keysUnder(t, db, []byte{pPending}); len(keys) != 0 {
		t.Errorf("%d markers left", len(keys))
	}
}

// errAfter yields n random bytes, then fails.
type errAfter struct {
	n   int
	err error
}

func (e *errAfter) Read(b []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	n := min(len(b), e.n)
	e.n -= n
	return n, nil
}

// A Put whose reader fails after some chunks were written deletes them,
// and leaves the value it would have replaced as it was.
func TestResultsFailedPutLeavesNothing(t *testing.T) {
	ctx := context.Background()
	db, r := openResultsT(t, t.TempDir())
	old := randomBytes(2*resultChunkSize, 4)
	a, err := r.Put(ctx, "k", bytes.NewReader(old), "")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := r.Put(ctx, "k", &errAfter{n: 3*resultChunkSize + 5, err: boom}, ""); !errors.Is(err, boom) {
		t.Fatalf("Put from a failing reader = %v, want one wrapping its error", err)
	}
	if _, err := r.Put(ctx, "new", &errAfter{n: 3 * resultChunkSize, err: boom}, ""); !errors.Is(err, boom) {
		t.Fatalf("Put from a failing reader = %v, want one wrapping its error", err)
	}
	if got, ga := readAll(t, r, "k"); !bytes.Equal(got, old) || ga != a {
		t.Error("the old value changed")
	}
	if keys := resultKeys(t, db, "k"); len(keys) != 3 {
		t.Errorf("%d keys under k, want the header and 2 chunks", len(keys))
	}
	if keys := resultKeys(t, db, "new"); len(keys) != 0 {
		t.Errorf("%d keys under new, want none", len(keys))
	}
	if keys := keysUnder(t, db, []byte{pPending}); len(keys) != 0 {
		t.Errorf("%d markers left", len(keys))
	}
}

// The chunks of a Put that a crash interrupted (written, with their
// marker, but no header) are deleted when the DB is opened again; a
// committed result is kept.
func TestResultsCrashedPutDeletedOnOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, r := openResultsT(t, dir)
	want := randomBytes(3*resultChunkSize, 5)
	if _, err := r.Put(ctx, "kept", bytes.NewReader(want), ""); err != nil {
		t.Fatal(err)
	}
	// What chunkWriter.chunk leaves before the header's commit.
	gen := db.results.nextGen()
	b := db.pdb.NewBatch()
	_ = b.Set(pendingKey(gen, "torn"), nil, nil)
	for i := range int64(3) {
		_ = b.Set(chunkKey("torn", gen, i), randomBytes(resultChunkSize, 6), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, r = openResultsT(t, dir)
	if keys := resultKeys(t, db, "torn"); len(keys) != 0 {
		t.Errorf("%d keys of the torn Put left after the reopen", len(keys))
	}
	if keys := keysUnder(t, db, []byte{pPending}); len(keys) != 0 {
		t.Errorf("%d markers left after the reopen", len(keys))
	}
	if got, _ := readAll(t, r, "kept"); !bytes.Equal(got, want) {
		t.Error("the committed result did not survive the reopen")
	}
	if g := db.results.nextGen(); g <= gen {
		t.Errorf("generation %d after the reopen, not above the torn one (%d)", g, gen)
	}
}

// Results written before chunks (one v1 value, whatever its size) are
// still read, overwritten and deleted.
func TestResultsV1StillRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, r := openResultsT(t, dir)
	want := randomBytes(resultChunkSize+100, 7)
	sum := sha256.Sum256(want)
	a := driver.Attributes{ContentType: "application/json", Size: int64(len(want)), ETag: etagOf(sum[:]),
		ModTime: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	// The bytes of a v1 record, as the builds before chunks wrote it.
	if err := db.pdb.Set(resultKey("old/v1"), encodeResult(want, a), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(resultKey("old/v1b"), encodeResult([]byte("tiny"), a), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, r = openResultsT(t, dir)
	got, ga := readAll(t, r, "old/v1")
	if !bytes.Equal(got, want) || !ga.ModTime.Equal(a.ModTime) || ga.ETag != a.ETag || ga.ContentType != a.ContentType || ga.Size != a.Size {
		t.Fatalf("v1 result read %d bytes (equal %v), attributes %+v; want %+v", len(got), bytes.Equal(got, want), ga, a)
	}
	rd, err := r.Open(ctx, "old/v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Seek(resultChunkSize, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Equal(rest, want[resultChunkSize:]) {
		t.Error("v1 result: a read after a Seek is wrong")
	}
	// Overwritten by a chunked value, and deleted.
	next := randomBytes(2*resultChunkSize+1, 8)
	if _, err := r.Put(ctx, "old/v1", bytes.NewReader(next), ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, r, "old/v1"); !bytes.Equal(got, next) {
		t.Error("the chunked value that replaced a v1 one reads wrong")
	}
	for _, k := range []string{"old/v1", "old/v1b"} {
		if err := r.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if keys := resultKeys(t, db, k); len(keys) != 0 {
			t.Errorf("%d keys of %s left after Delete: %q", len(keys), k, keys)
		}
	}
}

// An open reader reads the value it opened even when the result is
// overwritten or deleted meanwhile.
func TestResultsReaderReadsOneSnapshot(t *testing.T) {
	ctx := context.Background()
	_, r := openResultsT(t, t.TempDir())
	first := randomBytes(4*resultChunkSize, 9)
	if _, err := r.Put(ctx, "k", bytes.NewReader(first), ""); err != nil {
		t.Fatal(err)
	}
	rd, err := r.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rd, head); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "k", bytes.NewReader(randomBytes(6*resultChunkSize, 10)), ""); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || !bytes.Equal(append(head, rest...), first) {
		t.Fatalf("reader read %d bytes, err %v: not the value it opened", len(head)+len(rest), err)
	}
}

// A reader still open when the DB closes does not keep the DB from
// closing (no leaked snapshot); its reads fail with ErrClosed.
func TestResultsReaderOutlivesDB(t *testing.T) {
	ctx := context.Background()
	db, r := openResultsT(t, t.TempDir())
	if _, err := r.Put(ctx, "k", bytes.NewReader(randomBytes(2*resultChunkSize, 11)), ""); err != nil {
		t.Fatal(err)
	}
	rd, err := r.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := firstErr(r.Close(), db.Close()); err != nil {
		t.Fatalf("closing the DB with a reader open: %v", err)
	}
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after the DB closed = %v, want ErrClosed", err)
	}
	if err := rd.Close(); err != nil {
		t.Errorf("Close after the DB closed: %v", err)
	}
}

// Opening a large result, asking its attributes and reading one byte from
// its middle (what a HEAD, a 304 or a one-byte Range costs) allocates a
// small fraction of the result, not a copy of it.
func TestResultsOpenReadsLittle(t *testing.T) {
	ctx := context.Background()
	_, r := openResultsT(t, t.TempDir())
	const size = 16 << 20
	if _, err := r.Put(ctx, "big", bytes.NewReader(randomBytes(size, 12)), ""); err != nil {
		t.Fatal(err)
	}
	perOpen := resultstoretest.AllocBytes(5, func() {
		rd, err := r.Open(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		_ = rd.Attributes()
		if _, err := rd.Seek(size/2, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		rd.Close()
	})
	t.Logf("Open + Attributes + Seek + 1-byte Read of %d MiB: %d bytes allocated", size>>20, perOpen)
	if perOpen > size/16 {
		t.Errorf("Open + Attributes + Seek + 1-byte Read of a %d-byte result allocated %d bytes; want far less than the result", size, perOpen)
	}
}

// serveAllocs returns the bytes one request to h allocates, on average.
func serveAllocs(h http.Handler, method, u, header, value string) uint64 {
	return resultstoretest.AllocBytes(5, func() {
		req := httptest.NewRequest(method, u, nil)
		if header != "" {
			req.Header.Set(header, value)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
	})
}

// A HEAD, an If-None-Match GET (304) and a one-byte Range GET of a 60 MiB
// result's signed URL, through the signer's handler, each allocate next
// to nothing (the old store copied the 60 MiB every time).
func TestResultsServedFromAttributes(t *testing.T) {
	ctx := context.Background()
	_, r := openResultsT(t, t.TempDir())
	const size = 60 << 20
	a, err := r.Put(ctx, "big", bytes.NewReader(make([]byte, size)), "")
	if err != nil {
		t.Fatal(err)
	}
	sg, err := openSigner(ctx, r.db, url.Values{}, resultstore.New(r))
	if err != nil {
		t.Fatal(err)
	}
	u, err := sg.SignedURL(ctx, "big", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, h := sg.Handler()
	// HEAD and 304 read the header only; a Range reads one chunk (which
	// Pebble may allocate a buffer for when it is not in the cache). The
	// bounds leave room for the race detector's allocations.
	for _, tc := range []struct {
		method, header, value string
		max                   uint64
	}{
		{"HEAD", "", "", 128 << 10},
		{"GET", "If-None-Match", a.ETag, 128 << 10},
		{"GET", "Range", "bytes=1000-1000", 4 * resultChunkSize},
	} {
		n := serveAllocs(h, tc.method, u, tc.header, tc.value)
		t.Logf("%s %s: %d bytes allocated", tc.method, tc.header, n)
		if n > tc.max {
			t.Errorf("%s %s of a %d MiB result allocated %d bytes; want at most %d", tc.method, tc.header, size>>20, n, tc.max)
		}
	}
}

// Concurrent Puts of large values under one key, with readers: every read
// is one whole value, and at the end the key holds the last committed
// value's header and chunks only (no chunks of a replaced or of a losing
// generation are left).
func TestResultsConcurrentLargePuts(t *testing.T) {
	ctx := context.Background()
	db, r := openResultsT(t, t.TempDir())
	vals := make([][]byte, 4)
	for i := range vals {
		vals[i] = randomBytes(2*resultChunkSize+1000*i, byte(20+i))
	}
	isOne := func(b []byte) bool {
		for _, v := range vals {
			if bytes.Equal(b, v) {
				return true
			}
		}
		return false
	}
	if _, err := r.Put(ctx, "k", bytes.NewReader(vals[0]), ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5 {
				if _, err := r.PutLazy(ctx, "k", bytes.NewReader(vals[(w+i)%len(vals)]), ""); err != nil {
					t.Errorf("Put: %v", err)
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				rd, err := r.Open(ctx, "k")
				if err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				b, err := io.ReadAll(rd)
				rd.Close()
				if err != nil || !isOne(b) || int64(len(b)) != rd.Attributes().Size {
					t.Errorf("read %d bytes, err %v: not one whole value", len(b), err)
				}
			}
		})
	}
	wg.Wait()
	got, a := readAll(t, r, "k")
	if !isOne(got) {
		t.Fatal("the last value is none of those put")
	}
	chunks := (a.Size + resultChunkSize - 1) / resultChunkSize
	if keys := resultKeys(t, db, "k"); int64(len(keys)) != 1+chunks {
		t.Errorf("%d keys under k, want the header and %d chunks", len(keys), chunks)
	}
	if keys := keysUnder(t, db, []byte{pPending}); len(keys) != 0 {
		t.Errorf("%d markers left", len(keys))
	}
}

// A small Put of a key skips the read of an older value only when it knows
// there is none: a key written chunked before the reopen (at or below the
// ceiling at open) or since (recorded) still has its chunks deleted, in
// whatever order the keys are written.
func TestResultsSmallPutAfterChunked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, r := openResultsT(t, dir)
	put := func(key string, n int) {
		t.Helper()
		if _, err := r.Put(ctx, key, bytes.NewReader(randomBytes(n, 7)), ""); err != nil {
			t.Fatal(err)
		}
	}
	put("a-before", 2*resultChunkSize)
	r.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, r = openResultsT(t, dir)
	put("c-later", 10) // raises the ceiling above the keys below
	put("b-since", 2*resultChunkSize)
	put("z-last", 10)
	for _, k := range []string{"a-before", "b-since"} {
		put(k, 10)
		if keys := resultKeys(t, db, k); len(keys) != 1 {
			t.Errorf("%s: %d keys after a small Put over a chunked value, want 1", k, len(keys))
		}
	}
	// A new key below the ceiling, never written: no read needed, and none
	// made wrong.
	put("b-new", 10)
	if keys := resultKeys(t, db, "b-new"); len(keys) != 1 {
		t.Errorf("b-new: %d keys", len(keys))
	}
	if !db.results.unchunked(resultKey("b-new")) || db.results.unchunked(resultKey("b-since")) || db.results.unchunked(resultKey("a-before")) {
		t.Error("unchunked: wrong answer")
	}
}
