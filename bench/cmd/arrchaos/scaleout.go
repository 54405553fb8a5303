package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/internal/pgtest"
)

// ---- scale-out: an engine, two arr api and two arr worker ----

// engine is the shared store the scale-out processes run over, started and
// killed by arrchaos.
type engine interface {
	storeURL() string
	describe() string
	// victim kills one node of the engine (a random one of a cluster) and
	// restarts the same one.
	victim() victim
	stop()
}

// scaleOut is a running scale-out deployment.
type scaleOut struct {
	engine  engine
	procs   []*server // api A, api B, worker 1, worker 2
	bases   []string  // the apis' base URLs
	victims []victim
	logs    []*os.File
}

// startScaleOut starts cfg.Engine, then two apis and two workers over it
// with a shared file: result store, each with its own data directory and
// log in tmp. On error, the part started is returned, to be stopped.
func startScaleOut(ctx context.Context, cfg config, bin, tmp string, logf func(string, ...any)) (*scaleOut, error) {
	so := &scaleOut{}
	var err error
	switch cfg.Engine {
	case "nats":
		so.engine, err = startNATS(ctx, filepath.Join(tmp, "nats"))
	case "postgres":
		so.engine, err = startPostgres(ctx, tmp)
	}
	if err != nil {
		return so, err
	}
	results := filepath.Join(tmp, "results")
	if err := os.MkdirAll(results, 0o755); err != nil {
		return so, err
	}
	// -lease as the consumer's ackWait on NATS: a killed worker's
	// operations run again after a few seconds.
	extra := []string{"-store", so.engine.storeURL(), "-results", "file:" + results, "-lease", "3s"}
	for _, p := range []struct{ role, name, file string }{
		{"api", "api A", "apiA"}, {"api", "api B", "apiB"}, {"worker", "worker 1", "worker1"}, {"worker", "worker 2", "worker2"},
	} {
		addr, err := freeAddr()
		if err != nil {
			return so, err
		}
		f, err := os.Create(filepath.Join(tmp, p.file+".log"))
		if err != nil {
			return so, err
		}
		so.logs = append(so.logs, f)
		srv := &server{
			bin: bin, addr: addr, data: filepath.Join(tmp, p.file), workers: cfg.Workers,
			role: p.role, name: p.name, extra: extra,
			out: &serverLog{file: f}, logf: logf, killStarting: cfg.KillStarting,
		}
		so.procs = append(so.procs, srv)
		// One at a time: the first start creates the streams or tables.
		if err := srv.start(ctx, false); err != nil {
			return so, err
		}
		if p.role == "api" {
			so.bases = append(so.bases, "http://"+addr)
		}
		so.victims = append(so.victims, srv.victim())
	}
	so.victims = append(so.victims, so.engine.victim())
	return so, nil
}

// stop ends the arr processes, then the engine.
func (so *scaleOut) stop() {
	var wg sync.WaitGroup
	for _, p := range so.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	for _, f := range so.logs {
		f.Close()
	}
	if so.engine != nil {
		so.engine.stop()
	}
}

// ---- NATS ----

// natsCluster is a 3-node JetStream cluster on 127.0.0.1, started with
// arr's natstest (the nats-server it finds: replicated compare-and-set
// needs 2.9.21 or later).
type natsCluster struct{ c *natstest.Cluster }

func startNATS(_ context.Context, dir string) (*natsCluster, error) {
	c, err := natstest.Start(dir, 3)
	if err != nil {
		return nil, err
	}
	return &natsCluster{c}, nil
}

func (n *natsCluster) storeURL() string { return n.c.URL() + "?replicas=3&ackWait=3s" }

func (n *natsCluster) describe() string {
	return fmt.Sprintf("3-node NATS cluster (%s, R3) at %s", natstest.Binary(), n.storeURL())
}

// victim kills a random node; the killer restarts it before it kills
// anything else, so at most one node is down at a time.
func (n *natsCluster) victim() victim {
	down := 0
	return victim{
		kill: func() (string, int, error) {
			down = rand.N(len(n.c.Nodes))
			node := n.c.Nodes[down]
			pid := node.PID()
			if pid == 0 {
				return node.Name, 0, fmt.Errorf("%s is not running", node.Name)
			}
			n.c.Kill(down)
			return "nats " + node.Name, pid, nil
		},
		restart: func(ctx context.Context) error {
			if err := n.c.Restart(down); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			return n.c.WaitReady(ctx)
		},
	}
}

func (n *natsCluster) stop() { n.c.Close() }

// ---- PostgreSQL ----

// pgServer is a private PostgreSQL server started with arr's pgtest.
type pgServer struct{ s *pgtest.Server }

func startPostgres(_ context.Context, tmp string) (*pgServer, error) {
	// The temp dir is root's (0700): let user postgres through.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	s, err := pgtest.Start(filepath.Join(tmp, "pg"))
	if err != nil {
		return nil, err
	}
	return &pgServer{s}, nil
}

func (p *pgServer) storeURL() string { return p.s.URL + "&schema=arr" }

func (p *pgServer) describe() string { return "private PostgreSQL at " + p.storeURL() }

// victim kills the whole server (postmaster and backends, as a crash of
// the machine's database would); the restart runs crash recovery.
func (p *pgServer) victim() victim {
	return victim{
		kill: func() (string, int, error) {
			pid := p.s.PID()
			if pid == 0 {
				return "postgres", 0, errors.New("postgres is not running")
			}
			p.s.Kill()
			return "postgres", pid, nil
		},
		restart: func(context.Context) error { return p.s.Restart() },
	}
}

func (p *pgServer) stop() { p.s.Stop() }
