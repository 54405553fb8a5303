package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve the baselines, as arrbench does when
// it re-runs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		serveBaseline(os.Args[2:])
		return
	}
	os.Exit(m.Run())
}

// Every system the harness drives itself (both arrs, both baselines)
// accepts, completes with the payload as result, and reads status.
func TestHarnessSystems(t *testing.T) {
	// Build arr before any clock starts: with a cold build cache (a fresh
	// machine) the build alone can outlast a subtest's time limit.
	if _, err := buildArr(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []System{newArrLib(), newArrHTTP(8), newBaseline("bare", 8), newBaseline("durable", 8)} {
		t.Run(s.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, isBaseline := s.(*baselineSystem)
			workers := 4
			if isBaseline {
				workers = 0
			}
			if err := s.Start(ctx, workers); err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			ids := make([]string, 100)
			if _, err := parallel(ctx, len(ids), 8, func(ctx context.Context, i int) error {
				var err error
				ids[i], err = s.Submit(ctx, payload(i))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if !isBaseline {
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				defer wcancel()
				if err := s.WaitCompleted(wctx, len(ids)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.SubmitAndWait(ctx, payload(7))
			if err != nil || !bytes.Equal(got, payload(7)) {
				t.Fatalf("SubmitAndWait = %.40q, %v", got, err)
			}
			if err := s.Status(ctx, ids[3]); err != nil {
				t.Fatal(err)
			}
			if m := startCPU(s); m.used() < 0 {
				t.Fatal("negative CPU")
			}
		})
	}
}

// With no workers, arr completes nothing: WaitCompleted times out.
func TestArrWithoutWorkersCompletesNothing(t *testing.T) {
	ctx := context.Background()
	s := newArrLib()
	if err := s.Start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Submit(ctx, payload(1)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.WaitCompleted(wctx, 1); err == nil {
		t.Fatal("an operation completed without workers")
	}
}

// The durable baseline's group commit writes every record, each once.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	g := &groupCommit{f: f}
	g.cond = sync.NewCond(&g.mu)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			for j := range 20 {
				if err := g.append([]byte(strings.Repeat("x", i) + "|" + string(rune('a'+j)))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 64*20 {
		t.Fatalf("%d records in the log, want %d", len(lines), 64*20)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Fatalf("record %q twice", l)
		}
		seen[l] = true
	}
}

func TestSummarizeAndPayload(t *testing.T) {
	if s := summarize([]float64{3, 1, 2}); s != (stats{2, 1, 3}) {
		t.Fatalf("summarize odd = %+v", s)
	}
	if s := summarize([]float64{4, 1, 2, 3}); s != (stats{2.5, 1, 4}) {
		t.Fatalf("summarize even = %+v", s)
	}
	if len(payload(12345)) != 1024 || !bytes.HasPrefix(payload(5), []byte(`{"id":"5"`)) {
		t.Fatalf("payload = %q", payload(5))
	}
}

// Ratios pair the repetitions: a drift of the machine between them cancels.
func TestPairedRatio(t *testing.T) {
	a := &row{http: true, samples: []sample{{rate: 100}, {rate: 50}, {rate: 30}}}
	b := &row{samples: []sample{{rate: 50}, {rate: 25}, {rate: 10}}}
	if v, ok := pairedRatio(a, b); !ok || v != 2 {
		t.Fatalf("pairedRatio = %v, %v; want 2", v, ok)
	}
	if got := ratio(b, a); got != "–" {
		t.Fatalf("ratio of a library row = %q, want –", got)
	}
	if _, ok := pairedRatio(a, &row{samples: []sample{{rate: 1}}}); ok {
		t.Fatal("rows of different lengths paired")
	}
}

// A whole run at a tiny size writes every table and the targets.
func TestRunWritesReport(t *testing.T) {
	cfg := config{reps: 2, n: 300, clients: 8, workers: 4, w3: 20, w4: 500, w4existing: 50, w5: 2000, warmup: true,
		systems: []string{"bare", "durable", "arr-http", "arr-lib"}, workloads: []string{"w1", "w2", "w3", "w4", "w5"}}
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### W1", "### W2", "### W3", "### W4", "### W5", "### Targets",
		"| arr serve (HTTP, embedded) |", "W1 over HTTP ≥ 0.5× bare 202", "W5 2000 pending"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
