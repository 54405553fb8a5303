package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// payload is the 1 KiB JSON body of submission i: the seed's customer
// document, padded with pseudo-random letters (the same for the same i), so
// that no store gets to compress it away.
func payload(i int) []byte {
	head := `{"id":"` + strconv.Itoa(i) + `","customername":"Contoso","pad":"`
	b := make([]byte, 0, 1024)
	b = append(b, head...)
	r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	for len(b) < 1024-2 {
		b = append(b, byte('a'+r.IntN(26)))
	}
	return append(b, `"}`...)
}

// sample is one repetition of one workload on one system.
type sample struct {
	rate    float64    // ops/s (W1, W2, W4)
	cpuPerK float64    // CPU seconds per 1,000 operations
	lat     [3]float64 // p50, p90, p99 in ms (W3)
}

// parallel runs do(i) for i in [0, n) from c goroutines and returns the
// elapsed time and the first error.
func parallel(ctx context.Context, n, c int, do func(context.Context, int) error) (time.Duration, error) {
	var next atomic.Int64
	var first error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := do(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

func perK(cpu time.Duration, ops int) float64 { return cpu.Seconds() / float64(ops) * 1000 }

// w1 is durable accept: n submissions from c clients, no workers.
func w1(ctx context.Context, s System, n, c int) (sample, error) {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = payload(i)
	}
	m := startCPU(s)
	el, err := parallel(ctx, n, c, func(ctx context.Context, i int) error {
		_, err := s.Submit(ctx, bodies[i])
		return err
	})
	cpu := m.used()
	if err != nil {
		return sample{}, err
	}
	return sample{rate: float64(n) / el.Seconds(), cpuPerK: perK(cpu, n)}, nil
}

// w2 is end to end: n submissions from c clients with workers running,
// timed until every result is readable.
func w2(ctx context.Context, s System, n, c, workers int) (sample, error) {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = payload(i)
	}
	m := startCPU(s)
	start := time.Now()
	_, err := parallel(ctx, n, c, func(ctx context.Context, i int) error {
		_, err := s.Submit(ctx, bodies[i])
		return err
	})
	if err != nil {
		return sample{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := s.WaitCompleted(wctx, n); err != nil {
		return sample{}, err
	}
	el := time.Since(start)
	cpu := m.used()
	return sample{rate: float64(n) / el.Seconds(), cpuPerK: perK(cpu, n)}, nil
}

// w3 is completion latency: n operations one at a time, each submitted and
// waited for; the result must be the payload.
func w3(ctx context.Context, s System, n, workers int) (sample, error) {
	for i := range 50 { // warm up connections and caches
		if _, err := s.SubmitAndWait(ctx, payload(i)); err != nil {
			return sample{}, err
		}
	}
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = payload(i)
	}
	lat := make([]float64, 0, n)
	m := startCPU(s)
	for i, body := range bodies {
		t := time.Now()
		got, err := s.SubmitAndWait(ctx, body)
		lat = append(lat, float64(time.Since(t))/float64(time.Millisecond))
		if err != nil {
			return sample{}, err
		}
		if !bytes.Equal(got, body) {
			return sample{}, fmt.Errorf("result %d differs from its payload: %.60q", i, got)
		}
	}
	cpu := m.used()
	sort.Float64s(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return sample{lat: [3]float64{q(0.50), q(0.90), q(0.99)}, cpuPerK: perK(cpu, n)}, nil
}

// w4 is status reads: `existing` operations are submitted (no workers),
// then n reads of their status from c clients.
func w4(ctx context.Context, s System, existing, n, c int) (sample, error) {
	ids := make([]string, existing)
	if _, err := parallel(ctx, existing, c, func(ctx context.Context, i int) error {
		var err error
		ids[i], err = s.Submit(ctx, payload(i))
		return err
	}); err != nil {
		return sample{}, err
	}
	m := startCPU(s)
	el, err := parallel(ctx, n, c, func(ctx context.Context, i int) error {
		return s.Status(ctx, ids[i%existing])
	})
	cpu := m.used()
	if err != nil {
		return sample{}, err
	}
	return sample{rate: float64(n) / el.Seconds(), cpuPerK: perK(cpu, n)}, nil
}

// stats is the median and range of a series.
type stats struct{ med, lo, hi float64 }

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{med, s[0], s[len(s)-1]}
}

// withSystem starts s with the given workers, runs f and stops s.
func withSystem(ctx context.Context, s System, workers int, f func() (sample, error)) (sample, error) {
	if err := s.Start(ctx, workers); err != nil {
		_ = s.Stop()
		return sample{}, fmt.Errorf("start: %w", err)
	}
	smp, err := f()
	if serr := s.Stop(); err == nil && serr != nil {
		err = fmt.Errorf("stop: %w", serr)
	}
	return smp, err
}
