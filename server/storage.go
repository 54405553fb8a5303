package server

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/internal/problem"
	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/operation"
)

// Defaults of StorageConfig.
const (
	// DefaultMinFreeBytes is the free-space watermark of every volume arr
	// writes to: room for the embedded store to flush two memtables (16
	// MiB each by default) and compact, small enough not to refuse work on
	// a machine with little disk.
	DefaultMinFreeBytes = 64 << 20
	// DefaultDiskCheckInterval is how often the free space is read.
	DefaultDiskCheckInterval = time.Second
	// DefaultCloseTimeout is how long shutdown waits for the stores to
	// close once the handlers are done.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultOpenWait is how long New waits for the stores to open before
	// it serves the probes while they go on opening.
	DefaultOpenWait = 10 * time.Second
	// StorageFullRetryAfter is the Retry-After of a submit refused by the
	// watermark: space comes back when an operator frees it or the janitor
	// deletes expired operations, not in a second.
	StorageFullRetryAfter = 30 * time.Second
)

// StorageConfig: see Config.Storage. Every field has a default, given in
// its comment.
type StorageConfig struct {
	// MinFreeBytes is the free-space watermark: when a volume arr writes
	// to (the data directory, the embedded store's directory, a file:
	// result store's) has less free than this, submits and retries answer
	// 507 with Retry-After before anything is written, and readiness
	// fails, until it has more again. Default DefaultMinFreeBytes (64
	// MiB); negative: no watermark.
	MinFreeBytes int64
	// MinFreePercent raises the watermark of a volume to this percentage
	// of its size, when that is more than MinFreeBytes. Default 0.
	MinFreePercent float64
	// CheckInterval is how often the free space is read (statfs): never
	// per request. Default DefaultDiskCheckInterval (1s).
	CheckInterval time.Duration
	// WriteDeadline bounds the wait on the store write of a submit, a
	// cancel or a retry (arr.Config.WriteDeadline, which it sets when
	// positive): one that fails or outlives it answers 503 with
	// Retry-After and fails readiness. Default arr.DefaultWriteDeadline
	// (5s).
	WriteDeadline time.Duration
	// CloseTimeout is how long shutdown waits for the stores to close,
	// after the running handlers are done or given back: a store that
	// does not close by then (a disk that does not take its last flush)
	// is abandoned, said in the log, and Serve returns. Default
	// DefaultCloseTimeout (5s).
	CloseTimeout time.Duration
	// OpenWait is how long New waits for the stores to open. When they
	// take longer, or when a volume is under the watermark at start (a
	// full disk), New returns a Server that serves /healthz (200) and
	// /readyz (503, saying why) and answers every other request 503,
	// while the stores go on opening (on a full disk: once the volume is
	// above the watermark again); Serve then comes up fully once they
	// are open. An error opening the stores with room on the disk fails
	// New as before. Default DefaultOpenWait (10s).
	OpenWait time.Duration
	// Statfs reads the bytes free (to an unprivileged writer) and the
	// size of the volume of a directory. Default: the system's (statfs,
	// GetDiskFreeSpaceEx on Windows); where there is none, the watermark
	// is off.
	Statfs func(dir string) (free, total uint64, err error)
}

func (c *StorageConfig) setDefaults() {
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = DefaultMinFreeBytes
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultDiskCheckInterval
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.OpenWait <= 0 {
		c.OpenWait = DefaultOpenWait
	}
	if c.Statfs == nil {
		c.Statfs = statfs
	}
}

// notReady is an error of readiness with a detail an operator may read
// on /readyz (api's PublicDetail).
type notReady struct {
	detail string
	err    error
}

func (e *notReady) Error() string        { return e.detail + ": " + e.err.Error() }
func (e *notReady) Unwrap() error        { return e.err }
func (e *notReady) PublicDetail() string { return e.detail }

// volume is one directory arr writes to, and what was last read of its
// disk.
type volume struct {
	name, dir     string // name: data, db or results
	free, total   atomic.Uint64
	min           atomic.Uint64 // the watermark, once the size is known
	below, failed atomic.Bool
}

// diskWatch reads the free space of the volumes every CheckInterval and
// answers from memory whether a write may start.
type diskWatch struct {
	cfg  StorageConfig
	log  *slog.Logger
	vols []*volume
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// storageDirs are the directories cfg's stores write to, by name: the data
// directory, the embedded store's and a file: result store's.
func storageDirs(cfg Config) []*volume {
	vols := []*volume{{name: "data", dir: cfg.DataDir}}
	seen := map[string]bool{filepath.Clean(cfg.DataDir): true}
	for _, u := range []string{cfg.StoreURL, cfg.QueueURL, cfg.ResultsURL} {
		name := ""
		switch {
		case strings.HasPrefix(u, "embedded:"):
			name = "db"
		case strings.HasPrefix(u, "file:"):
			name = "results"
		default:
			continue
		}
		pu, err := url.Parse(u)
		if err != nil {
			continue
		}
		dir := filepath.Clean(urlmux.Path(pu))
		if dir == "." || seen[dir] {
			continue
		}
		seen[dir] = true
		vols = append(vols, &volume{name: name, dir: dir})
	}
	return vols
}

func newDiskWatch(cfg StorageConfig, vols []*volume, log *slog.Logger) *diskWatch {
	return &diskWatch{cfg: cfg, log: log, vols: vols, stop: make(chan struct{}), done: make(chan struct{})}
}

// existing is dir, or its nearest existing parent (a store's directory is
// made when it opens).
func existing(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// check reads every volume once and logs the ones that crossed the
// watermark.
func (w *diskWatch) check() {
	if w.cfg.MinFreeBytes < 0 {
		return
	}
	for _, v := range w.vols {
		free, total, err := w.cfg.Statfs(existing(v.dir))
		if err != nil {
			if !v.failed.Swap(true) {
				w.log.Warn("arr: cannot read the free space of a volume; its watermark is off", "volume", v.name, "dir", v.dir, "err", err)
			}
			v.below.Store(false)
			continue
		}
		v.failed.Store(false)
		minFree := uint64(w.cfg.MinFreeBytes)
		if p := w.cfg.MinFreePercent; p > 0 {
			minFree = max(minFree, uint64(math.Ceil(float64(total)*p/100)))
		}
		v.free.Store(free)
		v.total.Store(total)
		v.min.Store(minFree)
		below := free < minFree
		switch was := v.below.Swap(below); {
		case below && !was:
			w.log.Error("arr: the disk is nearly full: submits and retries answer 507 and readiness fails until space is freed",
				"volume", v.name, "dir", v.dir, "free_bytes", free, "min_free_bytes", minFree)
		case !below && was:
			w.log.Info("arr: the disk has room again: submits are taken", "volume", v.name, "dir", v.dir,
				"free_bytes", free, "min_free_bytes", minFree)
		}
	}
}

// run checks every CheckInterval until close.
func (w *diskWatch) run() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.check()
		}
	}
}

func (w *diskWatch) close() {
	w.once.Do(func() { close(w.stop) })
}

// full is the StorageCheck of the core: a *arr.StorageError (StorageFull)
// while a volume is under its watermark, from the last reading.
func (w *diskWatch) full() error {
	for _, v := range w.vols {
		if v.below.Load() {
			free, minFree := v.free.Load(), v.min.Load()
			return &arr.StorageError{Reason: arr.StorageFull, RetryAfter: StorageFullRetryAfter,
				Err: &notReady{
					detail: fmt.Sprintf("the disk under the %s directory has %s free, under the watermark of %s; submits answer 507 until space is freed",
						v.name, sizeString(free), sizeString(minFree)),
					err: fmt.Errorf("%s has %d bytes free, under %d", v.dir, free, minFree)}}
		}
	}
	return nil
}

// register adds the volumes' gauges to reg.
func (w *diskWatch) register(reg prometheus.Registerer) {
	free := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "arr_storage_free_bytes",
		Help: "Bytes free on the volume of a directory arr writes to (data, db, results), as last read."}, []string{"volume"})
	minFree := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "arr_storage_min_free_bytes",
		Help: "The free-space watermark of the volume: under it, submits answer 507."}, []string{"volume"})
	reg.MustRegister(collectorFunc(func(ch chan<- prometheus.Metric) {
		for _, v := range w.vols {
			if v.total.Load() == 0 {
				continue
			}
			free.WithLabelValues(v.name).Set(float64(v.free.Load()))
			minFree.WithLabelValues(v.name).Set(float64(v.min.Load()))
		}
		free.Collect(ch)
		minFree.Collect(ch)
	}))
}

// collectorFunc is a collector that updates its vectors before collecting.
type collectorFunc func(ch chan<- prometheus.Metric)

func (f collectorFunc) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// sizeString writes n bytes for people: 12.3 MiB.
func sizeString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ready is the api's readiness: the stores are open, no volume is under
// its watermark, the store writes callers wait on succeed, and no engine
// reports a fault of its own (the embedded store's background errors and
// write stalls).
func (s *Server) ready() error {
	if !s.opened.Load() {
		return s.notOpen()
	}
	if err := s.disk.full(); err != nil {
		return err
	}
	if err := s.client.StorageErr(); err != nil {
		return &arr.StorageError{Reason: arr.StorageUnavailable, RetryAfter: arr.StorageRetryAfter,
			Err: &notReady{detail: "store writes are failing or outlived their deadline; see the log", err: err}}
	}
	for _, e := range s.engineList() {
		if err := e.Health(); err != nil {
			return &arr.StorageError{Reason: arr.StorageUnavailable, RetryAfter: arr.StorageRetryAfter,
				Err: &notReady{detail: "the store reports a fault (a failing flush or a write stall); see the log", err: err}}
		}
	}
	return nil
}

// notOpen says why the stores are not open yet.
func (s *Server) notOpen() error {
	if err := s.disk.full(); err != nil {
		return err
	}
	err := errors.New("opening")
	if p := s.openErr.Load(); p != nil {
		err = *p
	}
	return &arr.StorageError{Reason: arr.StorageUnavailable, RetryAfter: arr.StorageRetryAfter,
		Err: &notReady{detail: "the stores are not open yet; see the log", err: err}}
}

// starting serves a process whose stores are not open yet: /healthz 200,
// /readyz 503 saying why, /metrics (when metrics), and 503 with
// Retry-After for everything else.
func (s *Server) starting(metrics http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
			return
		case r.URL.Path == "/metrics" && metrics != nil:
			metrics.ServeHTTP(w, r)
			return
		}
		err := s.notOpen()
		var se *arr.StorageError
		errors.As(err, &se)
		w.Header().Set("Retry-After", fmt.Sprint(int(se.RetryAfter/time.Second)))
		detail := "the stores are not open yet"
		var nr *notReady
		if errors.As(err, &nr) {
			detail = nr.detail
		}
		typ := api.ProblemStorageUnavailable
		if se.Reason == arr.StorageFull {
			typ = api.ProblemStorageFull
		}
		problem.Write(w, nil, &operation.Problem{Type: typ, Title: "Not ready",
			Status: http.StatusServiceUnavailable, Detail: detail})
	})
}

// registerStorageMetrics adds the counter of failed or late store writes.
func (s *Server) registerStorageMetrics() {
	c := s.client
	s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "arr_storage_write_faults_total",
		Help: "Store writes of submits, cancels and retries that failed or outlived their deadline (answered 503)."},
		func() float64 { return float64(c.StorageFaults()) }))
}
