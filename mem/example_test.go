package mem_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/arrhq/arr/engine"
	_ "github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/queue"
)

// An engine opened from a URL hands out its operations store and queue;
// its Atomic stores an operation and enqueues its message in one step.
func Example() {
	ctx := context.Background()
	e, err := engine.Open(ctx, "mem:example?maxDeliveries=5")
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close() // closes the ports it handed out
	st, err := e.Store(ctx)
	if err != nil {
		log.Fatal(err)
	}
	q, err := e.Queue(ctx)
	if err != nil {
		log.Fatal(err)
	}

	op := &operation.Operation{ID: "op-1", Route: "echo", Status: operation.Pending}
	stored, created, err := e.Atomic().SubmitAtomic(ctx, op, nil, queue.Message{ID: op.ID, Body: []byte("hello")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(stored.ID, stored.Version, created)
	got, err := st.Get(ctx, op.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Status)

	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	m := ds[0].Message()
	fmt.Println(m.ID, string(m.Body), ds[0].Attempt())
	if err := ds[0].Ack(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// op-1 1 true
	// pending
	// op-1 hello 1
}
