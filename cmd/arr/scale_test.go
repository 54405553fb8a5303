package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/internal/pgtest"
	"github.com/arrhq/arr/internal/s3test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scaleEngine is the shared engine a scale-out test runs arr over.
type scaleEngine struct {
	storeURL string
	// queueURL, when not empty, is the queue's (-queue); else the store's.
	queueURL string
	// kill SIGKILLs one node of the engine; heal, when not nil, is called
	// a while later (a single-node engine must come back; a cluster keeps
	// its quorum without the node, and heal restarts it). Without kill,
	// only a worker is killed.
	kill, heal func()
	// signedURLs fetches the result store's signed URLs (default: a plain
	// client).
	signedURLs *http.Client
}

// scaleOps is how many operations the scale-out tests submit; the issue's
// figure is 10,000. ARR_SCALE_OPS overrides it for a quicker local run.
func scaleOps(t *testing.T) int {
	if s := os.Getenv("ARR_SCALE_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("ARR_SCALE_OPS=%q: want a number >= 100", s)
		}
		return n
	}
	return 10_000
}

// runScaleOut starts two `arr api` and two `arr worker` processes over
// the engine and an S3 result store, submits total operations round-robin
// to the two apis while it SIGKILLs one worker (at a quarter) and one node
// of the engine (at half), and then checks that every accepted operation
// ended succeeded with its own body as its result, read both through the
// api and, for a sample, through the S3 presigned URL of the 303, and
// that exactly the accepted operations exist.
func runScaleOut(t *testing.T, eng scaleEngine, resultsURL string, env []string, total int) {
	const clients = 24
	common := []string{"-store", eng.storeURL, "-results", resultsURL, "-lease", "3s"}
	if eng.queueURL != "" {
		common = append(common, "-queue", eng.queueURL)
	}
	var apis []*arrProcess
	for range 2 {
		apis = append(apis, startProc(t, "api", freeAddr(t), t.TempDir(), env, common...))
	}
	var workers []*arrProcess
	for range 2 {
		workers = append(workers, startProc(t, "worker", freeAddr(t), t.TempDir(), env, append(common, "-workers", "16")...))
	}
	defer func() {
		for _, p := range append(apis, workers...) {
			if p.cmd.ProcessState == nil {
				p.stop(t)
			}
		}
		if t.Failed() {
			for i, p := range append(apis, workers...) {
				t.Logf("process %d log:\n%s", i, tail(p.log.String(), 3000))
			}
		}
	}()
	bases := []string{"http://" + apis[0].addr, "http://" + apis[1].addr}

	type accepted struct{ id, body string }
	results := make([]accepted, total)
	var acked, retried atomic.Int64
	hc := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var next atomic.Int64
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1) - 1)
				if n >= total || t.Failed() {
					return
				}
				body := fmt.Sprintf(`{"n":%d,"pad":"%x"}`, n, time.Now().UnixNano())
				id, err := submitRetrying(hc, bases[n%2]+"/v1/echo", body, fmt.Sprintf("scale-%d", n), &retried)
				if err != nil {
					t.Errorf("submission %d: %v", n, err)
					return
				}
				results[n] = accepted{id, body}
				acked.Add(1)
			}
		}()
	}
	waitAcked := func(n int64) {
		for acked.Load() < n && !t.Failed() && next.Load() < int64(total)+clients {
			time.Sleep(time.Millisecond)
		}
	}
	waitAcked(int64(total / 4))
	workers[0].kill9(t)
	t.Logf("worker 1 SIGKILLed at %d accepted", acked.Load())
	waitAcked(int64(total / 2))
	if eng.kill != nil {
		eng.kill()
		t.Logf("engine node SIGKILLed at %d accepted", acked.Load())
	}
	if eng.kill != nil && eng.heal != nil {
		time.Sleep(2 * time.Second)
		eng.heal()
		t.Logf("engine node restarted at %d accepted", acked.Load())
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	submitted := time.Since(start)
	t.Logf("%d accepted in %v (%d submits retried: refused or 5xx while a node was down)", total, submitted.Round(time.Millisecond), retried.Load())

	// Every accepted operation succeeds with its own result; read through
	// the api that did not take it.
	deadline := time.Now().Add(5 * time.Minute)
	var checked atomic.Int64
	var cw sync.WaitGroup
	for c := range 8 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for n := c; n < total && !t.Failed(); n += 8 {
				a := results[n]
				waitResult(t, hc, bases[(n+1)%2], n, a.id, a.body, deadline)
				if n%100 == 0 {
					signed := eng.signedURLs
					if signed == nil {
						signed = hc
					}
					checkPresigned(t, hc, signed, bases[n%2], a.id, a.body)
				}
				checked.Add(1)
			}
		}()
	}
	cw.Wait()
	t.Logf("%d results checked, all done %v after the first submit", checked.Load(), time.Since(start).Round(time.Millisecond))
	ids := map[string]bool{}
	for _, a := range results {
		ids[a.id] = true
	}
	assertStoredExactly(t, hc, bases[1], ids, total)
}

// submitRetrying posts body with an Idempotency-Key until an api answers
// 202, retrying connection errors and 5xx (a node of the engine is down);
// any other answer is an error.
func submitRetrying(hc *http.Client, url, body, key string, retried *atomic.Int64) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 202 {
				var op struct{ ID string }
				if err := json.Unmarshal(b, &op); err != nil || op.ID == "" {
					return "", fmt.Errorf("bad 202 body %s", b)
				}
				return op.ID, nil
			}
			if res.StatusCode < 500 {
				return "", fmt.Errorf("%d %s", res.StatusCode, b)
			}
			err = fmt.Errorf("%d %s", res.StatusCode, b)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not accepted within 2m: %v", err)
		}
		retried.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
}

// checkPresigned follows the status monitor's 303 to the result store's
// signed URL (S3 presigned, Azure user delegation SAS) and checks the
// bytes it answers signed (a client that reaches the result store).
func checkPresigned(t *testing.T, hc, signed *http.Client, base, id, body string) {
	t.Helper()
	noRedirect := &http.Client{Timeout: hc.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get(base + "/v1/operations/" + id)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "http") {
		t.Fatalf("status of %s: %d Location %q, want 303 to an absolute signed URL", id, res.StatusCode, loc)
	}
	res, err = signed.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != body {
		t.Fatalf("signed URL of %s: %d %q, want 200 %q", id, res.StatusCode, b, body)
	}
}

// runCrossAPIWakeup submits through api B an operation whose handler takes
// about a second, and checks that a long-poll and an SSE stream opened on
// api A are woken when a worker (a third process) finishes it: within a
// second or two of its end, not at the end of the 30 s wait.
func runCrossAPIWakeup(t *testing.T, storeURL, resultsURL string, env []string) {
	cfg := writeConfig(t, `
routes:
  - path: /v1/slow
    handler: exec
    exec:
      command: ["sh", "-c", "sleep 1; cat"]
`)
	common := []string{"-store", storeURL, "-results", resultsURL, "-config", cfg}
	a := startProc(t, "api", freeAddr(t), t.TempDir(), env, common...)
	b := startProc(t, "api", freeAddr(t), t.TempDir(), env, common...)
	w := startProc(t, "worker", freeAddr(t), t.TempDir(), env, common...)
	defer func() {
		for _, p := range []*arrProcess{a, b, w} {
			p.stop(t)
		}
	}()
	baseA, baseB := "http://"+a.addr, "http://"+b.addr

	for _, how := range []string{"long-poll", "sse"} {
		t.Run(how, func(t *testing.T) {
			id := submitTo(t, baseB, "POST", "/v1/slow", "text/plain", "woken "+how)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var url string
			if how == "long-poll" {
				// Wait for a terminal state: status changes until then are
				// answered at once, so loop on them.
				url = baseA + "/v1/operations/" + id + "?wait=30s&redirect=false"
			} else {
				url = baseA + "/v1/operations/" + id + "/events"
			}
			var final opJSON
			for final.Status != "succeeded" {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s on api A: %v", how, err)
				}
				if how == "long-poll" {
					err = json.NewDecoder(res.Body).Decode(&final)
					res.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				final = readEventsUntilTerminal(t, res.Body)
				res.Body.Close()
			}
			lag := time.Since(final.UpdatedAt)
			t.Logf("%s on api A woken %v after the worker's write (submitted through api B)", how, lag.Round(time.Millisecond))
			if lag > 3*time.Second {
				t.Fatalf("%s on api A answered %v after the operation finished: not woken by the change", how, lag)
			}
		})
	}
}

// readEventsUntilTerminal reads an SSE stream until an event whose data is
// an operation in a terminal state, and returns that operation.
func readEventsUntilTerminal(t *testing.T, r io.Reader) opJSON {
	t.Helper()
	dec := newSSEReader(r)
	for {
		data, err := dec.next()
		if err != nil {
			t.Fatalf("event stream ended before a terminal state: %v", err)
		}
		var op opJSON
		if json.Unmarshal([]byte(data), &op) == nil && (op.Status == "succeeded" || op.Status == "failed" || op.Status == "canceled") {
			return op
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// sseReader reads the data of Server-Sent Events.
type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &sseReader{sc: sc}
}

// next returns the data of the next event (its data lines joined by "\n").
func (s *sseReader) next() (string, error) {
	var data []string
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			if len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	if err := s.sc.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}

// TestScaleOutPostgres: two apis and two workers over a private PostgreSQL
// server; one worker and then PostgreSQL itself are SIGKILLed during the
// load (PostgreSQL is restarted, running its crash recovery, since it has
// no second node).
func TestScaleOutPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pg := pgtest.StartServer(t)
	results, env := scaleResults(t)
	eng := scaleEngine{storeURL: pg.URL + "&schema=arr", kill: pg.Kill, heal: func() {
		if err := pg.Restart(); err != nil {
			t.Errorf("restarting PostgreSQL: %v", err)
		}
	}}
	runScaleOut(t, eng, results, env, scaleOps(t))
	if t.Failed() {
		t.Logf("postgres log:\n%s", tail(pg.Log(), 3000))
	}
}

// TestCrossAPIWakeupPostgres: a long-poll and an SSE stream on api A are
// woken by a worker finishing an operation submitted through api B.
func TestCrossAPIWakeupPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	results, env := scaleResults(t)
	runCrossAPIWakeup(t, pgtest.URL(t), results, env)
}

// scaleResults is the result store every process of a scale-out test
// shares, and the environment its processes need to reach it.
// It is an S3 server (versitygw) the test starts: every process reads and
// writes results there, and clients download them through presigned URLs.
func scaleResults(t *testing.T) (string, []string) {
	return s3test.Start(t)
}

// TestScaleOutNATS: two apis and two workers over a 3-node JetStream
// cluster with R3 streams and bucket; one worker and then one NATS node
// are SIGKILLed during the load: the node that leads the operations
// bucket's stream, so that the cluster must elect a new leader while
// writes are in flight (the node is restarted later, and catches up).
func TestScaleOutNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := natstest.StartCluster(t, 3)
	results, env := scaleResults(t)
	victim := -1
	eng := scaleEngine{
		storeURL: c.URL() + "?replicas=3&ackWait=3s",
		kill: func() {
			victim = streamLeader(t, c, "KV_arr_ops")
			t.Logf("killing NATS node %s, leader of KV_arr_ops", c.Nodes[victim].Name)
			c.Kill(victim)
		},
		heal: func() {
			if err := c.Restart(victim); err != nil {
				t.Errorf("restarting NATS node %d: %v", victim, err)
			}
		},
	}
	runScaleOut(t, eng, results, env, scaleOps(t))
}

// streamLeader is the index in c.Nodes of the node leading stream.
func streamLeader(t *testing.T, c *natstest.Cluster, stream string) int {
	t.Helper()
	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info of %s: %+v %v", stream, info, err)
	}
	for i, n := range c.Nodes {
		if n.Name == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("leader %q of %s is not a node of the cluster", info.Cluster.Leader, stream)
	return -1
}

// TestCrossAPIWakeupNATS: as TestCrossAPIWakeupPostgres, on JetStream.
func TestCrossAPIWakeupNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := natstest.StartServer(t)
	results, env := scaleResults(t)
	runCrossAPIWakeup(t, c.URL()+"?ackWait=3s", results, env)
}
