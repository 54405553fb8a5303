package mem_test

import (
	"context"
	"fmt"
	"log"
	"time"

	_ "github.com/arrhq/arr/mem"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
)

// A store and a queue opened from URLs naming one engine: Submit stores
// the operation and enqueues its message in one step.
func Example() {
	ctx := context.Background()
	st, err := opstore.OpenStore(ctx, "mem:example")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	q, err := queue.OpenQueue(ctx, "mem:example?maxDeliveries=5")
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	op := &operation.Operation{ID: "op-1", Route: "echo", Status: operation.Pending}
	stored, created, err := st.Submit(ctx, op, nil, q, queue.Message{ID: op.ID, Body: []byte("hello")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(stored.ID, stored.Version, created)

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
	// op-1 hello 1
}
