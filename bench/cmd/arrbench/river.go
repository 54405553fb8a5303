package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River (github.com/riverqueue/river) on PostgreSQL through pgx v5, run
// in-process: the harness inserts with a river.Client and works jobs with the
// same client.
//
// Settings that differ from River's and pgx's defaults, and why:
//   - QueueConfig.MaxWorkers = workers on the default queue.
//   - FetchCooldown = 2 ms (default 100 ms) and FetchPollInterval = 20 ms
//     (default 1 s): the values River's own benchmark (cmd/river riverbench)
//     uses. FetchCooldown caps how often a producer fetches and how often a
//     client sends an insert NOTIFY per queue; a job inserted within the
//     cooldown of the last NOTIFY is found by the next fetch after a job
//     finishes or by the poll, so the defaults would add up to ~1 s of
//     latency and cap throughput. LISTEN/NOTIFY stays on (pgxv5 default).
//   - pgxpool MaxConns = workers + 32, at most max_connections - 10, unless
//     the URL sets pool_max_conns (pgx default: max(4, NumCPU)). Each running
//     job writes its result through the pool and every Submit is its own
//     insert transaction, so 4 connections would serialise them.
//     MinConns = MaxConns, and Start waits for them, so the backends that
//     serve the run exist when PIDs is read after Start.
//   - Logger at Warn (River logs start/stop at Info).
//
// The job args carry the body as []byte (base64 in River's jsonb args):
// jsonb re-formats JSON, so json.RawMessage would not echo the exact bytes.
// The worker writes the result with INSERT ... ON CONFLICT DO UPDATE into
// results(job_id, body) in its own transaction; a result is readable once
// that commits, before River's completer marks the job completed.

const riverDatabase = "arrbench_river"

type riverEchoArgs struct {
	Body []byte `json:"body"`
}

func (riverEchoArgs) Kind() string { return "echo" }

type riverEchoWorker struct {
	river.WorkerDefaults[riverEchoArgs]
	s *riverSystem
}

func (w *riverEchoWorker) Work(ctx context.Context, job *river.Job[riverEchoArgs]) error {
	_, err := w.s.pool.Exec(ctx,
		`INSERT INTO results (job_id, body) VALUES ($1, $2)
		 ON CONFLICT (job_id) DO UPDATE SET body = EXCLUDED.body`,
		job.ID, job.Args.Body)
	if err == nil {
		w.s.written.Add(1)
	}
	return err
}

type riverSystem struct {
	url string // the server's admin database, where arrbench_river is (re)created

	// Set by Start, cleared by Stop.
	pool       *pgxpool.Pool
	client     *river.Client[pgx.Tx]
	cancel     context.CancelFunc // of the context the client runs under
	written    atomic.Int64       // results committed by the worker since Start
	durability string
}

// newRiver returns River on the PostgreSQL server at databaseURL; Start
// (re)creates the database arrbench_river there.
func newRiver(databaseURL string) System {
	return &riverSystem{url: databaseURL}
}

func (s *riverSystem) Name() string { return "River (PostgreSQL)" }

func (s *riverSystem) Durability() string {
	if s.durability != "" {
		return s.durability
	}
	return "PostgreSQL as configured"
}

func (s *riverSystem) Start(ctx context.Context, workers int) (err error) {
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	s.written.Store(0)

	// A fresh database each Start.
	admin, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return err
	}
	var maxConns int32
	err = admin.QueryRow(ctx, `SELECT current_setting('max_connections')::int`).Scan(&maxConns)
	if err == nil {
		_, err = admin.Exec(ctx, `DROP DATABASE IF EXISTS `+riverDatabase+` WITH (FORCE)`)
	}
	if err == nil {
		_, err = admin.Exec(ctx, `CREATE DATABASE `+riverDatabase)
	}
	admin.Close(ctx)
	if err != nil {
		return fmt.Errorf("river: recreate database: %w", err)
	}

	cfg, err := pgxpool.ParseConfig(s.url)
	if err != nil {
		return err
	}
	cfg.ConnConfig.Database = riverDatabase
	if !strings.Contains(s.url, "pool_max_conns") {
		cfg.MaxConns = min(int32(workers)+32, max(maxConns-10, 4))
	}
	// Keep the pool full (pgxpool opens MinConns in the background) so that
	// the backends serving the run exist when PIDs is read after Start.
	cfg.MinConns = cfg.MaxConns
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = peerPoll(openCtx, time.Millisecond, func() (bool, error) {
		return s.pool.Stat().TotalConns() >= cfg.MinConns, nil
	})
	cancel()
	if err != nil {
		return fmt.Errorf("river: pool did not open %d connections: %w", cfg.MinConns, err)
	}
	driver := riverpgxv5.New(s.pool)
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river: migrate: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `CREATE TABLE results (job_id bigint PRIMARY KEY, body bytea NOT NULL)`); err != nil {
		return err
	}
	var fsync, syncCommit string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&fsync, &syncCommit); err != nil {
		return err
	}
	s.durability = fmt.Sprintf("PostgreSQL fsync=%s, synchronous_commit=%s", fsync, syncCommit)
	if fsync == "on" && syncCommit != "off" {
		s.durability += ": each Insert committed to the WAL on disk"
	}

	ws := river.NewWorkers()
	river.AddWorker(ws, &riverEchoWorker{s: s})
	config := &river.Config{
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Workers:           ws,
	}
	if workers > 0 {
		config.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}}
	}
	// With no Queues the client only inserts.
	if s.client, err = river.NewClient(driver, config); err != nil {
		return err
	}
	if workers > 0 {
		// The client runs under its own context: Stop stops it gracefully,
		// and ctx (which may be a Start timeout) must not cancel its jobs.
		var runCtx context.Context
		runCtx, s.cancel = context.WithCancel(context.Background())
		if err := s.client.Start(runCtx); err != nil {
			return err
		}
	}
	return nil
}

func (s *riverSystem) Submit(ctx context.Context, body []byte) (string, error) {
	res, err := s.client.Insert(ctx, riverEchoArgs{Body: body}, nil)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(res.Job.ID, 10), nil
}

// WaitCompleted waits until n result rows exist. It checks every 10 ms, first
// against the count of result inserts the worker saw commit (free), then
// confirms with SELECT count(*) FROM results: polling count(*) alone every
// 10 ms would scan the whole, growing table 100 times a second and bill
// that to PostgreSQL's CPU.
func (s *riverSystem) WaitCompleted(ctx context.Context, n int) error {
	return peerPoll(ctx, 10*time.Millisecond, func() (bool, error) {
		if s.written.Load() < int64(n) {
			return false, nil
		}
		var c int64
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM results`).Scan(&c)
		return c >= int64(n), err
	})
}

// SubmitAndWait inserts, then polls the results table every 1 ms: River's
// in-process Subscribe fires only when the completer marks the job
// completed, after the result row is readable.
func (s *riverSystem) SubmitAndWait(ctx context.Context, body []byte) ([]byte, error) {
	return submitThenPoll(ctx, s, body)
}

// result returns the job's result row once it exists.
func (s *riverSystem) result(ctx context.Context, id string) ([]byte, bool, error) {
	var body []byte
	err := s.pool.QueryRow(ctx, `SELECT body FROM results WHERE job_id = $1`, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return body, err == nil, err
}

func (s *riverSystem) Status(ctx context.Context, id string) error {
	jobID, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return err
	}
	_, err = s.client.JobGet(ctx, jobID)
	return err
}

// PIDs are all PostgreSQL server processes on the machine (postmaster,
// backends, background workers), found by /proc/*/comm. Backends started
// after the call are not included.
func (s *riverSystem) PIDs() []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (s *riverSystem) SelfCPU() bool { return true }

func (s *riverSystem) Stop() error {
	var err error
	if s.client != nil && s.cancel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.client.Stop(ctx) // graceful: running jobs finish
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	// The database stays for inspection; the next Start drops it.
	s.pool, s.client, s.cancel = nil, nil, nil
	return err
}
