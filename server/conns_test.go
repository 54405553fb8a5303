package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/internal/testcert"
)

// The framing scanner finds the header block that has both Content-Length
// and Transfer-Encoding, numbered as net/http hands requests to the
// handler, and is not fooled by header-like lines in bodies, however the
// bytes are split between reads.
func TestFramingFindsAmbiguousRequest(t *testing.T) {
	const fake = "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name string
		in   string
		want int64 // the ambiguous request's number, 0 for none
	}{
		{"none", "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 0},
		{"first", "POST /a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1},
		{"case and order", "POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH:  4 \r\n\r\n0\r\n\r\n", 1},
		{"after a body", "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" +
			"POST /b HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 2},
		{"fake in a body", "POST /a HTTP/1.1\r\nContent-Length: " + strconv.Itoa(len(fake)) + "\r\n\r\n" + fake +
			"GET / HTTP/1.1\r\n\r\n", 0},
		{"fake in chunks", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(fake)), 16) + ";ext=1\r\n" + fake + "\r\n0\r\nTrailer: x\r\n\r\n" +
			"POST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 2},
		{"OPTIONS * is not counted", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1},
		{"HTTP/1.0", "POST /a HTTP/1.0\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi", 1},
		{"bare LF", "POST /a HTTP/1.1\nContent-Length: 2\n\nhiPOST /b HTTP/1.1\nContent-Length: 2\nTransfer-Encoding: chunked\n\n0\n\n", 2},
	}
	for _, c := range cases {
		for split := range 20 {
			f := &framing{}
			in := []byte(c.in)
			rng := rand.New(rand.NewPCG(uint64(split), 1))
			for len(in) > 0 {
				n := len(in)
				if split > 0 {
					n = min(n, 1+rng.IntN(split*2))
				}
				f.feed(in[:n])
				in = in[n:]
			}
			if got := f.ambiguous.Load(); got != c.want {
				t.Errorf("%s (split %d): ambiguous request %d, want %d", c.name, split, got, c.want)
			}
		}
	}
}

// At the connection cap, a new connection closes the one idle longest;
// with none idle, it is answered 503 with Retry-After and closed.
func TestConnCapClosesIdleThenRefuses(t *testing.T) {
	addr, stop := serving(t, Config{Conns: ConnConfig{MaxConns: 2}})
	var opened []net.Conn
	defer func() {
		for _, c := range opened { // before the shutdown, which would wait for them
			c.Close()
		}
		stop()
	}()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		opened = append(opened, c)
		return c, bufio.NewReader(c)
	}
	idle, idleR := dial()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	if res, err := http.ReadResponse(idleR, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	} else {
		_, _ = io.Copy(io.Discard, res.Body)
	}
	time.Sleep(50 * time.Millisecond) // the server marks it idle
	busy, _ := dial()
	fmt.Fprintf(busy, "GET /healthz HTTP/1.1\r\n") // half a request: not idle
	_, _ = dial()                                  // takes the idle connection's place
	if _, err := idleR.ReadByte(); err == nil {
		t.Fatal("the idle connection was not closed")
	}
	_, refusedR := dial()
	res, err := http.ReadResponse(refusedR, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), api.ProblemTooManyConnections) {
		t.Fatalf("beyond the cap: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if _, err := refusedR.ReadByte(); err != io.EOF {
		t.Fatalf("refused connection not closed: %v", err)
	}
}

// Under TLS, a connection beyond the cap is answered 503 over TLS.
func TestConnCapRefusesOverTLS(t *testing.T) {
	ca := testcert.NewCA(t, "arr test")
	certPEM, keyPEM := ca.Issue(t, true, "arr")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := serving(t, Config{Conns: ConnConfig{MaxConns: 1}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	var opened []net.Conn
	defer func() {
		for _, c := range opened { // before the shutdown, which would wait for them
			c.Close()
		}
		stop()
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	dial := func() net.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		opened = append(opened, c)
		return c
	}
	held := dial()
	fmt.Fprintf(held, "GET /healthz HTTP/1.1\r\n") // half a request: not idle
	time.Sleep(50 * time.Millisecond)
	res, err := http.ReadResponse(bufio.NewReader(dial()), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 503 || !strings.Contains(string(body), api.ProblemTooManyConnections) {
		t.Fatalf("beyond the cap over TLS: %d %s", res.StatusCode, body)
	}
}

// serving runs a Server of cfg on a loopback port, with the embedded
// store in a temporary directory, no workers (operations stay pending)
// and no log; stop shuts it down.
func serving(tb testing.TB, cfg Config) (addr string, stop func()) {
	tb.Helper()
	cfg.Addr, cfg.DataDir, cfg.Workers = "127.0.0.1:0", tb.TempDir(), -1
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	return s.Addr(), func() {
		cancel()
		<-done
	}
}
