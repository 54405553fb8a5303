package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/mem"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// fakeDisk is a Statfs whose free bytes a test sets.
type fakeDisk struct{ free atomic.Uint64 }

func (d *fakeDisk) statfs(string) (free, total uint64, err error) { return d.free.Load(), 1 << 30, nil }

// testDriver is a mem engine whose open waits for openGate (when not nil)
// and whose Close waits for closeGate (when not nil): stores that are slow
// to open, or that never finish closing.
type testDriver struct {
	e         *mem.Engine
	closeGate chan struct{}
}

func (d *testDriver) Caps() engine.Caps { return engine.Caps{} }
func (d *testDriver) OpenStore(context.Context) (opdriver.Store, error) {
	return d.e.Store(), nil
}
func (d *testDriver) OpenQueue(context.Context) (qdriver.Queue, error) {
	return d.e.Queue(mem.QueueOptions{}), nil
}
func (d *testDriver) OpenResults(context.Context) (rdriver.Store, error) { return d.e.Results(), nil }
func (d *testDriver) OpenSigner(ctx context.Context, rs *resultstore.Store) (*urlsign.Signer, error) {
	return d.e.Signer(ctx, rs, mem.ResultsOptions{})
}
func (d *testDriver) Atomic() engine.Atomic { return nil }
func (d *testDriver) Close() error {
	if d.closeGate != nil {
		<-d.closeGate
	}
	return d.e.Close()
}

var (
	openGate  atomic.Pointer[chan struct{}]
	closeGate atomic.Pointer[chan struct{}]
)

func init() {
	engine.Register("storagetest", func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		if g := openGate.Load(); g != nil {
			<-*g
		}
		d := &testDriver{e: mem.New()}
		if g := closeGate.Load(); g != nil {
			d.closeGate = *g
		}
		return d, nil
	})
}

type running struct {
	base string
	stop func() error
}

// serve runs a server over cfg until the test ends (or stop).
func serve(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.StoreURL == "" {
		cfg.StoreURL = "mem:" + strings.ReplaceAll(t.Name(), "/", "-")
		cfg.QueueURL, cfg.ResultsURL = cfg.StoreURL, cfg.StoreURL
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var stopped atomic.Bool
	stop := func() error {
		if stopped.Swap(true) {
			return nil
		}
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return &running{base: "http://" + s.Addr(), stop: stop}
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func call(t *testing.T, method, u, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

// eventually polls f until it is true, failing after 10 s.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func problemType(t *testing.T, a answer) string {
	t.Helper()
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type %q, want a problem: %s", ct, a.body)
	}
	var p struct{ Type, Detail string }
	if err := json.Unmarshal([]byte(a.body), &p); err != nil {
		t.Fatal(err)
	}
	return p.Type
}

// Under the watermark submits answer 507 with Retry-After and readiness
// fails saying why, while /healthz and /metrics answer; once the disk
// has room again, both come back without a restart.
func TestWatermarkRefusesAndRecovers(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 29)
	r := serve(t, Config{Storage: StorageConfig{MinFreeBytes: 64 << 20, CheckInterval: 10 * time.Millisecond, Statfs: disk.statfs}})
	if a := call(t, "POST", r.base+"/v1/echo", "x"); a.code != 202 {
		t.Fatalf("submit with room: %d %s", a.code, a.body)
	}
	disk.free.Store(10 << 20)
	eventually(t, "readiness fails under the watermark", func() bool { return call(t, "GET", r.base+"/readyz", "").code == 503 })
	a := call(t, "GET", r.base+"/readyz", "")
	if !strings.Contains(a.body, "10.0 MiB free") || problemType(t, a) != "urn:arr:problem:insufficient-storage" {
		t.Fatalf("/readyz under the watermark: %s", a.body)
	}
	a = call(t, "POST", r.base+"/v1/echo", "x")
	if a.code != 507 || a.header.Get("Retry-After") != "30" || problemType(t, a) != "urn:arr:problem:insufficient-storage" {
		t.Fatalf("submit under the watermark: %d Retry-After %q %s", a.code, a.header.Get("Retry-After"), a.body)
	}
	if a := call(t, "GET", r.base+"/healthz", ""); a.code != 200 {
		t.Fatalf("/healthz under the watermark: %d", a.code)
	}
	if a := call(t, "GET", r.base+"/metrics", ""); !strings.Contains(a.body, `arr_storage_free_bytes{volume="data"} 1.048576e+07`) {
		t.Fatalf("/metrics has no free bytes gauge of 10 MiB:\n%s", a.body)
	}
	disk.free.Store(1 << 29)
	eventually(t, "readiness comes back", func() bool { return call(t, "GET", r.base+"/readyz", "").code == 200 })
	if a := call(t, "POST", r.base+"/v1/echo", "x"); a.code != 202 {
		t.Fatalf("submit once there is room: %d %s", a.code, a.body)
	}
}

// A start on a full disk opens no store, serves /healthz and a /readyz
// that says why, answers the rest 503, and comes up fully once there is
// room.
func TestStartOnAFullDisk(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 20)
	r := serve(t, Config{Storage: StorageConfig{MinFreeBytes: 64 << 20, CheckInterval: 10 * time.Millisecond, Statfs: disk.statfs}})
	if a := call(t, "GET", r.base+"/healthz", ""); a.code != 200 {
		t.Fatalf("/healthz on a full disk: %d", a.code)
	}
	a := call(t, "GET", r.base+"/readyz", "")
	if a.code != 503 || !strings.Contains(a.body, "1.0 MiB free") {
		t.Fatalf("/readyz on a full disk: %d %s", a.code, a.body)
	}
	a = call(t, "POST", r.base+"/v1/echo", "x")
	if a.code != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("submit before the stores are open: %d %s", a.code, a.body)
	}
	disk.free.Store(1 << 29)
	eventually(t, "ready once there is room", func() bool { return call(t, "GET", r.base+"/readyz", "").code == 200 })
	if a := call(t, "POST", r.base+"/v1/echo", "x"); a.code != 202 {
		t.Fatalf("submit once open: %d %s", a.code, a.body)
	}
}

// Stores slower to open than OpenWait: the probes are served meanwhile,
// and the server comes up once they open.
func TestStoresSlowToOpen(t *testing.T) {
	gate := make(chan struct{})
	openGate.Store(&gate)
	defer openGate.Store(nil)
	u := "storagetest:slow"
	start := time.Now()
	r := serve(t, Config{StoreURL: u, QueueURL: u, ResultsURL: u, Storage: StorageConfig{OpenWait: 50 * time.Millisecond}})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("New took %s; OpenWait is 50ms", d)
	}
	if a := call(t, "GET", r.base+"/healthz", ""); a.code != 200 {
		t.Fatalf("/healthz while opening: %d", a.code)
	}
	if a := call(t, "GET", r.base+"/readyz", ""); a.code != 503 || !strings.Contains(a.body, "not open yet") {
		t.Fatalf("/readyz while opening: %d %s", a.code, a.body)
	}
	close(gate)
	eventually(t, "ready once open", func() bool { return call(t, "GET", r.base+"/readyz", "").code == 200 })
	if a := call(t, "POST", r.base+"/v1/echo", "x"); a.code != 202 {
		t.Fatalf("submit once open: %d %s", a.code, a.body)
	}
}

// A store that never finishes closing does not keep Serve: it returns,
// saying what it abandoned, within the grace plus CloseTimeout.
func TestShutdownAbandonsAStoreThatDoesNotClose(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	closeGate.Store(&gate)
	defer closeGate.Store(nil)
	u := "storagetest:hang"
	cfg := Config{StoreURL: u, QueueURL: u, ResultsURL: u, Storage: StorageConfig{CloseTimeout: 200 * time.Millisecond}}
	cfg.Worker.ShutdownGrace = 100 * time.Millisecond
	r := serve(t, cfg)
	if a := call(t, "POST", r.base+"/v1/echo", "x"); a.code != 202 {
		t.Fatalf("submit: %d %s", a.code, a.body)
	}
	start := time.Now()
	err := r.stop()
	if d := time.Since(start); d > 7*time.Second {
		t.Fatalf("Serve returned %s after its context ended; the limit is the HTTP grace (5s) plus 200ms", d)
	}
	if err == nil || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("Serve = %v, want an error saying what it abandoned", err)
	}
}
