package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

type row struct {
	name, label, durability string
	http                    bool // driven over HTTP, comparable to the baselines
	samples                 []sample
}

type report struct {
	cfg   config
	start time.Time
	rows  map[string][]*row // by workload, in first-seen order
	w5    *w5Result
}

func newReport(cfg config) *report {
	return &report{cfg: cfg, start: time.Now(), rows: map[string][]*row{}}
}

func (r *report) add(w, name string, s System, smp sample) {
	for _, x := range r.rows[w] {
		if x.name == name {
			x.samples = append(x.samples, smp)
			return
		}
	}
	r.rows[w] = append(r.rows[w], &row{name: name, label: s.Name(), durability: s.Durability(), http: !s.SelfCPU(), samples: []sample{smp}})
}

func (r *report) get(w, name string) *row {
	for _, x := range r.rows[w] {
		if x.name == name {
			return x
		}
	}
	return nil
}

func (x *row) rates() stats {
	return summarize(collect(x.samples, func(s sample) float64 { return s.rate }))
}
func (x *row) cpu() stats {
	return summarize(collect(x.samples, func(s sample) float64 { return s.cpuPerK }))
}
func (x *row) lat(i int) stats {
	return summarize(collect(x.samples, func(s sample) float64 { return s.lat[i] }))
}

func collect(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func fmtRate(s stats) string {
	return fmt.Sprintf("%s (%s–%s)", si(s.med), si(s.lo), si(s.hi))
}

func si(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	if v >= 1000 {
		return fmt.Sprintf("%.2fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// pairedRatio is the median over repetitions of a's rate over b's in the
// same repetition. Systems of one repetition run within seconds of each
// other, so the machine's drift between repetitions (its speed moved by up
// to 2× here) cancels out of each ratio.
func pairedRatio(a, b *row) (float64, bool) {
	if a == nil || b == nil || len(a.samples) != len(b.samples) || len(a.samples) == 0 {
		return 0, false
	}
	rs := make([]float64, len(a.samples))
	for i := range a.samples {
		if b.samples[i].rate == 0 {
			return 0, false
		}
		rs[i] = a.samples[i].rate / b.samples[i].rate
	}
	return summarize(rs).med, true
}

// ratio is pairedRatio as text, or "–"; only HTTP systems compare with the
// HTTP baselines.
func ratio(a, b *row) string {
	v, ok := pairedRatio(a, b)
	if !ok || !a.http {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func (r *report) write(w io.Writer) {
	c := r.cfg
	fmt.Fprintf(w, "## Run of %s\n\n", r.start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "```sh\ncd bench && go run ./cmd/arrbench %s\n```\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(w, "Machine: %s. %d repetitions of W1–W4, systems interleaved; medians with (min–max). ", machine(), c.reps)
	fmt.Fprintf(w, "CPU is seconds of CPU per 1,000 operations: the harness process for library systems (clients and workers run in it) plus the engine's server processes; for HTTP systems, the server process only (the load generator is not counted).\n\n")
	fmt.Fprintf(w, "Versions: %s.\n\n", versions())

	if rows := r.rows["w1"]; len(rows) > 0 {
		bare := r.get("w1", "bare")
		fmt.Fprintf(w, "### W1 durable accept: %d submissions of 1 KiB, %d clients, no workers\n\n", c.n, c.clients)
		fmt.Fprintf(w, "Library systems are called in-process (no HTTP), so only the HTTP systems have a ratio to the HTTP ceiling; compare the library systems with each other.\n\n")
		fmt.Fprintf(w, "| system | durability of an accepted job | ops/s | vs. bare 202 | CPU s / 1k ops |\n|---|---|---|---|---|\n")
		for _, x := range rows {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.3f |\n", x.label, x.durability, fmtRate(x.rates()), ratio(x, bare), x.cpu().med)
		}
		fmt.Fprintln(w)
	}
	if rows := r.rows["w2"]; len(rows) > 0 {
		fmt.Fprintf(w, "### W2 end to end: %d submissions, %d workers (echo), until every result is readable\n\n", c.n, c.workers)
		fmt.Fprintf(w, "| system | ops/s | CPU s / 1k ops |\n|---|---|---|\n")
		for _, x := range rows {
			fmt.Fprintf(w, "| %s | %s | %.3f |\n", x.label, fmtRate(x.rates()), x.cpu().med)
		}
		fmt.Fprintln(w)
	}
	if rows := r.rows["w3"]; len(rows) > 0 {
		fmt.Fprintf(w, "### W3 completion latency: %d operations one at a time, %d workers\n\n", c.w3, c.workers)
		fmt.Fprintf(w, "arr HTTP: `POST` with `Prefer: wait=10`, the 303 followed to the signed URL and the bytes read; arr library: `Submit`, `Wait` (woken by the store's change notification), `OpenResult`; asynq and River: enqueue, then poll for the result every 1 ms. The bare baseline is one POST round trip: the floor under any HTTP system.\n\n")
		fmt.Fprintf(w, "| system | p50 ms | p90 ms | p99 ms | CPU s / 1k ops |\n|---|---|---|---|---|\n")
		for _, x := range rows {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.3f |\n", x.label, fmtMs(x.lat(0)), fmtMs(x.lat(1)), fmtMs(x.lat(2)), x.cpu().med)
		}
		fmt.Fprintln(w)
	}
	if rows := r.rows["w4"]; len(rows) > 0 {
		bare := r.get("w4", "bare")
		fmt.Fprintf(w, "### W4 status reads: %d reads of %d existing operations, %d clients\n\n", c.w4, c.w4existing, c.clients)
		fmt.Fprintf(w, "arr's library read is served from its in-memory cache of recently written operations (the 2,000 fit), so it measures a map lookup and a copy; the peers' library reads go to their servers.\n\n")
		fmt.Fprintf(w, "| system | reads/s | vs. bare GET | CPU s / 1k reads |\n|---|---|---|---|\n")
		for _, x := range rows {
			fmt.Fprintf(w, "| %s | %s | %s | %.3f |\n", x.label, fmtRate(x.rates()), ratio(x, bare), x.cpu().med)
		}
		fmt.Fprintln(w)
	}
	if r.w5 != nil {
		x := r.w5
		fmt.Fprintf(w, "### W5 scale of state: %d pending operations (1 KiB bodies) in the embedded store\n\n", x.n)
		fmt.Fprintf(w, "| filled in (library, %d clients) | disk per operation | `arr serve` start to ready | RSS at ready | peak RSS, 5 s of draining |\n|---|---|---|---|---|\n", c.clients)
		fmt.Fprintf(w, "| %v | %.0f B | %v | %.0f MiB | %.0f MiB |\n\n", x.fill.Round(time.Millisecond), x.diskPerOp,
			x.ready.Round(time.Millisecond), float64(x.rssReady)/(1<<20), float64(x.rssPeak)/(1<<20))
	}
	r.writeTargets(w)
}

func fmtMs(s stats) string { return fmt.Sprintf("%.2f (%.2f–%.2f)", s.med, s.lo, s.hi) }

// writeTargets checks the targets against this run.
func (r *report) writeTargets(w io.Writer) {
	type target struct {
		what, measured string
		met            bool
	}
	var ts []target
	rt := func(wl, a, b string) (float64, bool) { return pairedRatio(r.get(wl, a), r.get(wl, b)) }
	add := func(what, wl, a, b string, min float64) {
		if v, ok := rt(wl, a, b); ok {
			ts = append(ts, target{what, fmt.Sprintf("%.2f×", v), v >= min})
		}
	}
	add("W1 over HTTP ≥ 0.5× bare 202", "w1", "arr-http", "bare", 0.5)
	add("W1 library ≥ 2× asynq (appendfsync always)", "w1", "arr-lib", "asynq-always", 2)
	add("W1 library ≥ 5× River", "w1", "arr-lib", "river", 5)
	add("W2 library ≥ 2× asynq (Redis as configured)", "w2", "arr-lib", "asynq", 2)
	add("W2 library ≥ 2× asynq (appendfsync always)", "w2", "arr-lib", "asynq-always", 2)
	add("W2 library ≥ 5× River", "w2", "arr-lib", "river", 5)
	add("W2 over HTTP ≥ 2× asynq (Redis as configured)", "w2", "arr-http", "asynq", 2)
	add("W2 over HTTP ≥ 5× River", "w2", "arr-http", "river", 5)
	add("W2 with a callback per operation ≥ 0.5× without", "w2", "arr-http-callbacks", "arr-http", 0.5)
	for _, sys := range []string{"arr-lib", "arr-http"} {
		if x := r.get("w3", sys); x != nil {
			p50, p99 := x.lat(0).med, x.lat(2).med
			ts = append(ts, target{"W3 " + x.label + ": p50 ≤ 1 ms, p99 ≤ 3 ms",
				fmt.Sprintf("%.2f / %.2f ms", p50, p99), p50 <= 1 && p99 <= 3})
		}
	}
	add("W4 over HTTP ≥ 0.7× bare", "w4", "arr-http", "bare", 0.7)
	add("W1 with API keys ≥ 0.9× without", "w1", "arr-http-auth", "arr-http", 0.9)
	add("W4 with API keys ≥ 0.9× without", "w4", "arr-http-auth", "arr-http", 0.9)
	if x := r.w5; x != nil {
		ts = append(ts, target{fmt.Sprintf("W5 %d pending: RSS ≤ 256 MiB, ready ≤ 5 s", x.n),
			fmt.Sprintf("%.0f MiB peak, %v", float64(x.rssPeak)/(1<<20), x.ready.Round(time.Millisecond)),
			x.rssPeak <= 256<<20 && x.ready <= 5*time.Second})
	}
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(w, "### Targets\n\nRatios are the median of the repetitions' own ratios (both systems measured within seconds of each other).\n\n| target | this run | met |\n|---|---|---|\n")
	for _, t := range ts {
		met := "yes"
		if !t.met {
			met = "**no**"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, t.measured, met)
	}
	fmt.Fprintln(w)
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s, GOMAXPROCS=%d", runtime.NumCPU(), cpu,
		strings.TrimSpace(string(kernel)), runtime.Version(), runtime.GOMAXPROCS(0))
}

func versions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var out []string
	for _, d := range bi.Deps {
		for _, p := range []string{"github.com/hibiken/asynq", "github.com/riverqueue/river", "github.com/jackc/pgx/v5",
			"github.com/redis/go-redis/v9", "github.com/cockroachdb/pebble/v2"} {
			if d.Path == p {
				out = append(out, d.Path+" "+d.Version)
			}
		}
	}
	for _, c := range [][]string{{"redis-server", "--version"}, {"postgres", "--version"}} {
		if b, err := exec.Command(c[0], c[1:]...).Output(); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return strings.Join(out, ", ")
}
