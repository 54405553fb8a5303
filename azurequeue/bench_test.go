package azurequeue

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/arrhq/arr/queue/driver"
)

// BenchmarkEnqueueReceiveAck measures one message through Enqueue,
// Receive and Ack over Azurite, one at a time: seven requests, three to
// the queue service (enqueue, dequeue, delete) and four to the table
// service (insert, read, replace, delete).
func BenchmarkEnqueueReceiveAck(b *testing.B) {
	e := newEnv(b)
	q := e.open(b, 0)
	ctx := context.Background()
	body := []byte("\x01echo")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := q.Enqueue(ctx, driver.Message{ID: "op-" + strconv.Itoa(i), Body: body}); err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ds, err := q.Receive(rctx, 1, time.Minute)
		cancel()
		if err != nil || len(ds) != 1 {
			b.Fatalf("Receive = %d, %v", len(ds), err)
		}
		if err := ds[0].Ack(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
