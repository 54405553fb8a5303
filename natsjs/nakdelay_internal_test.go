package natsjs

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/arrhq/arr/queue/driver"
)

// A Nak with a delay of a delivery whose message the mover has just moved
// to the work stream, but whose delayed copy it has not acked yet, keeps
// the message: the delay stream (one message per ID) refuses the new
// delayed copy while the moved one is there, and the Nak waits for the
// mover's ack and writes it then. It used to take the refusal for an
// existing delayed run and ack the delivery: once the mover acked its
// copy, no copy was left (the conformance suite's NakDelay saw Delayed 0
// on a loaded machine).
func TestNakWhileTheMoverMoves(t *testing.T) {
	nc, prefix := testConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := OpenQueue(ctx, nc, Config{Prefix: prefix, AckWait: 30 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = q.Close()
		for _, name := range []string{q.workName, q.delayName, q.deadName} {
			_ = q.js.DeleteStream(context.Background(), name)
		}
	}()
	// This test plays the mover.
	q.stopMover()
	<-q.moverDone

	if err := q.Enqueue(ctx, driver.Message{ID: "a", Body: []byte("body")}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Receive(ctx, 1, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive: %d, %v", len(ds), err)
	}
	// The delayed copy the delivery was moved from, due and not yet acked.
	moved := nats.NewMsg(q.subj("delay", "a"))
	moved.Header.Set(hdrID, "a")
	moved.Header.Set(hdrDue, strconv.FormatInt(time.Now().Add(-time.Second).UnixNano(), 10))
	moved.Data = []byte("body")
	ack, err := q.js.PublishMsg(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}

	naked := make(chan error, 1)
	go func() { naked <- ds[0].Nak(ctx, time.Hour) }()
	select {
	case err := <-naked:
		st, _ := q.Stats(ctx)
		t.Fatalf("Nak returned (%v) while the moved copy was still there: stats %+v", err, st)
	case <-time.After(300 * time.Millisecond):
	}
	if err := q.delay.DeleteMsg(ctx, ack.Sequence); err != nil { // the mover's ack
		t.Fatal(err)
	}
	if err := <-naked; err != nil {
		t.Fatalf("Nak: %v", err)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (driver.Stats{Delayed: 1}) {
		t.Fatalf("after the Nak: %+v, want the message delayed", st)
	}
	there, err := q.delay.GetLastMsgForSubject(ctx, q.subj("delay", "a"))
	if err != nil {
		t.Fatal(err)
	}
	due, _ := strconv.ParseInt(there.Header.Get(hdrDue), 10, 64)
	if time.Until(time.Unix(0, due)) < 59*time.Minute {
		t.Fatalf("the delayed copy is due %v, want in an hour", time.Unix(0, due))
	}
}
