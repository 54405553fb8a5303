// Package resultstoretest is the conformance suite every result store
// driver must pass, in the shape of gocloud.dev's drivertest packages: it
// wraps the driver in the portable *resultstore.Store and exercises the
// portable methods, so that the portable layer is tested too:
//
//	func TestConformance(t *testing.T) {
//		resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
//			Open: func(t *testing.T) driver.Store { ... },
//		})
//	}
//
// Signed URLs to results are another port's, with its own suite
// (urlsign/signtest), which a driver runs through a signer over its store.
package resultstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
)

// Harness says how to open the driver under test.
type Harness struct {
	// Open returns an open store. It is called once per subtest, and the
	// suite closes the store when the subtest ends. Stores from different
	// calls may share one backend (directory, bucket, container): every
	// subtest uses its own random keys. Required.
	Open func(t *testing.T) driver.Store
}

// RunConformanceTests runs the suite against the driver h opens. Subtests
// run in parallel; RunConformanceTests returns when all have finished.
func RunConformanceTests(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("resultstoretest: Harness.Open is nil")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		// First, alone: it measures the process's allocations.
		{"OpenReadsLittle", testOpenReadsLittle},
		{"RoundTrip", testRoundTrip},
		{"ReaderSeeks", testReaderSeeks},
		{"ETagChangesWithBytes", testETagChanges},
		{"OverwriteReplaces", testOverwrite},
		{"BinaryBody", testBinary},
		{"EmptyBody", testEmpty},
		{"LargeBodyStreamed", testLarge},
		{"OpenMissing", testOpenMissing},
		{"Delete", testDelete},
		{"KeyNames", testKeyNames},
		{"InvalidKey", testInvalidKey},
		{"PutLazy", testPutLazy},
		{"FailedPutStoresNothing", testFailedPut},
		{"CanceledPut", testCanceledPut},
		{"Concurrent", testConcurrent},
	}
	t.Run("Conformance", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.name != "OpenReadsLittle" {
					t.Parallel()
				}
				tc.fn(t, newEnv(t, h))
			})
		}
	})
}

// env is one subtest's store: the driver the harness opened, in the
// portable type.
type env struct {
	*Store
	s *resultstore.Store
}

func newEnv(t *testing.T, h Harness) *env {
	d := h.Open(t)
	if d == nil {
		t.Fatal("Harness.Open returned nil")
	}
	s := resultstore.New(d)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{Store: NewStore(s), s: s}
}

// Store is a result store under test with the checks that the result
// store's suite and the signer's (urlsign/signtest) share: keys unique to
// one subtest, and Put and Open checked with their attributes.
type Store struct {
	S    *resultstore.Store
	uniq string
}

// NewStore returns s with keys unique to the caller.
func NewStore(s *resultstore.Store) *Store {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Store{S: s, uniq: hex.EncodeToString(b[:])}
}

// Key returns a key unique to this Store.
func (e *Store) Key(name string) string { return "rst-" + e.uniq + "-" + name }

func ctx(t *testing.T) context.Context { return t.Context() }

// MustPut puts body under key and checks the attributes Put returns.
func (e *Store) MustPut(t *testing.T, key string, body []byte, ct string) resultstore.Attributes {
	t.Helper()
	a, err := e.S.Put(ctx(t), key, bytes.NewReader(body), ct)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	CheckAttrs(t, "Put("+key+")", a, ct, int64(len(body)))
	return a
}

var strongETag = regexp.MustCompile(`^"[^"\x00-\x20\x7f]*"$`)

// CheckAttrs checks a's content type and size, that its ETag is a quoted
// strong entity tag and that it has a modification time.
func CheckAttrs(t *testing.T, what string, a resultstore.Attributes, ct string, size int64) {
	t.Helper()
	if a.ContentType != ct {
		t.Errorf("%s: ContentType = %q, want %q", what, a.ContentType, ct)
	}
	if a.Size != size {
		t.Errorf("%s: Size = %d, want %d", what, a.Size, size)
	}
	if !strongETag.MatchString(a.ETag) {
		t.Errorf("%s: ETag = %q, want a quoted strong entity tag", what, a.ETag)
	}
	if a.ModTime.IsZero() {
		t.Errorf("%s: ModTime is zero", what)
	}
}

// Read opens key and returns its bytes and attributes.
func (e *Store) Read(t *testing.T, key string) ([]byte, resultstore.Attributes) {
	t.Helper()
	r, err := e.S.Open(ctx(t), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return b, r.Attributes()
}

// ExpectContent checks that key reads want, with the attributes put
// returned.
func (e *Store) ExpectContent(t *testing.T, key string, want []byte, put resultstore.Attributes) {
	t.Helper()
	got, a := e.Read(t, key)
	if !bytes.Equal(got, want) {
		t.Errorf("Open(%q) read %s, want %s", key, Show(got), Show(want))
	}
	CheckAttrs(t, "Open("+key+").Attributes()", a, put.ContentType, int64(len(want)))
	if a.ETag != put.ETag {
		t.Errorf("Open(%q): ETag %s, but Put returned %s", key, a.ETag, put.ETag)
	}
}

// ExpectNotFound checks that opening key fails with ErrNotFound.
func (e *Store) ExpectNotFound(t *testing.T, key string) {
	t.Helper()
	r, err := e.S.Open(ctx(t), key)
	if err == nil {
		r.Close()
		t.Fatalf("Open(%q) succeeded; want ErrNotFound", key)
	}
	if !errors.Is(err, resultstore.ErrNotFound) || !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Open(%q) = %v; want an error that Is resultstore.ErrNotFound (driver.ErrNotFound)", key, err)
	}
}

// PutReadConcurrently puts, from 8 goroutines at once, 6 values each of
// growing sizes under keys of their own, reads each back and checks its
// bytes and ETag; then calls also (when not nil) with the key, the
// value's index within its goroutine and the bytes. It returns when all
// are done.
func (e *Store) PutReadConcurrently(t *testing.T, also func(key string, i int, body []byte)) {
	const workers, perWorker = 8, 6
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := e.Key(fmt.Sprintf("concurrent/%d/%d", w, i))
				body := bytes.Repeat([]byte(fmt.Sprintf("w%d-i%d;", w, i)), 100*(i+1))
				a, err := e.S.Put(ctx(t), k, bytes.NewReader(body), "text/plain")
				if err != nil {
					t.Errorf("Put(%q): %v", k, err)
					return
				}
				r, err := e.S.Open(ctx(t), k)
				if err != nil {
					t.Errorf("Open(%q): %v", k, err)
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, body) || r.Attributes().ETag != a.ETag {
					t.Errorf("Open(%q): %d bytes (want %d), err %v", k, len(got), len(body), err)
				}
				if also != nil {
					also(k, i, body)
				}
			}
		})
	}
	wg.Wait()
}

// Show quotes b for a message, cut to 64 bytes.
func Show(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q… (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// --- the tests -----------------------------------------------------------

func testRoundTrip(t *testing.T, e *env) {
	k := e.Key("round-trip")
	body := []byte("hello, result store")
	a := e.MustPut(t, k, body, "text/plain; charset=utf-8")
	e.ExpectContent(t, k, body, a)

	k2 := e.Key("round-trip.json")
	a2 := e.MustPut(t, k2, []byte(`{"id":"1","customername":"x"}`), "application/json")
	e.ExpectContent(t, k2, []byte(`{"id":"1","customername":"x"}`), a2)
	if a.ETag == a2.ETag {
		t.Errorf("different bytes have the same ETag %s", a.ETag)
	}
}

func testReaderSeeks(t *testing.T, e *env) {
	k := e.Key("seek")
	body := []byte("0123456789abcdef")
	e.MustPut(t, k, body, "application/octet-stream")
	r, err := e.s.Open(ctx(t), k)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := r.Seek(0, io.SeekEnd); err != nil || n != int64(len(body)) {
		t.Fatalf("Seek(0, End) = %d, %v; want %d", n, err, len(body))
	}
	if n, err := r.Seek(2, io.SeekStart); err != nil || n != 2 {
		t.Fatalf("Seek(2, Start) = %d, %v", n, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "2345" {
		t.Fatalf("read after Seek(2) = %q, %v; want 2345", buf, err)
	}
	if n, err := r.Seek(-3, io.SeekEnd); err != nil || n != int64(len(body))-3 {
		t.Fatalf("Seek(-3, End) = %d, %v", n, err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "def" {
		t.Fatalf("read after Seek(-3, End) = %q, %v; want def", rest, err)
	}
}

func testETagChanges(t *testing.T, e *env) {
	k := e.Key("etag")
	a1 := e.MustPut(t, k, []byte("version one"), "text/plain")
	a2 := e.MustPut(t, k, []byte("version two"), "text/plain")
	if a1.ETag == a2.ETag {
		t.Errorf("ETag %s did not change when the bytes changed", a1.ETag)
	}
	e.ExpectContent(t, k, []byte("version two"), a2)
}

func testOverwrite(t *testing.T, e *env) {
	k := e.Key("overwrite")
	e.MustPut(t, k, []byte("a rather long first value that is longer than the second"), "text/plain")
	a := e.MustPut(t, k, []byte(`{"short":2}`), "application/json")
	e.ExpectContent(t, k, []byte(`{"short":2}`), a)
}

func testBinary(t *testing.T, e *env) {
	k := e.Key("binary")
	body := make([]byte, 0, 3*256)
	for i := range 3 * 256 {
		body = append(body, byte(i*7+i/256))
	}
	body = append(body, 0, 0, '\r', '\n', 0xff, 0xfe)
	a := e.MustPut(t, k, body, "application/octet-stream")
	e.ExpectContent(t, k, body, a)
}

func testEmpty(t *testing.T, e *env) {
	k := e.Key("empty")
	a := e.MustPut(t, k, nil, "text/plain")
	e.ExpectContent(t, k, []byte{}, a)
}

// pseudoRandom is a non-seekable stream of n deterministic bytes.
type pseudoRandom struct {
	r *mrand.ChaCha8
	n int
}

func (p *pseudoRandom) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	b = b[:min(len(b), p.n, 32<<10)] // small chunks, like a network stream
	_, _ = p.r.Read(b)
	p.n -= len(b)
	return len(b), nil
}

// LargeSize is the size of PutLarge's result.
const LargeSize = 5 << 20

// PutLarge puts LargeSize deterministic bytes from a non-seekable stream
// read in small chunks, checks the attributes Put returns, and returns the
// key and the bytes.
func (e *Store) PutLarge(t *testing.T) (key string, want []byte) {
	t.Helper()
	seed := [32]byte{1, 2, 3}
	want = make([]byte, LargeSize)
	_, _ = mrand.NewChaCha8(seed).Read(want)
	key = e.Key("large/five-mebibytes.bin")
	a, err := e.S.Put(ctx(t), key, &pseudoRandom{r: mrand.NewChaCha8(seed), n: LargeSize}, "application/octet-stream")
	if err != nil {
		t.Fatalf("Put of 5 MiB: %v", err)
	}
	CheckAttrs(t, "Put(5 MiB)", a, "application/octet-stream", LargeSize)
	return key, want
}

func testLarge(t *testing.T, e *env) {
	const size = LargeSize
	k, want := e.PutLarge(t)
	r, err := e.s.Open(ctx(t), k)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	r.Close()
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), sha256Of(want)) {
		t.Fatalf("reading back 5 MiB: %d bytes, err %v, digest match %v", n, err, bytes.Equal(h.Sum(nil), sha256Of(want)))
	}
}

// testOpenReadsLittle checks that a reader does not read a result whole
// to serve a part of it: opening a large result, asking its attributes,
// seeking to its middle and reading one byte (what serving a HEAD, a 304
// or a one-byte Range takes) allocates, on average, far less than the
// result (a quarter of it, a generous bound: the embedded store allocates
// a few KiB). The allocations are the process's, so tests running in
// parallel add theirs: the least of five measurements counts.
func testOpenReadsLittle(t *testing.T, e *env) {
	k, want := e.PutLarge(t)
	openRead := func() {
		r, err := e.s.Open(ctx(t), k)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if a := r.Attributes(); a.Size != LargeSize {
			t.Fatalf("Attributes().Size = %d, want %d", a.Size, LargeSize)
		}
		if _, err := r.Seek(LargeSize/2, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(r, b); err != nil || b[0] != want[LargeSize/2] {
			t.Fatalf("one byte at %d: %x, %v; want %x", LargeSize/2, b, err, want[LargeSize/2])
		}
	}
	per := AllocBytes(4, openRead)
	t.Logf("Open + Attributes + Seek + 1-byte read of %d bytes: %d bytes allocated", LargeSize, per)
	if per > LargeSize/4 {
		t.Errorf("Open + Attributes + Seek + 1-byte read of a %d-byte result allocated %d bytes: the result is read whole", LargeSize, per)
	}
}

// AllocBytes returns the bytes f allocates, on average over runs calls
// (after one call that warms up pools and caches): the least of five
// such averages, as tests running meanwhile add their allocations to the
// process's.
func AllocBytes(runs int, f func()) uint64 {
	f()
	best := uint64(1<<64 - 1)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		best = min(best, (after.TotalAlloc-before.TotalAlloc)/uint64(runs))
	}
	return best
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func testOpenMissing(t *testing.T, e *env) {
	e.ExpectNotFound(t, e.Key("never-written"))
	e.ExpectNotFound(t, e.Key("never/written/either"))
}

func testDelete(t *testing.T, e *env) {
	k := e.Key("delete-me")
	e.MustPut(t, k, []byte("doomed"), "text/plain")
	if err := e.s.Delete(ctx(t), k); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.ExpectNotFound(t, k)
	if err := e.s.Delete(ctx(t), k); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	if err := e.s.Delete(ctx(t), e.Key("never-written")); err != nil {
		t.Errorf("Delete of a key never written: %v, want nil", err)
	}
	// Deleting one key leaves its neighbours alone.
	a := e.MustPut(t, e.Key("dir/keep"), []byte("keep"), "text/plain")
	e.MustPut(t, e.Key("dir/drop"), []byte("drop"), "text/plain")
	if err := e.s.Delete(ctx(t), e.Key("dir/drop")); err != nil {
		t.Fatal(err)
	}
	e.ExpectNotFound(t, e.Key("dir/drop"))
	e.ExpectContent(t, e.Key("dir/keep"), []byte("keep"), a)
}

// KeyNames are names that stress path escaping in keys and URLs; the
// signing suite (urlsign/signtest) signs URLs to them too.
var KeyNames = []string{
	"plain",
	"with/slashes/deep/down.txt",
	"space in name",
	"dir with space/file name.txt",
	"plus+sign",
	"a+b=c&d;e,f",
	"question?mark#hash",
	"percent%20literal",
	"encoded%2Fslash",
	"ünïcødé/日本語/файл.json",
	"emoji-🙂",
	"tilde~and'quote\"",
	".hidden/.dot",
	"data/0192e0d2-7c1a-7cc3-8a45-0f6e3b4a2c1d.blobdata",
}

func testKeyNames(t *testing.T, e *env) {
	for i, name := range KeyNames {
		k := e.Key(name)
		body := []byte(fmt.Sprintf("body %d of %q", i, name))
		if err := e.s.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, but the suite's keys must be accepted", k, err)
		}
		a := e.MustPut(t, k, body, "text/plain")
		e.ExpectContent(t, k, body, a)
	}
	// All are distinct: read them again after all were written.
	for i, name := range KeyNames {
		got, _ := e.Read(t, e.Key(name))
		if want := fmt.Sprintf("body %d of %q", i, name); string(got) != want {
			t.Errorf("key %q holds %q, want %q", name, got, want)
		}
	}
}

func testInvalidKey(t *testing.T, e *env) {
	if _, err := e.s.Put(ctx(t), "", strings.NewReader("x"), "text/plain"); err == nil {
		t.Error("Put with an empty key succeeded")
	}
	if _, err := e.s.PutLazy(ctx(t), "", strings.NewReader("x"), "text/plain"); err == nil {
		t.Error("PutLazy with an empty key succeeded")
	}
	if err := e.s.ValidateKey(""); err == nil {
		t.Error("ValidateKey of the empty key = nil, want an error")
	}
	// ValidateKey answers for exactly the keys Put accepts: a key it
	// refuses is refused by Put and PutLazy (and stores nothing), one it
	// accepts round-trips.
	for _, name := range []string{"double//slash", "dot/./segment", "dotdot/../segment", "trailing/", "control\x01char", "back\\slash"} {
		k := e.Key(name)
		if err := e.s.ValidateKey(k); err != nil {
			if _, err := e.s.Put(ctx(t), k, strings.NewReader("x"), "text/plain"); err == nil {
				t.Errorf("Put(%q) succeeded, but ValidateKey refuses the key", k)
			}
			if _, err := e.s.PutLazy(ctx(t), k, strings.NewReader("x"), "text/plain"); err == nil {
				t.Errorf("PutLazy(%q) succeeded, but ValidateKey refuses the key", k)
			}
			if r, err := e.s.Open(ctx(t), k); err == nil {
				r.Close()
				t.Errorf("Open(%q) succeeded, but ValidateKey refuses the key", k)
			}
			continue
		}
		body := []byte("body of " + name)
		a := e.MustPut(t, k, body, "text/plain")
		e.ExpectContent(t, k, body, a)
	}
}

// testPutLazy checks the portable PutLazy (driver.LazyPutter when the
// driver has it, Put otherwise): what it stores is visible at once, with
// the attributes it returned, and it replaces and is replaced like Put.
func testPutLazy(t *testing.T, e *env) {
	k := e.Key("put-lazy")
	body := []byte("stored without waiting")
	a, err := e.s.PutLazy(ctx(t), k, bytes.NewReader(body), "text/plain")
	if err != nil {
		t.Fatalf("PutLazy(%q): %v", k, err)
	}
	CheckAttrs(t, "PutLazy("+k+")", a, "text/plain", int64(len(body)))
	e.ExpectContent(t, k, body, a)

	// PutLazy over a Put, and Put over a PutLazy.
	a2, err := e.s.PutLazy(ctx(t), k, strings.NewReader(`{"lazy":2}`), "application/json")
	if err != nil {
		t.Fatalf("second PutLazy(%q): %v", k, err)
	}
	if a2.ETag == a.ETag {
		t.Errorf("ETag %s did not change when PutLazy changed the bytes", a.ETag)
	}
	e.ExpectContent(t, k, []byte(`{"lazy":2}`), a2)
	a3 := e.MustPut(t, k, []byte("durable again"), "text/plain")
	e.ExpectContent(t, k, []byte("durable again"), a3)

	// A failing reader stores nothing, and a delete removes it.
	k2 := e.Key("put-lazy-failed")
	if _, err := e.s.PutLazy(ctx(t), k2, &failingReader{n: 100 << 10}, "text/plain"); err == nil {
		t.Fatal("PutLazy from a failing reader succeeded")
	}
	e.ExpectNotFound(t, k2)
	if err := e.s.Delete(ctx(t), k); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.ExpectNotFound(t, k)
}

// failingReader yields n bytes, then an error.
type failingReader struct{ n int }

var errBroken = errors.New("resultstoretest: broken reader")

func (f *failingReader) Read(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errBroken
	}
	n := min(len(b), f.n)
	for i := range n {
		b[i] = 'x'
	}
	f.n -= n
	return n, nil
}

func testFailedPut(t *testing.T, e *env) {
	k := e.Key("failed-new")
	if _, err := e.s.Put(ctx(t), k, &failingReader{n: 100 << 10}, "text/plain"); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	e.ExpectNotFound(t, k)

	k = e.Key("failed-overwrite")
	a := e.MustPut(t, k, []byte("the old value"), "text/plain")
	if _, err := e.s.Put(ctx(t), k, &failingReader{n: 100 << 10}, "application/json"); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	e.ExpectContent(t, k, []byte("the old value"), a)
}

func testCanceledPut(t *testing.T, e *env) {
	k := e.Key("canceled")
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := e.s.Put(c, k, strings.NewReader("never stored"), "text/plain"); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	e.ExpectNotFound(t, k)
}

func testConcurrent(t *testing.T, e *env) {
	var wg sync.WaitGroup
	wg.Go(func() { e.PutReadConcurrently(t, nil) }) // alongside the contended key below
	// Readers of one key while it is overwritten see one whole value or the other.
	k := e.Key("concurrent/contended")
	v1, v2 := bytes.Repeat([]byte("1"), 64<<10), bytes.Repeat([]byte("2"), 32<<10)
	e.MustPut(t, k, v1, "text/plain")
	for range 2 {
		wg.Go(func() {
			for i := range 10 {
				v := v1
				if i%2 == 0 {
					v = v2
				}
				if _, err := e.s.Put(ctx(t), k, bytes.NewReader(v), "text/plain"); err != nil {
					t.Errorf("Put(%q): %v", k, err)
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				r, err := e.s.Open(ctx(t), k)
				if err != nil {
					t.Errorf("Open(%q) during overwrites: %v", k, err)
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !(bytes.Equal(got, v1) || bytes.Equal(got, v2)) || int64(len(got)) != r.Attributes().Size {
					t.Errorf("Open(%q) during overwrites: read %d bytes (size %d), err %v: a partial or mixed value", k, len(got), r.Attributes().Size, err)
				}
			}
		})
	}
	wg.Wait()
}
