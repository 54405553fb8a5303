package forward_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/arrhq/arr/handler/forward"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

func Example() {
	// The upstream service: it greets whoever the body names.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s: hello, %s (operation %s, attempt %s)",
			r.Method, r.URL.Path, name, r.Header.Get("X-Arr-Operation-Id"), r.Header.Get("X-Arr-Attempt"))
	}))
	defer upstream.Close()

	h, err := forward.New(forward.Config{URL: upstream.URL + "/api"})
	if err != nil {
		log.Fatal(err)
	}
	// What a worker would do with a stored request.
	res, err := h.Process(context.Background(), &worker.Task{
		ID: "op-1", Route: "greet", Attempt: 1,
		Request: &operation.Request{Method: "POST", Path: "/greet", Body: []byte("world")},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Reader)
	res.Reader.(io.Closer).Close()
	fmt.Println(res.StatusCode, res.ContentType)
	fmt.Println(string(body))
	// Output:
	// 200 text/plain
	// POST /api/greet: hello, world (operation op-1, attempt 1)
}
