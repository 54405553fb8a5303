package api_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/server"
)

// The submit path over real loopback HTTP, against a bare net/http server
// that answers 202 with a Location (the HTTP ceiling), in the same run:
//
//	go test -run '^$' -bench 'Submit|Bare202|StatusGet' -benchtime 20000x ./api/
//
// Both use 64 concurrent clients and a 1 KiB JSON body; arr's 202 is sent
// after the operation is fsync'd (group commit). Workers are off, so the
// figure is the durable accept rate (the W1).

const benchClients = 64

var benchBody = []byte(`{"id":"1234","customername":"Contoso","pad":"` + strings.Repeat("x", 1024-48) + `"}`)

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
}

func runParallel(b *testing.B, do func(c *http.Client) error) {
	c := benchClient()
	// RunParallel starts SetParallelism goroutines per GOMAXPROCS.
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := do(c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

func post(c *http.Client, url string, want int) error {
	res, err := c.Post(url, "application/json", bytes.NewReader(benchBody))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		return &statusErr{res.StatusCode}
	}
	return nil
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return "status " + http.StatusText(e.code) }

func BenchmarkBare202(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", "http://"+r.Host+"/v1/operations/"+string(rune('a'+n.Add(1)%26)))
		w.WriteHeader(http.StatusAccepted)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/echo"
	runParallel(b, func(c *http.Client) error { return post(c, url, 202) })
}

func benchServer(b *testing.B, workers int) string {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{Addr: "127.0.0.1:0", DataDir: b.TempDir(), Workers: workers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + srv.Addr()
}

func BenchmarkSubmit(b *testing.B) {
	url := benchServer(b, -1) + "/v1/echo"
	runParallel(b, func(c *http.Client) error { return post(c, url, 202) })
}

func BenchmarkSubmitSeedRoute(b *testing.B) {
	url := benchServer(b, -1) + "/api/AsyncProcessingWorkAcceptor"
	runParallel(b, func(c *http.Client) error { return post(c, url, 202) })
}

// Status monitor reads of existing operations (the W4).
func BenchmarkStatusGet(b *testing.B) {
	base := benchServer(b, -1)
	c := benchClient()
	ids := make([]string, 1000)
	for i := range ids {
		res, err := c.Post(base+"/v1/echo", "application/json", bytes.NewReader(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = strings.TrimPrefix(res.Header.Get("Operation-Location"), base+"/v1/operations/")
		res.Body.Close()
	}
	var i atomic.Int64
	runParallel(b, func(c *http.Client) error {
		res, err := c.Get(base + "/v1/operations/" + ids[i.Add(1)%int64(len(ids))])
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return &statusErr{res.StatusCode}
		}
		return nil
	})
}
