// Command embed is a Go program that embeds arr and registers its own
// handler: POST /v1/wordcount counts the words of the body, reporting
// progress as it goes, and answers with JSON.
//
//	go run ./examples/embed
//	curl -i -X POST -H 'Content-Type: text/markdown' --data-binary @README.md localhost:8080/v1/wordcount
//
// Everything else — 202, the status monitor, retries, signed result URLs,
// the seed's routes — is arr's.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/arrhq/arr/embedded" // the engine of the default URLs: this program links no other
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

func main() {
	mux := server.NewServeMux()
	mux.HandleRoute(server.Route{
		Pattern:     "POST /v1/wordcount",
		Handler:     worker.HandlerFunc(wordCount),
		MediaTypes:  []string{"text/plain", "text/markdown"},
		Timeout:     time.Minute,
		MaxAttempts: 5,
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, server.Config{Addr: "127.0.0.1:8080", DataDir: "arr-data", Mux: mux})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving on http://127.0.0.1:8080")
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}

// wordCount counts the words of the request body.
func wordCount(ctx context.Context, t *worker.Task, p worker.Progress) (*worker.Result, error) {
	body := t.Request.Body
	if len(body) == 0 {
		// Retrying cannot help: fail at once.
		return nil, worker.Permanent(errors.New("the body is empty"))
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Split(bufio.ScanWords)
	words, read := 0, 0
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return nil, err // canceled, timed out or shutting down
		}
		words++
		read += len(sc.Bytes()) + 1
		if words%10000 == 0 {
			p.Report(100*read/len(body), "counting")
		}
	}
	out, _ := json.Marshal(map[string]int{"words": words, "bytes": len(body)})
	return &worker.Result{ContentType: "application/json", Body: out}, nil
}
