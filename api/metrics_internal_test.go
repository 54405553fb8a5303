package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arrhq/arr/queue"
)

// /metrics reads the queue's Stats once for its four states, and a
// scraper polling fast reads it at most once a second: a count can cost a
// scan of the queue. A failed read exports -1.
func TestQueueCollectorReadsOncePerInterval(t *testing.T) {
	var reads int
	fail := false
	q := newQueueCollector(func(context.Context) (queue.Stats, error) {
		reads++
		if fail {
			return queue.Stats{}, errors.New("down")
		}
		return queue.Stats{Ready: 3, Delayed: 2, InFlight: 1, Dead: int64(reads)}, nil
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(q)
	want := `
# HELP arr_queue_messages Messages in the queue, by state (read at most once a second; -1 when the read failed).
# TYPE arr_queue_messages gauge
arr_queue_messages{state="dead"} 1
arr_queue_messages{state="delayed"} 2
arr_queue_messages{state="inflight"} 1
arr_queue_messages{state="ready"} 3
`
	for range 50 {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "arr_queue_messages"); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 {
		t.Fatalf("50 scrapes read the queue %d times, want 1", reads)
	}
	q.mu.Lock()
	q.at = time.Now().Add(-time.Hour)
	q.mu.Unlock()
	fail = true
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.NewReplacer(" 1\n", " -1\n", " 2\n", " -1\n", " 3\n", " -1\n").Replace(want)), "arr_queue_messages"); err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Fatalf("a stale read was not refreshed: %d reads", reads)
	}
}
