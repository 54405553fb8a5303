package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/arrhq/arr/operation"
	opdriver "github.com/arrhq/arr/opstore/driver"
	"github.com/arrhq/arr/opstore/opstoretest"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// fsyncs returns how many WAL fsyncs the DB has done.
func fsyncs(db *DB) uint64 {
	h := db.pdb.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

type benchEnv struct {
	db   *DB
	s    *store
	q    qdriver.Queue
	cpu0 time.Duration
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	db := openT(b, b.TempDir(), Options{})
	e := &benchEnv{db: db, s: db.Store().(*store), q: db.Queue()}
	b.Cleanup(func() {
		e.q.Close()
		e.s.Close()
		db.Close()
	})
	return e
}

var body1K = func() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// submit is what the api does for one request: an operation with an
// idempotency key, its 1 KiB request and its queue message, in one write.
func (e *benchEnv) submit(b *testing.B) {
	id := opstoretest.NewID()
	now := time.Now().UTC()
	op := &operation.Operation{
		ID: id, Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now,
		IdempotencyKey: "key-" + id, RequestHash: "sha256:0123456789abcdef",
		ExpiresAt: now.Add(24 * time.Hour),
		Meta:      map[string]string{"RequestStatusURL": "http://localhost:8080/v1/operations/" + id},
	}
	req := &operation.Request{Method: "POST", Path: "/v1/echo", Header: map[string][]string{"Content-Type": {"application/json"}}, Body: body1K}
	if _, created, err := e.s.SubmitAtomic(context.Background(), op, req, qdriver.Message{ID: id, Body: []byte(id)}); err != nil || !created {
		b.Fatalf("SubmitAtomic = %v, %v", created, err)
	}
}

// cpuTime returns the CPU time (user+system) the process has used: on a
// machine shared with other work, CPU per op is steadier than ops/s.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (e *benchEnv) report(b *testing.B, syncsBefore uint64) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(cpuTime()-e.cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(fsyncs(e.db)-syncsBefore)/float64(b.N), "fsyncs/op")
	if h := e.db.pdb.Metrics().LogWriter.FsyncLatency; h != nil {
		var m dto.Metric
		if h.Write(&m) == nil && m.GetHistogram().GetSampleCount() > 0 {
			b.ReportMetric(m.GetHistogram().GetSampleSum()/float64(m.GetHistogram().GetSampleCount())/1e3, "µs/fsync")
		}
	}
}

// BenchmarkSubmit: 64 concurrent submitters (SetParallelism(32) on this
// 2-core machine) share fsyncs through Pebble's commit pipeline.
func BenchmarkSubmit(b *testing.B) {
	e := newBenchEnv(b)
	b.SetParallelism(32)
	b.ReportAllocs()
	f0 := fsyncs(e.db)
	e.cpu0 = cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.submit(b)
		}
	})
	b.StopTimer()
	e.report(b, f0)
}

// BenchmarkSubmitSerial: one submitter, so one fsync per submit.
func BenchmarkSubmitSerial(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	f0 := fsyncs(e.db)
	e.cpu0 = cpuTime()
	b.ResetTimer()
	for range b.N {
		e.submit(b)
	}
	b.StopTimer()
	e.report(b, f0)
}

func BenchmarkGet(b *testing.B) {
	e := newBenchEnv(b)
	const n = 10_000
	ids := make([]string, n)
	ctx := context.Background()
	for i := range ids {
		ids[i] = opstoretest.NewID()
		now := time.Now().UTC()
		op := &operation.Operation{ID: ids[i], Route: "echo", Status: operation.Running, CreatedAt: now, UpdatedAt: now, PercentComplete: 40, Message: "working"}
		if _, _, err := e.s.Create(ctx, op, &operation.Request{Method: "POST", Body: body1K}); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.db.pdb.Flush(); err != nil { // read from sstables, not only the memtable
		b.Fatal(err)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%n]
			if _, err := e.s.Get(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func (e *benchEnv) fill(b *testing.B, n int) {
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		msgs := make([]qdriver.Message, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			msgs = append(msgs, qdriver.Message{ID: fmt.Sprintf("m%09d", j), Body: []byte(opstoretest.NewID())})
		}
		if err := e.q.Enqueue(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiveAck: 64 concurrent workers each Receive one message and
// Ack it (the Acks share fsyncs).
func BenchmarkReceiveAck(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, b.N)
	ctx := context.Background()
	b.SetParallelism(32)
	b.ReportAllocs()
	f0 := fsyncs(e.db)
	e.cpu0 = cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ds, err := e.q.Receive(ctx, 1, time.Minute)
			if err != nil || len(ds) != 1 {
				b.Fatalf("Receive = %d, %v", len(ds), err)
			}
			if err := ds[0].Ack(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	e.report(b, f0)
}

// BenchmarkReceiveAckSerial: one worker, one fsync per Ack.
func BenchmarkReceiveAckSerial(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, b.N)
	ctx := context.Background()
	b.ReportAllocs()
	f0 := fsyncs(e.db)
	e.cpu0 = cpuTime()
	b.ResetTimer()
	for range b.N {
		ds, err := e.q.Receive(ctx, 1, time.Minute)
		if err != nil || len(ds) != 1 {
			b.Fatalf("Receive = %d, %v", len(ds), err)
		}
		if err := ds[0].Ack(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	e.report(b, f0)
}

// BenchmarkEnqueueToWaitingReceivers: 64 idle workers wait in Receive while
// 8 producers enqueue one message at a time (each message wakes workers).
func BenchmarkEnqueueToWaitingReceivers(b *testing.B) {
	e := newBenchEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got atomic.Int64
	done := make(chan struct{})
	for range 64 {
		go func() {
			for {
				ds, err := e.q.Receive(ctx, 1, time.Minute)
				if err != nil {
					return
				}
				for _, d := range ds {
					_ = d.Ack(ctx)
					if got.Add(1) == int64(b.N) {
						close(done)
					}
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	var seq atomic.Int64
	f0 := fsyncs(e.db)
	e.cpu0 = cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := seq.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := e.q.Enqueue(ctx, qdriver.Message{ID: fmt.Sprint("w", i)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	<-done
	b.StopTimer()
	e.report(b, f0)
}

// BenchmarkListOwner: a page of one owner's operations among 100 and
// 10,000 of other owners' (see opstoretest.BenchmarkListOwner).
func BenchmarkListOwner(b *testing.B) {
	opstoretest.BenchmarkListOwner(b, func(b *testing.B) opdriver.Store {
		db := openT(b, b.TempDir(), Options{})
		b.Cleanup(func() { db.Close() })
		return db.Store()
	})
}
