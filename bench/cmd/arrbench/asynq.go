package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynq (github.com/hibiken/asynq) on Redis, run in-process: the harness
// enqueues with asynq.Client and works with asynq.Server.
//
// Settings that differ from asynq's defaults, and why:
//   - Config.Concurrency = workers (the workload's worker count).
//   - Config.TaskCheckInterval = 10 ms (default 1 s). asynq does not block
//     on Redis for new tasks: when its queues are empty the one fetch loop
//     sleeps TaskCheckInterval/2 + rand(TaskCheckInterval) before polling
//     again, so with the default a job submitted to an idle (or briefly
//     drained) queue waits ~1 s on average before any worker sees it. A user
//     who cares about latency lowers it; at 10 ms an idle server polls Redis
//     ~100 times a second, which costs Redis next to nothing.
//   - Config.LogLevel = Warn (asynq logs start/stop lines at Info).
//   - asynq.Retention(24h) on each task so results stay readable after
//     completion (without it asynq deletes a completed task and its result).
//
// The durable variant runs its own redis-server with --appendonly yes
// --appendfsync always --save "": Redis writes and fsyncs the AOF before it
// answers, so an Enqueue that returned survives a crash, as in arr.

const (
	asynqQueue             = "default"
	asynqTaskType          = "echo"
	asynqTaskCheckInterval = 10 * time.Millisecond
	// asynqCompletedKey is the sorted set of tasks in the completed state
	// (asynq's internal base.CompletedKey("default")): its ZCARD is the
	// Completed count that Inspector.GetQueueInfo reports.
	asynqCompletedKey = "asynq:{" + asynqQueue + "}:completed"
)

type asynqSystem struct {
	addr    string // the machine's Redis (host:port or redis:// URL); unused when durable
	durable bool

	// Set by Start, cleared by Stop.
	rdb        *redis.Client // admin: FLUSHALL, INFO, CONFIG GET, ZCARD
	client     *asynq.Client
	insp       *asynq.Inspector
	srv        *asynq.Server
	redis      *asynqRedisChild // the private redis-server when durable
	pid        int
	durability string
}

// newAsynq returns asynq on the machine's Redis at redisAddr as it is
// configured (durable=false), or on a private redis-server that fsyncs every
// write (durable=true; redisAddr is then ignored).
func newAsynq(redisAddr string, durable bool) System {
	return &asynqSystem{addr: redisAddr, durable: durable}
}

func (s *asynqSystem) Name() string {
	if s.durable {
		return "asynq (Redis, appendfsync always)"
	}
	return "asynq (Redis, no fsync)"
}

func (s *asynqSystem) Durability() string {
	if s.durability != "" {
		return s.durability
	}
	if s.durable {
		return "Redis AOF, appendfsync always"
	}
	return "Redis as configured"
}

func (s *asynqSystem) Start(ctx context.Context, workers int) (err error) {
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	opts := &redis.Options{Addr: s.addr}
	if s.durable {
		if s.redis, err = startAsynqRedis(ctx); err != nil {
			return err
		}
		opts = &redis.Options{Addr: s.redis.addr}
	} else if strings.Contains(s.addr, "://") {
		if opts, err = redis.ParseURL(s.addr); err != nil {
			return err
		}
	}
	s.rdb = redis.NewClient(opts)
	if err := s.rdb.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("asynq: FLUSHALL on %s: %w", opts.Addr, err)
	}
	if s.redis != nil {
		s.pid = s.redis.cmd.Process.Pid
	} else if s.pid, err = asynqRedisPID(ctx, s.rdb); err != nil {
		return err
	}
	if s.durability, err = asynqRedisDurability(ctx, s.rdb); err != nil {
		return err
	}

	conn := asynq.RedisClientOpt{Addr: opts.Addr, Username: opts.Username, Password: opts.Password, DB: opts.DB}
	s.client = asynq.NewClient(conn)
	s.insp = asynq.NewInspector(conn)
	if workers > 0 {
		s.srv = asynq.NewServer(conn, asynq.Config{
			Concurrency:       workers,
			TaskCheckInterval: asynqTaskCheckInterval,
			LogLevel:          asynq.WarnLevel,
		})
		// The echo handler: the result is the payload, written with the
		// task's ResultWriter (readable via the Inspector once completed).
		echo := asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
			_, err := t.ResultWriter().Write(t.Payload())
			return err
		})
		if err := s.srv.Start(echo); err != nil {
			return err
		}
	}
	return nil
}

func (s *asynqSystem) Submit(ctx context.Context, body []byte) (string, error) {
	info, err := s.client.EnqueueContext(ctx, asynq.NewTask(asynqTaskType, body, asynq.Retention(24*time.Hour)))
	if err != nil {
		return "", err
	}
	return info.ID, nil
}

// WaitCompleted polls every 10 ms until n tasks are in the completed state
// (result written and the task moved to completed). It reads ZCARD of the
// completed set rather than Inspector.GetQueueInfo, which reports the same
// Completed figure but also runs a MEMORY USAGE sampling script on every
// call: polling that at 100 Hz would bill the harness's bookkeeping to
// Redis's CPU.
func (s *asynqSystem) WaitCompleted(ctx context.Context, n int) error {
	return peerPoll(ctx, 10*time.Millisecond, func() (bool, error) {
		c, err := s.rdb.ZCard(ctx, asynqCompletedKey).Result()
		return c >= int64(n), err
	})
}

// SubmitAndWait enqueues, then polls the task's info every 1 ms until it is
// completed: asynq has no completion notification for clients.
func (s *asynqSystem) SubmitAndWait(ctx context.Context, body []byte) ([]byte, error) {
	return submitThenPoll(ctx, s, body)
}

// peerResulter reads a peer's result: its bytes and whether it is there.
type peerResulter interface {
	result(ctx context.Context, id string) ([]byte, bool, error)
}

// submitThenPoll submits body and polls the peer's result every 1 ms.
func submitThenPoll(ctx context.Context, s interface {
	Submit(context.Context, []byte) (string, error)
	peerResulter
}, body []byte) ([]byte, error) {
	id, err := s.Submit(ctx, body)
	if err != nil {
		return nil, err
	}
	var res []byte
	err = peerPoll(ctx, time.Millisecond, func() (done bool, err error) {
		res, done, err = s.result(ctx, id)
		return done, err
	})
	return res, err
}

// result returns the task's result once it is completed.
func (s *asynqSystem) result(_ context.Context, id string) ([]byte, bool, error) {
	info, err := s.insp.GetTaskInfo(asynqQueue, id)
	if err != nil || info.State != asynq.TaskStateCompleted {
		return nil, false, err
	}
	return info.Result, true, nil
}

func (s *asynqSystem) Status(_ context.Context, id string) error {
	_, err := s.insp.GetTaskInfo(asynqQueue, id)
	return err
}

func (s *asynqSystem) PIDs() []int {
	if s.pid == 0 {
		return nil
	}
	return []int{s.pid}
}

func (s *asynqSystem) SelfCPU() bool { return true }

func (s *asynqSystem) Stop() error {
	var errs []error
	if s.srv != nil {
		s.srv.Shutdown() // waits for running handlers (up to ShutdownTimeout, 8 s)
	}
	if s.client != nil {
		errs = append(errs, s.client.Close())
	}
	if s.insp != nil {
		errs = append(errs, s.insp.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.redis != nil {
		errs = append(errs, s.redis.stop())
	}
	s.rdb, s.client, s.insp, s.srv, s.redis, s.pid = nil, nil, nil, nil, nil, 0
	return errors.Join(errs...)
}

// asynqRedisPID is the process id the Redis server reports for itself.
func asynqRedisPID(ctx context.Context, rdb *redis.Client) (int, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(v)
		if err != nil {
			return 0, err
		}
		// Its CPU is read from /proc: it must be this machine's process
		// (not one in a container or on another host).
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "redis-server") {
			return 0, fmt.Errorf("asynq: Redis reports process_id %d, which is not a redis-server process on this machine", pid)
		}
		return pid, nil
	}
	return 0, errors.New("asynq: no process_id in Redis INFO server")
}

// asynqRedisDurability describes what an acknowledged write survives, from
// the server's own configuration.
func asynqRedisDurability(ctx context.Context, rdb *redis.Client) (string, error) {
	get := func(key string) (string, error) {
		m, err := rdb.ConfigGet(ctx, key).Result()
		return m[key], err
	}
	aof, err := get("appendonly")
	if err != nil {
		return "", err
	}
	fsync, err := get("appendfsync")
	if err != nil {
		return "", err
	}
	save, err := get("save")
	if err != nil {
		return "", err
	}
	switch {
	case aof == "yes" && fsync == "always":
		return "Redis AOF appendfsync always: each Enqueue fsync'd before the reply", nil
	case aof == "yes":
		return fmt.Sprintf("Redis AOF appendfsync %s: recent writes lost on crash", fsync), nil
	case save == "":
		return "Redis as configured: no AOF, no RDB — lost on crash", nil
	default:
		return fmt.Sprintf("Redis as configured: no AOF, RDB snapshots (save %q) — writes since the last snapshot lost on crash", save), nil
	}
}

// asynqRedisChild is a private redis-server that fsyncs its AOF on every
// write, in a temp dir removed on stop.
type asynqRedisChild struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	out  *asynqLockedBuffer
	done chan error // the result of cmd.Wait
}

func startAsynqRedis(ctx context.Context) (*asynqRedisChild, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // pick a free port
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "arrbench-redis-")
	if err != nil {
		return nil, err
	}
	c := &asynqRedisChild{addr: addr, dir: dir, out: &asynqLockedBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", port, "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the harness
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { c.done <- c.cmd.Wait() }()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rdb.Ping(ctx).Err() == nil {
			return c, nil
		}
		select {
		case err := <-c.done:
			c.done <- err
			_ = c.stop()
			return nil, fmt.Errorf("redis-server exited: %v: %s", err, c.out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = c.stop()
			return nil, fmt.Errorf("redis-server did not answer PING: %s", c.out.String())
		}
	}
}

// stop terminates the server (SIGTERM, then SIGKILL after 10 s) and removes
// its directory.
func (c *asynqRedisChild) stop() error {
	defer os.RemoveAll(c.dir)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil // exit status after SIGTERM is not interesting
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("redis-server did not stop within 10 s; killed: %s", c.out.String())
	}
}

// asynqLockedBuffer collects a child's output; written by exec's copier
// goroutines, read on error.
type asynqLockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *asynqLockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *asynqLockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// peerPoll calls check every interval until it reports done, fails, or ctx
// ends.
func peerPoll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
