package server_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	arr "github.com/arrhq/arr"
	_ "github.com/arrhq/arr/embedded" // the engine of the default URLs
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

// A Go program registers its handlers on a ServeMux, as with net/http, and
// runs arr with them. Here the operation is submitted and awaited through
// the core, arr.Client, which is the Go API; over HTTP, POST /v1/upper answers 202 and the status
// monitor leads to the result.
func ExampleServeMux() {
	mux := server.NewServeMux()
	mux.HandleFunc("POST /v1/upper", func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		p.Report(50, "upper-casing")
		return &worker.Result{ContentType: "text/plain", Body: []byte(strings.ToUpper(string(t.Request.Body)))}, nil
	})
	// Settings per route: a timeout, attempts, a concurrency limit.
	mux.HandleRoute(server.Route{
		Pattern:     "POST /v1/reports/{kind}",
		Timeout:     30 * time.Second,
		MaxAttempts: 5,
		Concurrency: 2,
		Handler: worker.HandlerFunc(func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
			return nil, worker.Permanent(fmt.Errorf("no report for %s", t.Request.Path))
		}),
	})

	dir, _ := os.MkdirTemp("", "arr-example")
	defer os.RemoveAll(dir)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv, err := server.New(ctx, server.Config{Addr: "127.0.0.1:0", DataDir: dir, Mux: mux,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	c := srv.Client()
	op, _, err := c.Submit(ctx, arr.Submission{Route: "post-v1-upper",
		Request: &operation.Request{Method: "POST", Path: "/v1/upper", Body: []byte("hello")}})
	if err != nil {
		log.Fatal(err)
	}
	op, _ = c.Wait(ctx, op.ID)
	rd, _ := c.OpenResult(ctx, op)
	b, _ := io.ReadAll(rd)
	rd.Close()
	fmt.Println(op.Status, string(b))
	stop()
	<-done
	// Output: succeeded HELLO
}
