//go:build unix

package command_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/arrhq/arr/handler/command"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

type printProgress struct{}

func (printProgress) Report(percent int, message string) {
	fmt.Printf("progress %d%% %s\n", percent, message)
}

// An exec handler for a "thumbnail" route. At startup, Reap kills what a
// previous arr process that was SIGKILLed left running; then the handler is
// built and given to the worker pool. Here it is also run once by hand, as
// the pool would run it.
func Example() {
	state, err := os.MkdirTemp("", "arr-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(state)
	pids := filepath.Join(state, "exec-pids")

	if _, err := command.Reap(pids); err != nil {
		log.Fatal(err)
	}
	h, err := command.New(command.Config{
		// A real route would run e.g. a thumbnail script; this one reports
		// progress and upper-cases its input.
		Command:            []string{"/bin/sh", "-c", `echo "arr:progress 40 resizing" >&2; tr a-z A-Z`},
		ContentType:        "text/plain",
		KillGrace:          5 * time.Second,
		PermanentExitCodes: []int{65}, // EX_DATAERR: bad input, retrying won't help
		PIDDir:             pids,
	})
	if err != nil {
		log.Fatal(err)
	}
	cfg := worker.Config{Handlers: map[string]worker.Handler{"thumbnail": h}}

	res, err := cfg.Handlers["thumbnail"].Process(context.Background(), &worker.Task{
		ID: "0190a4c2-0000-7000-8000-000000000001", Route: "thumbnail", Attempt: 1,
		Request: &operation.Request{Method: "POST", Path: "/thumbnail", Body: []byte("a small image")},
	}, printProgress{})
	if err != nil {
		log.Fatal(err)
	}
	defer res.Reader.(io.Closer).Close()
	body, _ := io.ReadAll(res.Reader)
	fmt.Printf("%s: %s\n", res.ContentType, body)
	// Output:
	// progress 40% resizing
	// text/plain: A SMALL IMAGE
}
