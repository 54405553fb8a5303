package pgtest

import (
	"errors"
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

// Server is a private PostgreSQL server started with the machine's initdb
// and postgres binaries: its own data directory and port on 127.0.0.1,
// trust auth for user postgres, fsync on. Unlike the shared server on
// :5432, its user may SIGKILL it (Kill) and start it again over the same
// data (Restart), which runs PostgreSQL's crash recovery.
type Server struct {
	// URL reaches database postgres as user postgres.
	URL string

	bin  string // directory of initdb, postgres, pg_isready
	dir  string // data directory
	log  string // the server's log file
	port int
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
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

// Available reports whether PostgreSQL's server binaries are there for
// StartServer and Start.
func Available() bool { return binDir() != "" }

// StartServer starts a private server, stopped when the test ends.
// Without PostgreSQL's server binaries it skips the test, or fails it when
// the environment variable CI is set.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if !Available() {
		if os.Getenv("CI") == "" {
			t.Skip("PostgreSQL's initdb not found; CI unset, skipping")
		}
		t.Fatal("PostgreSQL's initdb not found (CI is set, so the test must run)")
	}
	// Not under t.TempDir, whose parent only root may enter.
	root, err := os.MkdirTemp("", "arr-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	s, err := Start(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Start is StartServer outside tests (a chaos audit, say): it initializes
// a server in dir (created; its data in dir/data, its log in
// dir/postgres.log) and starts it; it runs until Stop. When the process
// runs as root, the server runs as user postgres (initdb refuses root),
// so every parent of dir must let that user through.
func Start(dir string) (*Server, error) {
	s := &Server{bin: binDir(), dir: filepath.Join(dir, "data"), log: filepath.Join(dir, "postgres.log")}
	if s.bin == "" {
		return nil, errors.New("pgtest: PostgreSQL's initdb not found (/usr/lib/postgresql/*/bin or PATH)")
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, s.dir} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	out, err := s.command("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	return s, s.start()
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

// start runs the postmaster in its own process group, its output appended
// to the log, and waits until it accepts connections.
func (s *Server) start() error {
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := s.command("postgres", "-D", s.dir, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=64MB",
		"-c", "fsync=on", "-c", "synchronous_commit=on")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("pgtest: postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command(filepath.Join(s.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-q").CombinedOutput()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited before it was ready:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("pgtest: postgres not ready: %v %s\n%s", err, out, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the postmaster's pid, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

// Kill SIGKILLs the postmaster and every backend (its process group), as
// a crash of the machine's database would, and waits for them to be gone.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, time.Minute) }

// Restart starts the server again over the same data and port: after Kill
// it runs crash recovery before it accepts connections.
func (s *Server) Restart() error {
	s.Kill()
	return s.start()
}

// Stop shuts the server down at once (SIGQUIT, PostgreSQL's immediate
// shutdown; SIGKILL after 10 s).
func (s *Server) Stop() { s.signal(syscall.SIGQUIT, 10*time.Second) }

// signal sends sig to the server's process group and waits until the
// postmaster has exited (SIGKILL after wait) and no backend is left, or
// the restart would find their shared memory still attached.
func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	select {
	case <-exited:
	case <-time.After(wait):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	for i := 0; i < 500 && syscall.Kill(-pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// Log is the end of the server's log (for failure messages).
func (s *Server) Log() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// SetHBA replaces the server's pg_hba.conf with hba (its client
// authentication rules) and reloads it: rules apply to connections made
// after SetHBA returns.
func (s *Server) SetHBA(hba string) error {
	p := filepath.Join(s.dir, "pg_hba.conf")
	if err := os.WriteFile(p, []byte(hba), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	pid := s.PID()
	if pid == 0 {
		return errors.New("pgtest: the server is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return err
	}
	// The postmaster rereads the file when it handles the signal; a new
	// connection after that sees the rules. Give it a moment.
	time.Sleep(300 * time.Millisecond)
	return nil
}
