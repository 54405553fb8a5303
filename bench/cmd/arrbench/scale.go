package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runScale is `arrbench scale`: throughput of separate `arr api` and
// `arr worker` processes over the shared engines, with 1, 2 and 4 worker
// processes, against the embedded single process measured in the same run.
//
// Each run has two phases. Accept: -n submissions from -clients clients
// to one `arr api` (no workers run). Drain: the worker processes start and
// run every queued operation (echo) until each worker's
// arr_operations_completed_total{outcome="succeeded"} adds up to -n. The
// CPU of arr's processes and of the engine's (every nats-server, every
// postgres process) is read from /proc around each phase, so the engine's
// cost per operation is measured, not guessed. Results go to file: in a
// directory all processes share, so that the figures are the operations
// store's and the queue's.
func runScale(args []string) {
	fs := flag.NewFlagSet("arrbench scale", flag.ExitOnError)
	engines := fs.String("engines", "embedded,nats,postgres", "engines to measure: embedded, nats, postgres, and on Azurite (bash .ci/azurite.sh) azqueue (PostgreSQL records, azqueue:// queue, file: results), azblob (PostgreSQL records and queue, azblob:// results), azure (PostgreSQL records, azqueue:// and azblob://)")
	workerList := fs.String("workers", "1,2,4", "numbers of worker processes")
	n := fs.Int("n", 20000, "operations per run")
	clients := fs.Int("clients", 32, "concurrent submitting clients")
	perWorker := fs.Int("concurrency", 16, "operations each worker process runs at once (-workers of arr worker)")
	natsURL := fs.String("nats", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS JetStream server")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server")
	out := fs.String("out", "", "also write the report to this file")
	resultsDir := fs.String("results-dir", defaultResultsDir(), "where the shared file: result store lives (default: tmpfs, /dev/shm, so that the figures are the engines' and not the disk's)")
	_ = fs.Parse(args)

	bin, err := buildArr()
	if err != nil {
		log.Fatal(err)
	}
	var counts []int
	for _, s := range strings.Split(*workerList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			log.Fatalf("-workers: %q", s)
		}
		counts = append(counts, c)
	}
	ctx := context.Background()
	var rows []scaleRow
	var azEnv []string
	if strings.Contains(*engines, "az") {
		// Every arr process authenticates to Azurite as on Azure:
		// DefaultAzureCredential through a managed identity endpoint.
		srv, env, _ := azuritetest.NewIdentityServer(azuritetest.Token)
		defer srv.Close()
		azEnv = append(env, "SSL_CERT_FILE="+filepath.Join(azuritetest.Dir(), "cert.pem"))
	}
	for _, eng := range strings.Split(*engines, ",") {
		eng = strings.TrimSpace(eng)
		runs := counts
		if eng == "embedded" {
			runs = []int{1} // one process holds the embedded store
		}
		for _, w := range runs {
			r, err := scaleRun(ctx, bin, scaleSetup{engine: eng, workers: w, n: *n, clients: *clients,
				perWorker: *perWorker, natsURL: *natsURL, dbURL: *dbURL, resultsDir: *resultsDir, env: azEnv})
			if err != nil {
				log.Fatalf("%s with %d workers: %v", eng, w, err)
			}
			log.Printf("%s, %d worker processes: accept %.0f/s, drain %.0f/s", eng, w, r.acceptRate, r.drainRate)
			rows = append(rows, r)
		}
	}
	var sb strings.Builder
	writeScaleReport(&sb, rows, *n, *clients, *perWorker, args)
	fmt.Print(sb.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(sb.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

type scaleSetup struct {
	engine                         string
	workers, n, clients, perWorker int
	natsURL, dbURL, resultsDir     string
	env                            []string // of arr's processes
}

type scaleRow struct {
	engine                string
	workers               int
	acceptRate, drainRate float64       // operations per second
	acceptArr, acceptEng  time.Duration // CPU per operation in the accept phase
	drainArr, drainEng    time.Duration // and in the drain phase
	acceptWall, drainWall time.Duration
}

func defaultResultsDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func randomName() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scaleRun measures one engine with one number of worker processes.
func scaleRun(ctx context.Context, bin string, s scaleSetup) (scaleRow, error) {
	row := scaleRow{engine: s.engine, workers: s.workers}
	tmp, err := os.MkdirTemp("", "arrbench-scale-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(tmp)
	resDir, err := os.MkdirTemp(s.resultsDir, "arrbench-results-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(resDir)
	results := "file:" + resDir
	name := "bench" + randomName()
	var store, queueURL string
	var engineProcs string
	cleanup := func() {}
	switch s.engine {
	case "embedded":
	case "nats":
		store = s.natsURL + "?prefix=" + name
		engineProcs = "nats-server"
		cleanup = func() { dropNATS(s.natsURL, name) }
	case "postgres":
		store = withParam(s.dbURL, "schema", name)
		engineProcs = "postgres"
		cleanup = func() { dropSchema(ctx, s.dbURL, name) }
	case "azqueue", "azblob", "azure":
		// Azurite is a node process; its CPU is the emulator's, counted
		// with PostgreSQL's as the engines'.
		store = withParam(s.dbURL, "schema", name)
		engineProcs = "postgres,node"
		cleanup = func() { dropSchema(ctx, s.dbURL, name) }
		az, err := azuritetest.Find()
		if err != nil {
			return row, err
		}
		if s.engine != "azblob" {
			queueURL = "azqueue://" + name + "?endpoint=" + url.QueryEscape(az.QueueURL()) +
				"&table_endpoint=" + url.QueryEscape(az.TableURL())
		}
		if s.engine != "azqueue" {
			if err := az.CreateContainer(ctx, name); err != nil {
				return row, err
			}
			cleanup = func() {
				dropSchema(ctx, s.dbURL, name)
				_ = az.DeleteContainer(ctx, name)
			}
			results = "azblob://" + name + "?endpoint=" + url.QueryEscape(az.BlobURL())
		}
	default:
		return row, fmt.Errorf("unknown engine %q", s.engine)
	}
	defer cleanup()

	// Accept: one api process, no workers.
	var api *child
	apiData := filepath.Join(tmp, "api")
	if s.engine == "embedded" {
		api, err = startChild(ctx, bin, "/readyz", "serve", "-addr", "{addr}", "-data", apiData, "-results", results, "-workers", "-1", "-log-level", "warn",
			"-rate-limit-submit", "0", "-rate-limit-read", "0") // the benchmark is one client: no rate limits
	} else {
		api, err = startChildEnv(ctx, s.env, bin, "/readyz", withQueue([]string{"api", "-addr", "{addr}", "-data", apiData, "-store", store, "-results", results, "-log-level", "warn",
			"-rate-limit-submit", "0", "-rate-limit-read", "0"}, queueURL)...)
	}
	if err != nil {
		return row, err
	}
	stopAPI := func() {
		if api != nil {
			_ = api.stop()
			api = nil
		}
	}
	defer stopAPI()
	hc := newHTTPClient(s.clients)
	body := []byte(`{"hello":"` + strings.Repeat("x", 1000) + `"}`)
	procs := func() []int {
		ps := []int{}
		if api != nil {
			ps = append(ps, api.pid())
		}
		return ps
	}
	arr0, eng0 := cpuOf(procs()), enginesCPU(engineProcs)
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, s.clients)
	for range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(s.n) {
				code, _, b, err := postJSON(ctx, hc, "http://"+api.addr+"/v1/echo", body)
				if err == nil && code != http.StatusAccepted {
					err = fmt.Errorf("submit: %d %s", code, b)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return row, err
	default:
	}
	row.acceptWall = time.Since(t0)
	row.acceptRate = float64(s.n) / row.acceptWall.Seconds()
	row.acceptArr = (cpuOf(procs()) - arr0) / time.Duration(s.n)
	row.acceptEng = (enginesCPU(engineProcs) - eng0) / time.Duration(s.n)

	// Drain: the worker processes run everything queued.
	var workers []*child
	defer func() {
		for _, w := range workers {
			_ = w.stop()
		}
	}()
	var workerPIDs []int
	t1 := time.Now()
	if s.engine == "embedded" {
		// The one process that holds the store: restart it with workers.
		stopAPI()
		arr0, eng0 = 0, enginesCPU(engineProcs)
		t1 = time.Now()
		w, err := startChild(ctx, bin, "/readyz", "serve", "-addr", "{addr}", "-data", apiData, "-results", results, "-workers", strconv.Itoa(s.perWorker), "-log-level", "warn")
		if err != nil {
			return row, err
		}
		workers = append(workers, w)
		workerPIDs = append(workerPIDs, w.pid())
	} else {
		arr0, eng0 = cpuOf(procs()), enginesCPU(engineProcs)
		t1 = time.Now()
		for i := range s.workers {
			w, err := startChildEnv(ctx, s.env, bin, "/readyz", withQueue([]string{"worker", "-addr", "{addr}", "-data", filepath.Join(tmp, fmt.Sprint("w", i)),
				"-store", store, "-results", results, "-workers", strconv.Itoa(s.perWorker), "-log-level", "warn"}, queueURL)...)
			if err != nil {
				return row, err
			}
			workers = append(workers, w)
			workerPIDs = append(workerPIDs, w.pid())
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var done float64
		for _, w := range workers {
			c, err := succeededOn(ctx, hc, w.addr)
			if err != nil {
				return row, err
			}
			done += c
		}
		if int(done) >= s.n {
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("drain: %v of %d after 10 minutes", done, s.n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	row.drainWall = time.Since(t1)
	row.drainRate = float64(s.n) / row.drainWall.Seconds()
	row.drainArr = (cpuOf(append(procs(), workerPIDs...)) - arr0) / time.Duration(s.n)
	row.drainEng = (enginesCPU(engineProcs) - eng0) / time.Duration(s.n)
	return row, nil
}

// succeededOn reads arr_operations_completed_total{outcome="succeeded"}
// from the /metrics of the arr process at addr.
func succeededOn(ctx context.Context, hc *http.Client, addr string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "arr_operations_completed_total{") && strings.Contains(line, `outcome="succeeded"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, err
			}
			n += v
		}
	}
	return n, nil
}

func cpuOf(pids []int) time.Duration {
	var d time.Duration
	for _, p := range pids {
		if c, ok := procCPU(p); ok {
			d += c
		}
	}
	return d
}

// withQueue adds -queue queueURL to args unless queueURL is empty.
func withQueue(args []string, queueURL string) []string {
	if queueURL == "" {
		return args
	}
	return append(args, "-queue", queueURL)
}

// enginesCPU adds up the CPU of every process whose command name is one
// of comms, comma-separated (all of the engine's processes on this
// machine: every PostgreSQL backend, for instance). "" is no engine.
func enginesCPU(comms string) time.Duration {
	if comms == "" {
		return 0
	}
	want := map[string]bool{}
	for _, c := range strings.Split(comms, ",") {
		want[c] = true
	}
	ents, _ := os.ReadDir("/proc")
	var d time.Duration
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || !want[strings.TrimSpace(string(b))] {
			continue
		}
		if c, ok := procCPU(pid); ok {
			d += c
		}
	}
	return d
}

func withParam(u, k, v string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + k + "=" + v
}

func dropSchema(ctx context.Context, dbURL, schema string) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		log.Printf("dropping schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		log.Printf("dropping schema %s: %v", schema, err)
	}
}

func writeScaleReport(w io.Writer, rows []scaleRow, n, clients, perWorker int, args []string) {
	fmt.Fprintf(w, "```sh\ncd bench && go run ./cmd/arrbench scale %s\n```\n\n", strings.Join(args, " "))
	fmt.Fprintf(w, "%d operations of 1 KiB (echo), %d clients, one `arr api`, worker processes of %d concurrent operations each. Every system, the embedded baseline included, keeps results as files (`-results file:`) in one directory on tmpfs, so that the figures are the operations stores' and queues', except azblob and azure, whose results are blobs in Azurite. The Azure rows (azqueue: PostgreSQL records with an azqueue:// queue; azblob: PostgreSQL records and queue with azblob:// results; azure: both) run against Azurite, an emulator in Node.js: their engine CPU is PostgreSQL's plus Azurite's, and only arr's own CPU per operation says what the drivers cost. CPU is per operation: arr's processes, and the engine's (every nats-server, postgres or Azurite process on the machine).\n\n", n, clients, perWorker)
	var base float64
	for _, r := range rows {
		if r.engine == "embedded" {
			base = r.drainRate
		}
	}
	fmt.Fprintln(w, "| engine | worker processes | accept ops/s | accept CPU arr / engine | drain ops/s | drain vs embedded | drain CPU arr / engine |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		ratio := "—"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f×", r.drainRate/base)
		}
		us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
		fmt.Fprintf(w, "| %s | %d | %.0f | %s / %s | %.0f | %s | %s / %s |\n", r.engine, r.workers, r.acceptRate,
			us(r.acceptArr), us(r.acceptEng), r.drainRate, ratio, us(r.drainArr), us(r.drainEng))
	}
}

// dropNATS deletes the streams (and the bucket's stream) a run made under
// prefix: <prefix>_* and KV_<prefix>_*.
func dropNATS(natsURL, prefix string) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Printf("dropping NATS streams of %s: %v", prefix, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Printf("dropping NATS streams of %s: %v", prefix, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var drop []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") || strings.HasPrefix(name, "KV_"+prefix+"_") {
			drop = append(drop, name)
		}
	}
	for _, name := range drop {
		if err := js.DeleteStream(ctx, name); err != nil {
			log.Printf("dropping NATS stream %s: %v", name, err)
		}
	}
}
