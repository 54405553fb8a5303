// Command engines measures candidate embedded storage engines for arr's
// durable submission path (see docs/storage-engine.md).
//
// Each submission writes, atomically and durably, an operation record (~300 B
// JSON) under a UUIDv7 key, the 1 KiB request body under its own key and a
// ~40 B queue entry ordered by ready time, and is acknowledged only once the
// write has been made durable (fsync/fdatasync).
//
//	CGO_ENABLED=0 go run . -open                    # 20,000 x 64 goroutines x 3 reps + 1M-entry store
//	CGO_ENABLED=0 go run . -n 200000 -engines file-group,pebble,pebble-cb,pebble-tuned,bbolt-200us,bbolt-group,sqlite
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Engine is one storage configuration under test.
type Engine interface {
	// Submit writes s atomically and returns only once it is durable.
	Submit(s *Sub) error
	// Get returns the length of the operation record stored under id
	// (a point read of the status record). Baselines return errNoReads.
	Get(id []byte) (int, error)
	Close() error
}

type engineSpec struct {
	name string
	desc string
	open func(dir string) (Engine, error)
	// reads reports whether Get is supported.
	reads bool
}

var specs = []engineSpec{
	{"file-fsync", "baseline A: append + fdatasync per submission, serialized", openFileA, false},
	{"file-group", "baseline B: append, one writer, one fdatasync per group", openFileB, false},
	{"pebble", "pebble/v2 v2.1.7, one batch per submission, Commit(pebble.Sync)", openPebbleWith(pebbleTunings["pebble"]), true},
	{"pebble-cb", "pebble as above + 128 MiB block cache + bloom filters (10 bits/key) on all levels", openPebbleWith(pebbleTunings["pebble-cb"]), true},
	{"pebble-tuned", "pebble + 256 MiB block cache (memtables are charged to it) + bloom filters + 64 MiB memtable (default 4 MiB)", openPebbleWith(pebbleTunings["pebble-tuned"]), true},
	{"bbolt", "bbolt v1.5.0, db.Batch, defaults (MaxBatchSize 1000, MaxBatchDelay 10ms)", openBolt(1000, 10*time.Millisecond), true},
	{"bbolt-1ms", "bbolt v1.5.0, db.Batch, MaxBatchSize 1000, MaxBatchDelay 1ms", openBolt(1000, time.Millisecond), true},
	{"bbolt-200us", "bbolt v1.5.0, db.Batch, MaxBatchSize 1000, MaxBatchDelay 200µs", openBolt(1000, 200*time.Microsecond), true},
	{"bbolt-group", "bbolt v1.5.0, app-level group commit (one writer goroutine, one db.Update per group)", openBoltGroup, true},
	{"sqlite", "modernc sqlite v1.60.1, WAL, synchronous=FULL, app-level group commit (one writer connection); reads: 16 connections, mmap_size 256 MiB", openSQLite, true},
}

var defaultEngines = "file-fsync,file-group,pebble,pebble-cb,pebble-tuned,bbolt,bbolt-1ms,bbolt-200us,bbolt-group,sqlite"

func main() {
	var (
		n        = flag.Int("n", 20000, "submissions per run")
		c        = flag.Int("c", 64, "concurrent submitting goroutines (also used for reads)")
		reps     = flag.Int("reps", 3, "repetitions per configuration")
		reads    = flag.Int("reads", 200000, "status reads per run (0 to skip)")
		engines  = flag.String("engines", defaultEngines, "comma-separated engine configurations")
		base     = flag.String("dir", "/var/tmp/arr-engines-bench", "base directory for data (must be on a real disk, not tmpfs)")
		doOpen   = flag.Bool("open", false, "also measure open time of a store holding -open-n queued submissions")
		openN    = flag.Int("open-n", 1000000, "entries for the open-time measurement")
		keepOpen = flag.Bool("keep", false, "keep the prepared open-time stores for a later run")
		dequeue  = flag.Int("dequeue", 500000, "with -open: dequeue (delete) this many head entries, then time reading the queue head (skipped with -keep)")
		keepRuns = flag.Bool("keep-runs", false, "keep each run's data directory for inspection")
	)
	flag.Parse()

	var sel []engineSpec
	for _, name := range strings.Split(*engines, ",") {
		i := slices.IndexFunc(specs, func(s engineSpec) bool { return s.name == name })
		if i < 0 {
			fatalf("unknown engine %q", name)
		}
		sel = append(sel, specs[i])
	}
	if err := os.MkdirAll(*base, 0o755); err != nil {
		fatalf("%v", err)
	}
	checkNotTmpfs(*base)

	fmt.Fprintf(os.Stderr, "# %d submissions x %d reps, %d goroutines, GOMAXPROCS=%d, cgo=%t, dir=%s\n",
		*n, *reps, *c, runtime.GOMAXPROCS(0), cgoEnabled, *base)
	if cgoEnabled {
		fmt.Fprintln(os.Stderr, "# warning: built with cgo; arr is pure Go, rerun with CGO_ENABLED=0")
	}
	subs := makeSubs(*n)
	fmt.Fprintf(os.Stderr, "# record sizes: operation %d B, body %d B, queue entry %d B (key %d + value %d)\n",
		len(subs[0].Op), len(subs[0].Body), len(subs[0].QKey)+len(subs[0].QVal), len(subs[0].QKey), len(subs[0].QVal))

	results := map[string][]runResult{}
	// Rep-major order: every configuration runs once before any runs
	// twice, so that noise from other tenants spreads across engines.
	for rep := 0; rep < *reps; rep++ {
		for _, sp := range sel {
			dir := filepath.Join(*base, fmt.Sprintf("%s-rep%d", sp.name, rep))
			os.RemoveAll(dir)
			r, err := runOnce(sp, dir, subs, *c, *reads)
			if err != nil {
				fatalf("%s rep %d: %v", sp.name, rep, err)
			}
			if !*keepRuns {
				os.RemoveAll(dir)
			}
			results[sp.name] = append(results[sp.name], r)
			fmt.Fprintf(os.Stderr, "%-12s rep %d: %8.0f ops/s  p50 %6.2fms p99 %6.2fms  cpu %.3fs/1k  disk %6.0f B/op (apparent %6.0f)  reads %8.0f/s  others %.2f cores\n",
				sp.name, rep, r.opsPerSec, ms(r.p50), ms(r.p99), r.cpuPer1k, r.diskPerOp, r.sizePerOp, r.readsPerSec, r.others)
		}
	}

	opens := map[string]openResult{}
	if *doOpen {
		for _, sp := range sel {
			if !openable(sp.name) {
				continue
			}
			r, err := measureOpen(sp.name, filepath.Join(*base, "open-"+sp.name), *openN, *dequeue, *keepOpen)
			if err != nil {
				fatalf("open %s: %v", sp.name, err)
			}
			opens[sp.name] = r
		}
	}

	printTable(sel, results, opens, *n, *c, *reps, *openN, *dequeue)
}

type runResult struct {
	opsPerSec   float64
	p50, p99    time.Duration
	cpuPer1k    float64 // CPU seconds (user+sys) per 1,000 submissions
	diskPerOp   float64 // allocated bytes after close / n
	sizePerOp   float64 // apparent file size after close / n
	readsPerSec float64
	others      float64 // average cores used by other processes during the write phase
}

func runOnce(sp engineSpec, dir string, subs []*Sub, c, reads int) (runResult, error) {
	var r runResult
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	e, err := sp.open(dir)
	if err != nil {
		return r, err
	}
	runtime.GC()
	n := len(subs)
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	sys0 := systemBusy()
	t0 := time.Now()
	for g := 0; g < c; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				st := time.Now()
				if err := e.Submit(subs[i]); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = time.Since(st)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	// Background work caused by the writes (Pebble flushes/compactions) is
	// charged to them: CPU is measured until the store is quiescent.
	if st, ok := e.(interface{ settle() }); ok {
		st.settle()
	}
	cpu := cpuTime() - cpu0
	// CPU used by everything else on the machine during the same window.
	r.others = max(0, (systemBusy()-sys0-cpu).Seconds()/time.Since(t0).Seconds())
	if v := firstErr.Load(); v != nil {
		e.Close()
		return r, v.(error)
	}
	r.opsPerSec = float64(n) / elapsed.Seconds()
	r.cpuPer1k = cpu.Seconds() / (float64(n) / 1000)
	slices.Sort(lat)
	r.p50 = lat[n/2]
	r.p99 = lat[n*99/100]

	if sp.reads && reads > 0 {
		rps, err := readPhase(e, subs, c, reads)
		if err != nil {
			e.Close()
			return r, err
		}
		r.readsPerSec = rps
	}
	if err := e.Close(); err != nil {
		return r, err
	}
	alloc, size := diskUsage(dir)
	r.diskPerOp = float64(alloc) / float64(n)
	r.sizePerOp = float64(size) / float64(n)
	return r, nil
}

// readPhase performs point reads of random operation records from c
// goroutines. The data set written by one run (~30 MB) is cache resident,
// which matches status polling of recent operations.
func readPhase(e Engine, subs []*Sub, c, reads int) (float64, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for g := 0; g < c; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 42))
			for next.Add(1) <= int64(reads) {
				s := subs[rng.IntN(len(subs))]
				l, err := e.Get(s.ID[:])
				if err == nil && l != len(s.Op) {
					err = fmt.Errorf("read %d bytes, want %d", l, len(s.Op))
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		return 0, v.(error)
	}
	return float64(reads) / time.Since(t0).Seconds(), nil
}

// systemBusy returns the machine's total non-idle CPU time from /proc/stat.
func systemBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest*
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskUsage returns allocated bytes (st_blocks*512) and apparent size of
// all files under dir.
func diskUsage(dir string) (alloc, size int64) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			alloc += st.Blocks * 512
			size += st.Size
		}
		return nil
	})
	return
}

func checkNotTmpfs(dir string) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		fatalf("statfs %s: %v", dir, err)
	}
	const tmpfsMagic = 0x01021994
	if st.Type == tmpfsMagic {
		fatalf("%s is on tmpfs; fsync is meaningless there, choose -dir on a real disk", dir)
	}
}

func printTable(sel []engineSpec, results map[string][]runResult, opens map[string]openResult, n, c, reps, openN, dequeue int) {
	fmt.Printf("\n%d submissions per run, %d goroutines, %d runs per configuration, %s, cgo=%t; median (min–max)\n\n",
		n, c, reps, runtime.Version(), cgoEnabled)
	fmt.Printf("| configuration | submissions/s | p50 / p99 latency | CPU s per 1k ops | disk B/op after run | status reads/s | store of %s: size (B/op) | open: after restart / warm / cold | after %s dequeues: read head / synced dequeue / reopen |\n",
		human(openN), human(dequeue))
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	for _, sp := range sel {
		rs := results[sp.name]
		get := func(f func(runResult) float64) []float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			return v
		}
		ops := get(func(r runResult) float64 { return r.opsPerSec })
		p50 := get(func(r runResult) float64 { return ms(r.p50) })
		p99 := get(func(r runResult) float64 { return ms(r.p99) })
		cpu := get(func(r runResult) float64 { return r.cpuPer1k })
		disk := get(func(r runResult) float64 { return r.diskPerOp })
		rd := get(func(r runResult) float64 { return r.readsPerSec })
		readCol := "—"
		if sp.reads && median(rd) > 0 {
			readCol = fmt.Sprintf("%s (%s–%s)", kfmt(median(rd)), kfmt(minf(rd)), kfmt(maxf(rd)))
		}
		sizeCol, openCol, dqCol := "—", "—", "—"
		if o, ok := opens[sp.name]; ok {
			sizeCol = fmt.Sprintf("%.2f GB (%.0f)", float64(o.size)/1e9, float64(o.size)/float64(o.n))
			openCol = fmt.Sprintf("%s / %s / %s", durfmt(o.restart), durfmt(o.warm), durfmt(o.cold))
			if o.dequeued > 0 {
				dqCol = fmt.Sprintf("%s / %s / %s", durfmt(o.dqFirst), durfmt(o.dqOne), durfmt(o.dqReopen))
			}
		}
		fmt.Printf("| %s | **%.0f** (%.0f–%.0f) | %.1f / %.1f ms | %.3f (%.3f–%.3f) | %.0f | %s | %s | %s | %s |\n",
			sp.name, median(ops), minf(ops), maxf(ops), median(p50), median(p99),
			median(cpu), minf(cpu), maxf(cpu), median(disk), readCol, sizeCol, openCol, dqCol)
	}
	var others []float64
	for _, rs := range results {
		for _, r := range rs {
			others = append(others, r.others)
		}
	}
	fmt.Printf("\nOther processes used a median %.2f cores (max %.2f) of the machine's %d during the write phases.\n\n",
		median(others), maxf(others), runtime.NumCPU())
	for _, sp := range sel {
		fmt.Printf("- %s: %s\n", sp.name, sp.desc)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
func minf(v []float64) float64 { return slices.Min(v) }
func maxf(v []float64) float64 { return slices.Max(v) }
func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
func kfmt(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
func human(n int) string {
	if n%1000000 == 0 {
		return fmt.Sprintf("%dM", n/1000000)
	}
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
func durfmt(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.0f ms", ms(d))
	}
	return fmt.Sprintf("%.2f ms", ms(d))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "engines: "+format+"\n", args...)
	os.Exit(1)
}
