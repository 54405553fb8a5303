package arr

import (
	"context"
	"testing"
	"time"
)

// While one caller reads a fresh depth, the others get the last estimate
// at once (plus what this process enqueued), and a slow read makes the
// depth reused for longer: depthReadShare times the read.
func TestDepthGaugeReadsOneAtATimeWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	var reads int
	var depth int64 = 10
	g := &depthGauge{read: func(context.Context) (int64, error) {
		reads++
		<-release
		return depth, nil
	}}
	ctx := context.Background()
	first := make(chan int64)
	go func() { d, _ := g.get(ctx); first <- d }()
	release <- struct{}{} // the first call has nothing to return but a read
	if d := <-first; d != 10 {
		t.Fatalf("first depth %d, want 10", d)
	}

	// Stale: the next call reads, and while it does, others return at once.
	g.mu.Lock()
	g.at = time.Now().Add(-time.Hour)
	g.mu.Unlock()
	depth = 50
	second := make(chan int64)
	go func() { d, _ := g.get(ctx); second <- d }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		r := g.reading
		g.mu.Unlock()
		if r {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second call did not start a read")
		}
		time.Sleep(time.Millisecond)
	}
	g.enqueued()
	done := make(chan int64)
	go func() { d, _ := g.get(ctx); done <- d }()
	select {
	case d := <-done:
		if d != 11 {
			t.Fatalf("depth during a read %d, want the last read's 10 plus 1 enqueued", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call waited for the read in flight")
	}
	time.Sleep(30 * time.Millisecond) // a slow read
	release <- struct{}{}
	// The one enqueued during the read may be in it: it is counted once
	// more until the next read rather than not at all.
	if d := <-second; d != 51 {
		t.Fatalf("depth after the read %d, want 50 plus the 1 enqueued during it", d)
	}
	if reads != 2 {
		t.Fatalf("%d reads, want 2", reads)
	}
	g.mu.Lock()
	ttl := g.ttl
	g.mu.Unlock()
	if ttl < depthReadShare*30*time.Millisecond {
		t.Fatalf("a read of over 30ms is reused for %v, want at least %v", ttl, depthReadShare*30*time.Millisecond)
	}
}
