package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The peers run against real servers: Redis (REDIS_URL, default
// 127.0.0.1:6379), redis-server on PATH for the durable variant, and
// PostgreSQL (DATABASE_URL). A missing service skips the test unless CI is
// set, where it fails.

func peerUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func peerRedisAddr(t *testing.T) string {
	addr := os.Getenv("REDIS_URL")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	host := addr
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
		if j := strings.IndexAny(host, "/?"); j >= 0 {
			host = host[:j]
		}
		if j := strings.LastIndex(host, "@"); j >= 0 {
			host = host[j+1:]
		}
	}
	c, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		peerUnavailable(t, "Redis unreachable at %s: %v", addr, err)
	}
	c.Close()
	return addr
}

func TestPeerAsynq(t *testing.T) {
	testPeer(t, newAsynq(peerRedisAddr(t), false))
}

func TestPeerAsynqDurable(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		peerUnavailable(t, "redis-server not on PATH: %v", err)
	}
	s := newAsynq("", true)
	testPeer(t, s)
	if !strings.Contains(s.Durability(), "appendfsync always") {
		t.Errorf("Durability = %q", s.Durability())
	}
}

func TestPeerRiver(t *testing.T) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		peerUnavailable(t, "PostgreSQL unreachable at %s: %v", url, err)
	}
	conn.Close(ctx)
	s := newRiver(url)
	testPeer(t, s)
	if !strings.HasPrefix(s.Durability(), "PostgreSQL fsync=") {
		t.Errorf("Durability = %q", s.Durability())
	}
}

// peerResulter is implemented by both peers: a job's result once readable.

func peerBody(i int) []byte {
	// ~1 KiB of JSON, distinct per i.
	return fmt.Appendf(nil, `{"id":"job-%d","customername":"customer %d","pad":"%s"}`, i, i, strings.Repeat("x", 960))
}

func testPeer(t *testing.T, s System) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Logf("%s: %s", s.Name(), s.Durability())

	// With workers: every job completes with its own body as result.
	if err := s.Start(ctx, 4); err != nil {
		t.Fatalf("Start(4): %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	t.Logf("Durability after Start: %s", s.Durability())

	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				id, err := s.Submit(ctx, peerBody(i))
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Submit: %v", err)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("bad or duplicate id %q", id)
		}
		seen[id] = true
	}

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	err := s.WaitCompleted(wctx, n)
	wcancel()
	if err != nil {
		t.Fatalf("WaitCompleted(%d): %v", n, err)
	}
	rr, ok := s.(peerResulter)
	if !ok {
		t.Fatalf("%T has no result method", s)
	}
	for i, id := range ids {
		got, ok, err := rr.result(ctx, id)
		if err != nil || !ok || !bytes.Equal(got, peerBody(i)) {
			t.Fatalf("result of job %d (%s) = %q, %v, %v; want its body", i, id, got, ok, err)
		}
	}

	for i := n; i < n+3; i++ {
		start := time.Now()
		got, err := s.SubmitAndWait(ctx, peerBody(i))
		if err != nil || !bytes.Equal(got, peerBody(i)) {
			t.Fatalf("SubmitAndWait = %q, %v; want the body", got, err)
		}
		t.Logf("SubmitAndWait: %v", time.Since(start))
	}

	if err := s.Status(ctx, ids[0]); err != nil {
		t.Errorf("Status(%s): %v", ids[0], err)
	}
	if err := s.Status(ctx, "999999999"); err == nil {
		t.Errorf("Status of an unknown id succeeded")
	}

	pids := s.PIDs()
	if len(pids) == 0 {
		t.Fatalf("PIDs empty")
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			t.Errorf("PID %d: %v", pid, err)
		}
	}
	if !s.SelfCPU() {
		t.Errorf("SelfCPU = false")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	if a, ok := s.(*asynqSystem); ok && a.durable {
		// The private redis-server is gone.
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pids[0])); err == nil {
			t.Errorf("redis-server %d still running after Stop", pids[0])
		}
	}

	// Without workers: submissions stay pending, and Start began clean.
	if err := s.Start(ctx, 0); err != nil {
		t.Fatalf("Start(0): %v", err)
	}
	stopped = false
	if _, ok, _ := rr.result(ctx, ids[n-1]); ok {
		t.Errorf("result of a job from the previous Start readable after Start")
	}
	for i := range 50 {
		if _, err := s.Submit(ctx, peerBody(i)); err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	wctx, wcancel = context.WithTimeout(ctx, 200*time.Millisecond)
	err = s.WaitCompleted(wctx, 1)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCompleted with no workers = %v; want a deadline error", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
}
