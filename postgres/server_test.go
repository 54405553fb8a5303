package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/pgtest"
	"github.com/arrhq/arr/operation"
	_ "github.com/arrhq/arr/resultstore/fileresult" // file:
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

// arr on PostgreSQL end to end: an api-only server and a worker-only
// server, each with its own pool and listener (the application_name
// differs), share a schema and a result directory. The api's Wait is woken
// by the worker's writes through NOTIFY.
func TestServerOnPostgres(t *testing.T) {
	u := pgtest.URL(t)
	results := "file:" + t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := server.NewServeMux()
	mux.HandleFunc("POST /v1/upper", func(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
		p.Report(50, "upper-casing")
		return &worker.Result{ContentType: "text/plain", Body: []byte(strings.ToUpper(string(t.Request.Body)))}, nil
	})
	start := func(name string, workers int) *server.Server {
		t.Helper()
		pu := u + "&application_name=" + name
		srv, err := server.New(ctx, server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), StoreURL: pu, QueueURL: pu,
			ResultsURL: results, Mux: mux, Workers: workers, Logger: logger})
		if err != nil {
			t.Fatalf("server %s: %v", name, err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("server %s: %v", name, err)
			}
		})
		return srv
	}
	api := start("api", -1).Client()
	start("worker", 2)

	for i := range 5 {
		op, _, err := api.Submit(ctx, arr.Submission{Route: "post-v1-upper",
			Request: &operation.Request{Method: "POST", Path: "/v1/upper", Body: []byte("hello")}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		op, err = api.Wait(wctx, op.ID)
		cancel()
		if err != nil || op.Status != operation.Succeeded {
			t.Fatalf("operation %d: %v, %v", i, op, err)
		}
		rd, err := api.OpenResult(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rd)
		rd.Close()
		if string(b) != "HELLO" {
			t.Fatalf("result %q", b)
		}
	}
}
