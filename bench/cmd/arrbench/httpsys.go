package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// newHTTPClient returns a client that keeps one connection per concurrent
// caller, as a load generator should.
func newHTTPClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// withAuth makes c send the Authorization header auth on every request.
func withAuth(c *http.Client, auth string) *http.Client {
	next := c.Transport
	c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", auth)
		return next.RoundTrip(r)
	})
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// postJSON posts body and returns the response's status and Location; the
// body is read and discarded so the connection is reused.
func postJSON(ctx context.Context, c *http.Client, url string, body []byte, hdr ...string) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), b, err
}

// child is a server process the harness started.
type child struct {
	cmd  *exec.Cmd
	addr string
	log  bytes.Buffer
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startChild runs bin with args (where "{addr}" is replaced by a free
// loopback address) and waits until GET readyPath answers 200.
func startChild(ctx context.Context, bin string, readyPath string, args ...string) (*child, error) {
	return startChildEnv(ctx, nil, bin, readyPath, args...)
}

// startChildEnv is startChild with env added to the child's environment.
func startChildEnv(ctx context.Context, env []string, bin string, readyPath string, args ...string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c := &child{addr: addr}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{addr}", addr)
	}
	c.cmd = exec.Command(bin, args...)
	if env != nil {
		c.cmd.Env = append(os.Environ(), env...)
	}
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := hc.Get("http://" + addr + readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.stop()
	return nil, fmt.Errorf("%s did not get ready: %s", path.Base(bin), c.log.String())
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 30 s, then kills.
func (c *child) stop() error {
	if c == nil || c.cmd.Process == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s", err, tail(c.log.String(), 2000))
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		return errors.New("did not stop within 30 s; killed")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// selfExe is the harness binary, re-run for the baseline servers.
func selfExe() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// fastClient is the load generator of the HTTP systems' submit and status
// requests: fasthttp's client costs a fraction of net/http's CPU, which
// matters when the client shares the machine's two cores with the server.
type fastClient struct {
	hc   *fasthttp.HostClient
	auth string // the Authorization header of every request, if not empty
}

func newFastClient(addr string, conns int) *fastClient {
	return &fastClient{hc: &fasthttp.HostClient{Addr: addr, MaxConns: conns,
		ReadTimeout: 2 * time.Minute, WriteTimeout: time.Minute, MaxIdleConnDuration: time.Minute}}
}

// post sends body to path and returns the status and the Location.
func (f *fastClient) post(path string, body []byte) (int, string, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + f.hc.Addr + path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if f.auth != "" {
		req.Header.Set("Authorization", f.auth)
	}
	if err := f.hc.Do(req, resp); err != nil {
		return 0, "", nil, err
	}
	var b []byte
	if resp.StatusCode() != http.StatusAccepted {
		b = append(b, resp.Body()...)
	}
	return resp.StatusCode(), string(resp.Header.Peek("Location")), b, nil
}

// get GETs the absolute url (not following redirects) and fails on an
// answer of 400 or more.
func (f *fastClient) get(url string) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if f.auth != "" {
		req.Header.Set("Authorization", f.auth)
	}
	if err := f.hc.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() >= 400 {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode())
	}
	return nil
}
