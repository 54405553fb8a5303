package pgtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a private PostgreSQL server that a test started with the
// machine's initdb and postgres binaries: its own data directory and port
// on 127.0.0.1, trust auth for user postgres, fsync on. Unlike the shared
// server on :5432, a test may SIGKILL it (Kill) and start it again over
// the same data (Restart), which runs PostgreSQL's crash recovery.
type Server struct {
	// URL reaches database postgres as user postgres.
	URL string

	t       testing.TB
	bin     string // directory of initdb, postgres, pg_isready
	dir     string // data directory
	port    int
	cred    *syscall.Credential
	mu      sync.Mutex
	cmd     *exec.Cmd
	log     *bytes.Buffer
	stopped bool
}

// binDir finds the directory of PostgreSQL's server binaries.
func binDir() string {
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

// StartServer initializes and starts a private server, stopped when the
// test ends. Without PostgreSQL's server binaries it skips the test, or
// fails it when the environment variable CI is set.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	if bin == "" {
		if os.Getenv("CI") == "" {
			t.Skip("PostgreSQL's initdb not found; CI unset, skipping")
		}
		t.Fatal("PostgreSQL's initdb not found (CI is set, so the test must run)")
	}
	s := &Server{t: t, bin: bin}
	// initdb refuses to run as root: run the server as user postgres.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	root, err := os.MkdirTemp("", "arr-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	s.dir = filepath.Join(root, "data")
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		for _, p := range []string{root, s.dir} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := s.command("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.port = freePort(t)
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

// start runs the postmaster in its own process group and waits until it
// accepts connections.
func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &bytes.Buffer{}
	s.cmd = s.command("postgres", "-D", s.dir, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=64MB",
		"-c", "fsync=on", "-c", "synchronous_commit=on")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("postgres: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command(filepath.Join(s.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-q").CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("private postgres not ready: %v %s\n%s", err, out, s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill SIGKILLs the postmaster and every backend (its process group), as
// a crash of the machine's database would, and waits for them to be gone.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
	// Backends are in the postmaster's group; wait until none is left, or
	// the restart finds their shared memory still attached.
	for i := 0; i < 500 && syscall.Kill(-s.cmd.Process.Pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd = nil
}

// Restart starts the server again over the same data and port: after Kill
// it runs crash recovery before it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Log is the server's output so far (for failure messages).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT) // immediate shutdown
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
