package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/api"
)

// benchConns is the number of connections or streams each benchmark
// holds open at once.
const benchConns = 500

// benchServer runs a real Server (see serving), stream caps off.
func benchServer(b *testing.B) string {
	b.Helper()
	addr, stop := serving(b, Config{API: api.Config{MaxStreams: -1, MaxStreamsPerPrincipal: -1}})
	b.Cleanup(stop)
	return addr
}

// heapAndStacks is the memory the Go runtime holds for live objects and
// goroutine stacks, after a collection.
func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// holdConns opens benchConns raw connections, sends each req and reads
// until want appears in what it got back, then reports the memory they
// hold (server and client sides together, in this process; the client
// side is a bare net.Conn) per connection.
func holdConns(b *testing.B, addr, req, want string, unit string) {
	b.Helper()
	var perConn float64
	for range b.N {
		before := heapAndStacks()
		conns := make([]net.Conn, 0, benchConns)
		buf := make([]byte, 4096)
		for range benchConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := io.WriteString(c, req); err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := ""
			for !strings.Contains(got, want) {
				n, err := c.Read(buf)
				if err != nil {
					b.Fatalf("%v after %q", err, got)
				}
				got += string(buf[:n])
			}
		}
		time.Sleep(100 * time.Millisecond) // the server's goroutines settle
		after := heapAndStacks()
		perConn = (float64(after) - float64(before)) / benchConns
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(perConn, unit)
}

// Memory held per idle keep-alive connection (after one request).
func BenchmarkMemoryPerIdleConn(b *testing.B) {
	addr := benchServer(b)
	holdConns(b, addr, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n", "ok\n", "bytes/conn")
}

// Memory held per open SSE stream of a pending operation.
func BenchmarkMemoryPerSSEStream(b *testing.B) {
	addr := benchServer(b)
	res, err := http.Post("http://"+addr+"/v1/echo", "application/json", strings.NewReader(`{}`))
	if err != nil {
		b.Fatal(err)
	}
	var op struct{ ID string }
	err = json.NewDecoder(bufio.NewReader(res.Body)).Decode(&op)
	res.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	holdConns(b, addr, fmt.Sprintf("GET /v1/operations/%s/events HTTP/1.1\r\nHost: %s\r\n\r\n", op.ID, addr),
		"event: operation", "bytes/stream")
}
