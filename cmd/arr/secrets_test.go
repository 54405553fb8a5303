package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The observations about secrets, against a real arr serve: the
// caller's credentials are not stored, nor sent on a retry, unless the
// route keeps them (then encrypted at rest); the upstream's Set-Cookie is
// not in the result; an exec command gets neither arr's secrets nor the
// caller's Authorization, and X_Remote_User does not pass for
// X-Remote-User.
func TestSecretsKept(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	var ok atomic.Bool
	var mu sync.Mutex
	seen := map[string][]http.Header{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = append(seen[r.URL.Path], r.Header.Clone())
		mu.Unlock()
		if !ok.Load() {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Header().Set("Set-Cookie", "session=upstream-session-secret")
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	cfg := writeConfig(t, `
routes:
  - path: /v1/plain
    handler: forward
    forward: {url: `+up.URL+`}
    maxAttempts: 1
  - path: /v1/authed
    handler: forward
    forward: {url: `+up.URL+`, credentials: [Authorization]}
    maxAttempts: 1
  - path: /v1/env
    handler: exec
    exec: {command: [env], passEnv: [PASSED_TEST_VAR]}
`)
	data := t.TempDir()
	p := startProc(t, "serve", freeAddr(t), data,
		[]string{"AWS_SECRET_ACCESS_KEY=aws-secret-value", "PGPASSWORD=pg-secret-value", "PASSED_TEST_VAR=passed"}, "-config", cfg)
	stopped := false
	defer func() {
		if !stopped {
			p.stop(t)
		}
	}()
	base := "http://" + p.addr

	post := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader("body"))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Cookie", "session=alice-cookie")
		req.Header.Set("X-Remote-User", "remote-user-alice")
		req.Header["X_Remote_User"] = []string{"mallory"}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 202 {
			t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
		}
		return strings.Split(strings.SplitN(string(b), `"id":"`, 2)[1], `"`)[0]
	}

	ids := map[string]string{}
	for _, path := range []string{"/v1/plain", "/v1/authed"} {
		ids[path] = post(path)
		if op := waitOp(t, base, ids[path], 20*time.Second, nil); op.Status != "failed" {
			t.Fatalf("%s: %+v, want failed", path, op)
		}
	}
	// The credentials' key rotates while arr runs: the operation sealed
	// with the old key still opens on its retry.
	bin, err := buildArr()
	if err != nil {
		t.Fatal(err)
	}
	out, err := runBin(bin, 30*time.Second, "keys", "rotate", "-credentials", "-data", data)
	if err != nil || !strings.Contains(out, "rotated: key ") {
		t.Fatalf("arr keys rotate -credentials: %v\n%s", err, out)
	}
	newKID := strings.Fields(strings.SplitN(out, "rotated: key ", 2)[1])[0]
	ok.Store(true)
	for _, path := range []string{"/v1/plain", "/v1/authed"} {
		res, err := hc.Post(base+"/v1/operations/"+ids[path]+"/retry", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		op := waitOp(t, base, ids[path], 20*time.Second, nil)
		if op.Status != "succeeded" || op.Result == nil || op.Result.Headers.Get("Set-Cookie") != "" {
			t.Fatalf("%s after retry: %+v", path, op)
		}
	}
	mu.Lock()
	for path, want := range map[string]string{"/v1/plain": "", "/v1/authed": "Bearer alice-token"} {
		if len(seen[path]) != 2 {
			t.Errorf("%s: the upstream got %d requests, want 2", path, len(seen[path]))
		}
		for i, h := range seen[path] {
			if h.Get("Authorization") != want || h.Get("Cookie") != "" || h.Get("X-Remote-User") != "remote-user-alice" || len(h["X_Remote_User"]) > 0 {
				t.Errorf("%s: request %d had %v", path, i+1, h)
			}
		}
	}
	mu.Unlock()

	out, err = runBin(bin, 30*time.Second, "keys", "list", "-credentials", "-data", data)
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, newKID) {
		t.Errorf("arr keys list -credentials after a rotation (a header and two keys, %s one of them): %v\n%s", newKID, err, out)
	}
	if b := post("/v1/authed"); waitOp(t, base, b, 20*time.Second, nil).Status != "succeeded" {
		t.Errorf("a credentials route after the rotation: %s did not succeed", b)
	}

	id := post("/v1/env")
	if op := waitOp(t, base, id, 20*time.Second, nil); op.Status != "succeeded" {
		t.Fatalf("exec: %+v", op)
	}
	_, env := resultOf(t, base, id)
	for _, bad := range []string{"aws-secret-value", "pg-secret-value", "alice-token", "alice-cookie", "mallory"} {
		if strings.Contains(env, bad) {
			t.Errorf("the command's environment holds %q:\n%s", bad, env)
		}
	}
	for _, want := range []string{"ARR_HEADER_X_REMOTE_USER=remote-user-alice\n", "PASSED_TEST_VAR=passed\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("the command's environment lacks %q:\n%s", want, env)
		}
	}

	fi, err := os.Stat(filepath.Join(data, credentialKeysFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential keys: %v, %v", fi, err)
	}
	p.stop(t)
	stopped = true
	var all []byte
	filepath.Walk(data, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			all = append(all, b...)
		}
		return nil
	})
	if !bytes.Contains(all, []byte("remote-user-alice")) { // X-Remote-User: the scan sees stored requests
		t.Fatal("the data directory scan does not find the stored requests")
	}
	for _, bad := range []string{"alice-token", "alice-cookie", "upstream-session-secret", "mallory"} {
		if bytes.Contains(all, []byte(bad)) {
			t.Errorf("the data directory holds %q in clear", bad)
		}
	}
}
