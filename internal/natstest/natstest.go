// Package natstest starts real nats-server processes (with JetStream) for
// tests: a single server or a JetStream cluster on 127.0.0.1, on free
// ports, with data in temporary directories, stopped when the test ends.
// Nodes of a cluster can be killed with SIGKILL and restarted on the same
// ports and data directory, for crash tests.
//
// The nats-server binary is $ARR_NATS_SERVER when set, else the one
// `go install` put in $(go env GOPATH)/bin (CI installs a pinned recent
// release there with .ci/install-go-tool.sh (see .ci/run): replicated compare-and-set needs
// nats-server 2.9.21 or later, and Debian's is 2.9.10), else nats-server
// on PATH. Available reports whether there is one.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Available reports whether there is a nats-server binary to run.
func Available() bool { return Binary() != "" }

// Binary is the nats-server binary the package runs ("" when none is
// found; see the package doc).
var Binary = sync.OnceValue(func() string {
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

// Node is one nats-server process.
type Node struct {
	Name        string
	ClientPort  int
	ClusterPort int // 0 for a single server
	Dir         string
	args        []string
	connOpts    []nats.Option // for the readiness check (a TLS server's)

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when the current process has been reaped.
	exited chan struct{}
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("natstest: %s is already running", n.Name)
		}
	}
	logf, err := os.OpenFile(filepath.Join(n.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(Binary(), n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("natstest: starting %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
	return nil
}

// PID is the pid of the node's running process, 0 when it is not running.
func (n *Node) PID() int {
	if !n.Running() {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// kill sends SIGKILL and waits until the process is reaped.
func (n *Node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// waitListening waits until the client port accepts connections.
func (n *Node) waitListening(ctx context.Context) error {
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.ClientPort), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !n.Running() {
			return fmt.Errorf("natstest: %s exited; see %s", n.Name, filepath.Join(n.Dir, "server.log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natstest: %s not listening: %w", n.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Cluster is a set of nats-server processes forming one JetStream cluster
// (or a single server).
type Cluster struct {
	Nodes []*Node
}

// URL is a client URL listing every node, "nats://h:p1,h:p2,…", the form
// the natsjs driver takes.
func (c *Cluster) URL() string {
	hosts := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", n.ClientPort)
	}
	return "nats://" + strings.Join(hosts, ",")
}

// URLs are the nodes' client URLs.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL()
	}
	return out
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) { c.Nodes[i].kill() }

// Restart starts node i again (after Kill) on the same ports and data
// directory and waits until it accepts clients. It does not wait for the
// node to catch up with the cluster; use WaitReady for that.
func (c *Cluster) Restart(i int) error {
	n := c.Nodes[i]
	n.kill()
	// The old process's ports may linger briefly.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if err := n.start(); err != nil {
			return err
		}
		err := n.waitListening(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // it exited (port in use): retry
	}
}

// WaitReady waits until every running node answers the JetStream account
// info request, which needs a meta leader in a cluster.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if err := n.waitListening(ctx); err != nil {
			return err
		}
		if err := waitJetStream(ctx, n.URL(), n.connOpts...); err != nil {
			return fmt.Errorf("natstest: %s: %w", n.Name, err)
		}
	}
	return nil
}

func waitJetStream(ctx context.Context, url string, opts ...nats.Option) error {
	var last error
	for {
		nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(time.Second)}, opts...)...)
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
		select {
		case <-ctx.Done():
			return fmt.Errorf("JetStream not ready: %v", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close kills every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.kill()
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

// requireBinary skips t when there is no nats-server binary, or fails it
// when the environment variable CI is set.
func requireBinary(t testing.TB) {
	t.Helper()
	if !Available() {
		if os.Getenv("CI") == "" {
			t.Skip("natstest: no nats-server binary (see the package doc); CI unset, skipping")
		}
		t.Fatalf("natstest: no nats-server binary (see the package doc), and CI is set: the test must run")
	}
}

// StartServer starts one JetStream server and returns it as a one-node
// Cluster; it is killed when the test ends. Without a nats-server binary
// it skips or fails the test as StartCluster does.
func StartServer(t testing.TB) *Cluster {
	return StartCluster(t, 1)
}

// StartCluster starts n JetStream servers (n == 1: a single server, not a
// cluster) named n0, n1, … in cluster "arrtest", waits until JetStream is
// ready on each, and kills them when the test ends. Without a nats-server
// binary it skips the test, or fails it when the environment variable CI
// is set.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	requireBinary(t)
	c, err := Start(t.TempDir(), n)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start is StartCluster outside tests (a chaos audit, say): the nodes keep
// their data and logs ("server.log") under dir/n0, dir/n1, …, and run
// until Close. It fails when there is no nats-server binary.
func Start(dir string, n int) (*Cluster, error) {
	if !Available() {
		return nil, errors.New("natstest: no nats-server binary (see the package doc)")
	}
	return startWith(dir, n, nil, nil)
}

// TLS is the TLS setup of a server StartTLSServer starts: the files are
// PEM.
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key.
	// Required.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require client
	// certificates signed by it (nats-server --tlsverify).
	ClientCAFile string
	// ConnectOptions connect a client to the server, for the readiness
	// check (e.g. nats.RootCAs and nats.ClientCert).
	ConnectOptions []nats.Option
}

// StartTLSServer starts one JetStream server that takes only TLS clients,
// as StartServer does otherwise.
func StartTLSServer(t testing.TB, tc TLS) *Cluster {
	t.Helper()
	requireBinary(t)
	args := []string{"--tls", "--tlscert", tc.CertFile, "--tlskey", tc.KeyFile}
	if tc.ClientCAFile != "" {
		args = append(args, "--tlsverify", "--tlscacert", tc.ClientCAFile)
	}
	c, err := startWith(t.TempDir(), 1, args, tc.ConnectOptions)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// startWith starts n nodes with extra arguments, checking their readiness
// with connOpts, trying again when a port was taken meanwhile.
func startWith(dir string, n int, extra []string, connOpts []nats.Option) (*Cluster, error) {
	var c *Cluster
	var err error
	for try := 0; try < 3; try++ { // a port taken meanwhile: try again
		if c, err = start(dir, n, extra, connOpts); err == nil {
			break
		}
	}
	return c, err
}

func start(dir string, n int, extra []string, connOpts []nats.Option) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	var routes []string
	for i := range n {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+i]))
	}
	for i := range n {
		node := &Node{Name: fmt.Sprintf("n%d", i), ClientPort: ports[i], Dir: filepath.Join(dir, fmt.Sprintf("n%d", i))}
		if err := os.MkdirAll(node.Dir, 0o755); err != nil {
			return nil, err
		}
		node.args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(node.ClientPort), "-js",
			"-sd", filepath.Join(node.Dir, "jetstream"), "--server_name", node.Name}
		node.args = append(node.args, extra...)
		node.connOpts = connOpts
		if n > 1 {
			node.ClusterPort = ports[n+i]
			node.args = append(node.args, "--cluster_name", "arrtest",
				"--cluster", "nats://127.0.0.1:"+strconv.Itoa(node.ClusterPort),
				"--routes", strings.Join(routes, ","))
		}
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		if err := node.start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
