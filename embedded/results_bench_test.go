package embedded

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/arrhq/arr/resultstore"
)

// benchResults opens a DB in a temporary directory and its result store.
func benchResults(b *testing.B) *Results {
	b.Helper()
	db := openT(b, b.TempDir(), Options{})
	if !db.acquire() {
		b.Fatal("acquire")
	}
	r := &Results{db: db}
	b.Cleanup(func() { r.Close(); db.Close() })
	return r
}

// BenchmarkResultPutSmall is the worker's write of a small result (an
// echo of a 100-byte body): PutLazy under a new key (the id's, above every
// key written before), as W1 does thousands of times a second.
func BenchmarkResultPutSmall(b *testing.B) {
	r := benchResults(b)
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := r.PutLazy(ctx, fmt.Sprintf("%020d.1", i), bytes.NewReader(body), "application/json"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResultOpenRead opens a 16 MiB result and reads it whole.
func BenchmarkResultOpenRead(b *testing.B) {
	r := benchResults(b)
	ctx := context.Background()
	const size = 16 << 20
	if _, err := r.Put(ctx, "big", bytes.NewReader(make([]byte, size)), ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		rd, err := r.Open(ctx, "big")
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, io.LimitReader(rd, size)); err != nil || n != size {
			b.Fatal(n, err)
		}
		rd.Close()
	}
}

// BenchmarkResultHEAD answers HEAD and If-None-Match GET requests (304)
// for a 60 MiB result's signed URL through the signer's handler, and a
// one-byte Range GET: each should cost the header's read, not the result's.
func BenchmarkResultHEAD(b *testing.B) {
	r := benchResults(b)
	ctx := context.Background()
	const size = 60 << 20
	a, err := r.Put(ctx, "big", bytes.NewReader(make([]byte, size)), "")
	if err != nil {
		b.Fatal(err)
	}
	sg, err := openSigner(ctx, r.db, url.Values{}, resultstore.New(r))
	if err != nil {
		b.Fatal(err)
	}
	u, err := sg.SignedURL(ctx, "big", time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	_, h := sg.Handler()
	for _, tc := range []struct {
		name, method, header, value string
		want                        int
	}{
		{"HEAD", "HEAD", "", "", 200},
		{"IfNoneMatch", "GET", "If-None-Match", a.ETag, 304},
		{"Range1", "GET", "Range", "bytes=1000-1000", 206},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(tc.method, u, nil)
				if tc.header != "" {
					req.Header.Set(tc.header, tc.value)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != tc.want {
					b.Fatalf("%s: %d, want %d", tc.name, w.Code, tc.want)
				}
			}
		})
	}
}
