package server

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// feedSplit feeds in to a new scanner in pieces of at most max bytes
// (random sizes from seed; max <= 0: all at once) and returns the
// request number it refuses from (0: none).
func feedSplit(in []byte, seed uint64, max int) int64 {
	f := &framing{}
	rng := rand.New(rand.NewPCG(seed, 7))
	for len(in) > 0 {
		n := len(in)
		if max > 0 {
			n = min(n, 1+rng.IntN(max))
		}
		f.feed(in[:n])
		in = in[n:]
	}
	return f.ambiguous.Load()
}

// A header line longer than the scanner keeps is still a header line: it
// neither ends the header block (which would let the Content-Length and
// Transfer-Encoding after it pass unseen) nor changes with the way the
// bytes arrive.
func TestFramingLongHeaderLine(t *testing.T) {
	pad := "X-Pad: " + strings.Repeat("a", 2*maxFramingLine) + "\r\n"
	smuggle := "POST /a HTTP/1.1\r\nHost: x\r\n" + pad + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	clean := "POST /a HTTP/1.1\r\nHost: x\r\n" + pad + "Content-Length: 2\r\n\r\nhi" + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, max := range []int{0, 1, 100, 5000} {
		if got := feedSplit([]byte(smuggle), 1, max); got != 1 {
			t.Errorf("smuggled after a long line, pieces of %d: refused from %d, want 1", max, got)
		}
		if got := feedSplit([]byte(clean), 1, max); got != 0 {
			t.Errorf("clean requests with a long line, pieces of %d: refused from %d, want 0", max, got)
		}
	}
	// A Content-Length the scanner cannot read is refused, not skipped.
	long := "POST /a HTTP/1.1\r\nContent-Length: " + strings.Repeat(" ", maxFramingLine) + "2\r\n\r\nhi"
	if got := feedSplit([]byte(long), 1, 0); got != 1 {
		t.Errorf("unreadable Content-Length: refused from %d, want 1", got)
	}
}

// FuzzFraming: whatever the bytes, the scanner does not panic, and what it
// finds does not depend on how the bytes arrive (one read, byte by byte,
// or random pieces).
func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\nPOST /a HTTP/1.0\nContent-Length: 2\nTransfer-Encoding: chunked\n\nhi",
		"POST /a HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", maxFramingLine+10) + "\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s), uint64(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		whole := feedSplit(in, seed, 0)
		if got := feedSplit(in, seed, 1); got != whole {
			t.Fatalf("byte by byte: refused from %d, at once: %d", got, whole)
		}
		if got := feedSplit(in, seed, 1+int(seed%64)); got != whole {
			t.Fatalf("in pieces: refused from %d, at once: %d", got, whole)
		}
	})
}
