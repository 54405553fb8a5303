package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/server"
)

// w5Result is the scale of state: n pending operations in the embedded
// store, then a real `arr serve` started on them.
type w5Result struct {
	n          int
	fill       time.Duration // to submit n operations through the library
	ready      time.Duration // from exec to /readyz answering 200
	rssReady   int64         // VmRSS at ready
	rssPeak    int64         // VmHWM after ready + 5 s of workers draining
	diskPerOp  float64       // bytes on disk per operation (store only)
	resultDisk int64
}

// w5 fills a data dir with n pending operations (1 KiB bodies) through the
// library, closes it, then starts `arr serve` on it with its default
// workers and measures the time to ready and the memory while it drains.
func w5(ctx context.Context, n, clients int) (w5Result, error) {
	r := w5Result{n: n}
	dir, err := os.MkdirTemp("", "arrbench-w5-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	srv, err := server.New(ctx, server.Config{Addr: "127.0.0.1:0", DataDir: dir, Workers: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return r, err
	}
	r.fill, err = parallel(ctx, n, clients, func(ctx context.Context, i int) error {
		_, _, err := srv.Client().Submit(ctx, arr.Submission{Route: "echo",
			Request: &operation.Request{Header: http.Header{"Content-Type": {"application/json"}}, Body: payload(i)}})
		return err
	})
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return r, err
	}
	r.diskPerOp = float64(dirBytes(filepath.Join(dir, "db"))) / float64(n)

	bin, err := buildArr()
	if err != nil {
		return r, err
	}
	start := time.Now()
	c, err := startChild(ctx, bin, "/readyz", "serve", "-addr", "{addr}", "-data", dir, "-log-level", "warn")
	if err != nil {
		return r, err
	}
	r.ready = time.Since(start)
	r.rssReady, _ = rssBytes(c.pid())
	time.Sleep(5 * time.Second)
	_, r.rssPeak = rssBytes(c.pid())
	if err := c.stop(); err != nil {
		return r, fmt.Errorf("arr serve: %w", err)
	}
	return r, nil
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
