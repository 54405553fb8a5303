package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
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

// child is a process of the engine.
type child struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// launch starts cmd in its own process group, its output appended to log.
func (c *child) launch(cmd *exec.Cmd, log string) error {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "--- arrchaos: start at %s ---\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	return nil
}

func (c *child) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process group and, when wait, waits until the
// process has exited and no process of its group is left (PostgreSQL's
// backends); it returns the pid.
func (c *child) signal(sig syscall.Signal, wait time.Duration) int {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return 0
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	if wait <= 0 {
		return pid
	}
	select {
	case <-exited:
	case <-time.After(wait):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	for i := 0; i < 500 && syscall.Kill(-pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return pid
}

// logTail is the end of a log file, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// ---- NATS ----

// natsServerBinary is the nats-server to run: $ARR_NATS_SERVER, else the
// one in $(go env GOPATH)/bin (replicated compare-and-set needs 2.9.21 or
// later), else nats-server on PATH; "" when there is none.
var natsServerBinary = sync.OnceValue(func() string {
	if b := os.Getenv("ARR_NATS_SERVER"); b != "" {
		return b
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			b := filepath.Join(dir, "bin", "nats-server")
			if _, err := os.Stat(b); err == nil {
				return b
			}
		}
	}
	if b, err := exec.LookPath("nats-server"); err == nil {
		return b
	}
	return ""
})

type natsNode struct {
	name                    string
	clientPort, clusterPort int
	dir                     string
	args                    []string
	child
}

// natsCluster is a 3-node JetStream cluster on 127.0.0.1.
type natsCluster struct {
	bin   string
	nodes []*natsNode
}

func startNATS(ctx context.Context, dir string) (*natsCluster, error) {
	bin := natsServerBinary()
	if bin == "" {
		return nil, errors.New("no nats-server binary (go install github.com/nats-io/nats-server/v2@v2.12.15)")
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[3+i]))
	}
	c := &natsCluster{bin: bin}
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("nats%d", i+1), clientPort: ports[i], clusterPort: ports[3+i], dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return c, err
		}
		n.args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.clientPort), "-js",
			"-sd", filepath.Join(n.dir, "jetstream"), "--server_name", n.name,
			"--cluster_name", "arrchaos", "--cluster", "nats://127.0.0.1:" + strconv.Itoa(n.clusterPort),
			"--routes", strings.Join(routes, ",")}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.launch(exec.Command(bin, n.args...), n.log()); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.waitReady(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (n *natsNode) log() string { return filepath.Join(n.dir, "server.log") }

// waitReady waits until the node answers JetStream's account info, which
// needs a meta leader.
func (n *natsNode) waitReady(ctx context.Context) error {
	url := fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort)
	var last error
	for {
		nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
		if err == nil {
			var msg *nats.Msg
			msg, err = nc.Request("$JS.API.INFO", nil, time.Second)
			nc.Close()
			if err == nil && !strings.Contains(string(msg.Data), `"error"`) {
				return nil
			}
			if err == nil {
				err = errors.New(string(msg.Data))
			}
		}
		last = err
		if !n.running() {
			return fmt.Errorf("%s exited:\n%s", n.name, logTail(n.log()))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: JetStream not ready: %v", n.name, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *natsCluster) storeURL() string {
	hosts := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", n.clientPort)
	}
	return "nats://" + strings.Join(hosts, ",") + "?replicas=3&ackWait=3s"
}

func (c *natsCluster) describe() string {
	return fmt.Sprintf("3-node NATS cluster (%s, R3) at %s", c.bin, c.storeURL())
}

// victim kills a random node; the killer restarts it before it kills
// anything else, so at most one node is down at a time.
func (c *natsCluster) victim() victim {
	var down *natsNode
	return victim{
		kill: func() (string, int, error) {
			down = c.nodes[rand.N(len(c.nodes))]
			pid := down.signal(syscall.SIGKILL, time.Minute)
			if pid == 0 {
				return down.name, 0, fmt.Errorf("%s is not running", down.name)
			}
			return down.name, pid, nil
		},
		restart: func(ctx context.Context) error {
			n := down
			ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			for {
				if err := n.launch(exec.Command(c.bin, n.args...), n.log()); err != nil {
					return err
				}
				err := n.waitReady(ctx)
				if err == nil {
					return nil
				}
				n.signal(syscall.SIGKILL, time.Minute)
				if ctx.Err() != nil {
					return err
				}
				time.Sleep(100 * time.Millisecond) // exited (a port still busy): again
			}
		},
	}
}

func (c *natsCluster) stop() {
	for _, n := range c.nodes {
		n.signal(syscall.SIGTERM, 10*time.Second)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// ---- PostgreSQL ----

// postgresBinDir is the directory of PostgreSQL's server binaries (the
// newest /usr/lib/postgresql/*/bin, else initdb's on PATH), "" if none.
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_isready")); err == nil {
			return dirs[i]
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		for _, b := range []string{"postgres", "pg_isready"} {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), b)); err != nil {
				return ""
			}
		}
		return filepath.Dir(p)
	}
	return ""
}

// pgServer is a private PostgreSQL server: its own data directory and
// port, trust auth for user postgres, fsync on; run as user postgres when
// arrchaos runs as root (initdb refuses root).
type pgServer struct {
	bin, dir string
	port     int
	cred     *syscall.Credential
	child
}

func startPostgres(ctx context.Context, tmp string) (*pgServer, error) {
	bin := postgresBinDir()
	if bin == "" {
		return nil, errors.New("PostgreSQL's initdb not found (/usr/lib/postgresql/*/bin or PATH)")
	}
	s := &pgServer{bin: bin}
	root := filepath.Join(tmp, "pg")
	s.dir = filepath.Join(root, "data")
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The temp dir is root's (0700): let user postgres through.
		if err := os.Chmod(tmp, 0o755); err != nil {
			return nil, err
		}
		for _, p := range []string{root, s.dir} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	out, err := s.command("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	s.port = ports[0]
	return s, s.start(ctx)
}

func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

func (s *pgServer) log() string { return filepath.Join(filepath.Dir(s.dir), "postgres.log") }

// start starts the postmaster and waits until it accepts connections
// (after a kill, crash recovery runs first).
func (s *pgServer) start(ctx context.Context) error {
	cmd := s.command("postgres", "-D", s.dir, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=64MB",
		"-c", "fsync=on", "-c", "synchronous_commit=on")
	if err := s.launch(cmd, s.log()); err != nil {
		return fmt.Errorf("postgres: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-q").CombinedOutput()
		if err == nil {
			return nil
		}
		if !s.running() {
			return fmt.Errorf("postgres exited before ready:\n%s", logTail(s.log()))
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			s.signal(syscall.SIGKILL, time.Minute)
			return fmt.Errorf("postgres not ready: %v %s\n%s", err, out, logTail(s.log()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *pgServer) storeURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&schema=arr", s.port)
}

func (s *pgServer) describe() string {
	return fmt.Sprintf("private PostgreSQL (%s) at %s", s.bin, s.storeURL())
}

// victim kills the whole server (postmaster and backends, as a crash of
// the machine's database would); the restart runs crash recovery.
func (s *pgServer) victim() victim {
	return victim{
		kill: func() (string, int, error) {
			pid := s.signal(syscall.SIGKILL, time.Minute)
			if pid == 0 {
				return "postgres", 0, errors.New("postgres is not running")
			}
			return "postgres", pid, nil
		},
		restart: s.start,
	}
}

// stop: SIGQUIT is PostgreSQL's immediate shutdown.
func (s *pgServer) stop() { s.signal(syscall.SIGQUIT, 10*time.Second) }
