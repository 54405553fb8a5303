// Package s3test gives tests a real S3 server: versitygw
// (github.com/versity/versitygw) with its posix backend on a temporary
// directory, started for the test and stopped when it ends, or a server
// already running elsewhere.
//
//	func TestSomething(t *testing.T) {
//		url, env := s3test.Start(t) // skips when no server can be had (see below)
//		e, err := engine.Open(ctx, url) // credentials come from the env Start set
//		cmd := exec.Command(arrBinary, "serve", "--results", url)
//		cmd.Env = append(os.Environ(), env...) // also set in os.Environ() already
//	}
//
// # Which server
//
// When ARR_TEST_S3_URL is set, it is used as it is: an s3result URL such as
// s3://bucket?endpoint=http://127.0.0.1:7070&use_path_style=true&region=us-east-1,
// whose bucket exists, with the credentials in the AWS_* environment of the
// test (returned in env, and left as they are). Nothing is started or
// created, nor cleaned up.
//
// Otherwise Start runs the versitygw binary found on PATH, in $GOBIN, or in
// the bin directory of $(go env GOPATH) (install it with
// .ci/install-go-tool.sh (see .ci/run)). It listens on 127.0.0.1 on a free port, with a fresh
// random root access key and secret, stores into a t.TempDir(), and has one
// empty bucket, which the returned URL names.
//
// When neither is available the test is skipped, unless the environment
// variable CI is set: then it fails, so that CI never silently skips the S3
// tests.
//
// # Environment
//
// Start sets, with t.Setenv, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_REGION, and points AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE
// at an empty file (so the developer's ~/.aws settings do not leak in) and
// clears AWS_SESSION_TOKEN and AWS_PROFILE; it returns the same settings
// as env ("NAME=value" strings) for child processes. Because of t.Setenv
// the test calling Start must not be parallel (its subtests may be).
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EnvURL names the environment variable of an already running server's URL.
const EnvURL = "ARR_TEST_S3_URL"

// Binary is the name of the versitygw executable Start looks for.
const Binary = "versitygw"

// Region is the region of the servers Start runs.
const Region = "us-east-1"

// Server is an S3 server for a test.
type Server struct {
	// URL is the s3result URL of the test's bucket.
	URL string
	// Endpoint is the server's base URL, e.g. http://127.0.0.1:41234 (empty
	// for an ARR_TEST_S3_URL without endpoint=).
	Endpoint string
	// Bucket is the bucket's name.
	Bucket string
	// Env holds the AWS_* settings ("NAME=value") that reach the server.
	Env []string
	// External reports that the server came from ARR_TEST_S3_URL.
	External bool
}

// Start is StartServer returning the URL and the environment only.
func Start(t testing.TB) (url string, env []string) {
	t.Helper()
	s := StartServer(t)
	return s.URL, s.Env
}

// StartServer returns the S3 server of the test: the one ARR_TEST_S3_URL
// names, or a versitygw it starts and stops at the end of the test. It
// skips or fails the test when neither is available (see the package
// documentation) and sets the AWS_* environment with t.Setenv.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return external(t, u)
	}
	bin, err := FindBinary()
	if err != nil {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatalf("s3test: %v; CI is set, so the S3 tests must run: install it with .ci/install-go-tool.sh (see .ci/run) or set %s", err, EnvURL)
		}
		t.Skipf("s3test: %v; install it with .ci/install-go-tool.sh (see .ci/run) (or set %s) to run this test", err, EnvURL)
	}
	return launch(t, bin)
}

func external(t testing.TB, raw string) *Server {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		t.Fatalf("s3test: %s=%q is not an s3://bucket?… URL", EnvURL, raw)
	}
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return &Server{URL: raw, Endpoint: u.Query().Get("endpoint"), Bucket: u.Host, Env: env, External: true}
}

// FindBinary returns the path of the versitygw executable: on PATH, else
// in $GOBIN, else in the bin directory of each $(go env GOPATH) entry
// (default $HOME/go/bin).
func FindBinary() (string, error) {
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, p := range filepath.SplitList(gopath) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH nor in %s", Binary, strings.Join(dirs, ", "))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for the process's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // keep the first MiB
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func launch(t testing.TB, bin string) *Server {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	emptyConfig := filepath.Join(dir, "aws-config")
	if err := os.WriteFile(emptyConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	access, secret := "ARRTEST"+strings.ToUpper(randomHex(6)), randomHex(20)

	var (
		cmd      *exec.Cmd
		endpoint string
		out      = &syncBuffer{}
		lastErr  error
	)
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("s3test: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", port)
		cmd = exec.Command(bin, "--port", addr, "--region", Region, "--quiet", "posix", root)
		// The root credentials go through the environment, not the command
		// line, where other users could read them.
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+access, "ROOT_SECRET_ACCESS_KEY="+secret)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("s3test: starting %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		endpoint = "http://" + addr
		if lastErr = waitReady(endpoint, exited); lastErr == nil {
			t.Cleanup(func() { stop(t, cmd, exited, out) })
			break
		}
		stop(nil, cmd, exited, out)
		cmd = nil
	}
	if cmd == nil {
		t.Fatalf("s3test: %s did not start: %v\n%s", bin, lastErr, out.String())
	}

	bucket := "arr-test-" + randomHex(4)
	client := s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("s3test: creating bucket %s: %v\n%s", bucket, err, out.String())
	}

	env := []string{
		"AWS_ACCESS_KEY_ID=" + access,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_REGION=" + Region,
		"AWS_CONFIG_FILE=" + emptyConfig,
		"AWS_SHARED_CREDENTIALS_FILE=" + emptyConfig,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // restored at the end of the test
		if v == "" {
			_ = os.Unsetenv(k)
		}
	}
	q := url.Values{}
	q.Set("endpoint", endpoint)
	q.Set("use_path_style", "true")
	q.Set("region", Region)
	return &Server{
		URL:      "s3://" + bucket + "?" + q.Encode(),
		Endpoint: endpoint,
		Bucket:   bucket,
		Env:      env,
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// waitReady waits until the server at endpoint answers HTTP (any status:
// an unauthenticated request is refused with 403), or it exits.
func waitReady(endpoint string, exited <-chan error) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for delay := 10 * time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 250*time.Millisecond) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		res, err := client.Get(endpoint + "/")
		if err == nil {
			res.Body.Close()
			if res.Header.Get("Server") == "VERSITYGW" || res.StatusCode < 500 {
				return nil
			}
		}
		time.Sleep(delay)
	}
	return errors.New("not answering after 30s")
}

// stop interrupts the process, kills it if it lingers, and logs its output
// if the test failed.
func stop(t testing.TB, cmd *exec.Cmd, exited <-chan error, out *syncBuffer) {
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	if t != nil && t.Failed() {
		if s := out.String(); s != "" {
			t.Logf("s3test: versitygw output:\n%s", s)
		}
	}
}
