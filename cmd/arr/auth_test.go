package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrhq/arr/auth"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:1": true, "localhost:8080": true, "LOCALHOST:1": true,
		"[::1]:8080": true, "[::ffff:127.0.0.1]:80": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "192.168.1.10:8080": false,
		"10.0.0.1:80": false, "example.com:80": false, "localhost.evil.com:80": false, "": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// With no authentication, arr serve and arr api refuse every address
// beyond loopback, saying what to configure; the check comes before any
// store is opened.
func TestRefuseUnsafeExposure(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, []byte("alice:alice-key-0123456789\n"), 0o600)
	for _, args := range [][]string{
		{"serve", "-data", dir, "-addr", "0.0.0.0:0"},
		{"serve", "-data", dir, "-addr", ":0"},
		{"serve", "-data", dir, "-addr", "[::]:0"},
		{"serve", "-data", dir, "-addr", "192.168.1.10:8080"},
		{"api", "-data", dir, "-addr", ":0", "-store", "nats://127.0.0.1:1", "-results", "file:" + dir},
		{"serve", "-data", dir, "-addr", ":0", "-trusted-proxies", "10.0.0.0/8"}, // proxies alone authenticate no one
	} {
		var out bytes.Buffer
		err := run(args, &out, &out)
		if err == nil {
			t.Errorf("%q started", args)
			continue
		}
		for _, want := range []string{"refusing to listen", "-api-keys FILE", "-jwt-issuer", "-auth-proxy-header", "-insecure-no-auth"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: %v\nwant it to mention %q", args, err, want)
			}
		}
	}
	// A proxy header without trusted proxies is refused too.
	var out bytes.Buffer
	err := run([]string{"serve", "-data", dir, "-addr", ":0", "-auth-proxy-header", "X-Remote-User"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "-trusted-proxies") {
		t.Errorf("a proxy header with no trusted proxies: %v", err)
	}
	// Bad key files name the line and not the key.
	os.WriteFile(keys, []byte("alice:alice-key-0123456789\nbob alice-key-0123456789\n"), 0o600)
	err = run([]string{"serve", "-data", dir, "-api-keys", keys}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), keys+":2:") || strings.Contains(err.Error(), "alice-key") {
		t.Errorf("a bad key file: %v", err)
	}
}

// The real binary: on loopback with no flags it serves anonymously (the
// quick start); with -insecure-no-auth it listens on every interface;
// with ARR_API_KEYS it answers 401 without a key and serves with one.
func TestServeAuthBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	anon := startArr(t, freeAddr(t), t.TempDir())
	res, err := http.Get("http://" + anon.addr + "/v1/operations")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("anonymous on loopback: %v %v", res, err)
	}
	res.Body.Close()
	anon.stop(t)

	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	open := startArr(t, addr, t.TempDir(), "-addr", "0.0.0.0:"+port, "-insecure-no-auth")
	res, err = http.Get("http://" + addr + "/v1/operations")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("-insecure-no-auth: %v %v", res, err)
	}
	res.Body.Close()
	open.stop(t)

	keys := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(keys, []byte("# test keys\nalice:alice-key-0123456789 tenant=acme\nroot:sha256:"+strings.TrimPrefix(auth.HashKey("root-key-0123456789"), "sha256:")+" role=admin\n"), 0o600)
	p := startProc(t, "serve", freeAddr(t), t.TempDir(), []string{"ARR_API_KEYS=" + keys})
	defer p.stop(t)
	get := func(path, key string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if r := get("/v1/operations", ""); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="arr"` {
		t.Errorf("no key: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := get("/v1/operations", "nope-nope-nope-nope"); r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a wrong key: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	for _, k := range []string{"alice-key-0123456789", "root-key-0123456789"} {
		if r := get("/v1/operations", k); r.StatusCode != 200 {
			t.Errorf("key %s…: %d", k[:4], r.StatusCode)
		}
	}
	if r := get("/healthz", ""); r.StatusCode != 200 {
		t.Errorf("/healthz: %d", r.StatusCode)
	}
	if strings.Contains(p.log.String(), "alice-key") || strings.Contains(p.log.String(), "nope-nope") {
		t.Errorf("the log holds a key:\n%s", p.log)
	}
}
