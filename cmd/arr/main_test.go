package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// WEBSITE_HOSTNAME, as Azure App Service sets it, becomes the base of
// absolute links the way the seed builds them.
func TestPublicURLFromEnv(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "",
		"myapp.azurewebsites.net":     "https://myapp.azurewebsites.net",
		"localhost:7071":              "http://localhost:7071",
		"127.0.0.1:8080":              "http://127.0.0.1:8080",
		"http://proxy.internal:9000":  "http://proxy.internal:9000",
		"https://arr.example.com/api": "https://arr.example.com/api",
	} {
		if got := publicURLFromEnv(in); got != want {
			t.Errorf("publicURLFromEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("routes:\n  - path: /v1/x\n    handler: exec\n    timeout: 10x\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "extra"}, "takes no arguments"},
		{[]string{"serve", "-log-level", "loud"}, "-log-level"},
		{[]string{"serve", "-no-such-flag"}, "flag provided but not defined"},
		{[]string{"serve", "-data", dir, "-config", bad}, "bad.yaml:4: routes[0].timeout: \"10x\" is not a duration"},
		{[]string{"serve", "-data", dir, "-config", bad}, "bad.yaml:2: routes[0].exec.command: is required"},
		{[]string{"serve", "-data", dir, "-config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"serve", "-data", dir, "-forward", "ftp://x"}, "-forward"},
		{[]string{"serve", "-data", dir, "-admin-addr", "127.0.0.1:0", "-debug-addr", "127.0.0.1:0"}, "give only -admin-addr"},
		{[]string{"serve", "-data", dir, "-trusted-proxies", "10.0.0.0/33"}, "-trusted-proxies"},
		{[]string{"serve", "-data", dir, "-allowed-hosts", "ok.example,bad host"}, "AllowedHosts"},
		{[]string{"serve", "-data", dir, "-allowed-origins", "evil.example/path"}, "AllowedOrigins"},
		{[]string{"api", "-data", dir}, "needs a store they share"},
		{[]string{"worker", "-data", dir, "-store", "embedded:" + dir}, "needs a store they share"},
		{[]string{"api", "-data", dir, "-store", "nats://127.0.0.1:1"}, "results must be too"},
		{[]string{"serve", "-data", dir, "-store", "postgres://127.0.0.1:1/x", "-results", "embedded:" + dir}, "results must be too"},
	} {
		var out, errb bytes.Buffer
		err := run(c.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), c.want) {
			t.Errorf("run(%q) = %v (stderr %q), want an error mentioning %q", c.args, err, errb.String(), c.want)
		}
	}
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "arr ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

// Two arr processes on one data directory would share its embedded store,
// result files and command records; the second is refused with a clear
// error, and the first keeps serving.
func TestDataDirLocked(t *testing.T) {
	data := t.TempDir()
	first := startArr(t, freeAddr(t), data)
	defer first.stop(t)
	bin, err := buildArr()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "-addr", freeAddr(t), "-data", data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another arr process (pid "+strconv.Itoa(first.cmd.Process.Pid)+")") {
		t.Fatalf("second arr on the same data dir: %v\n%s", err, out)
	}
	res, err := http.Get("http://" + first.addr + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first arr after the refused second: %v %v", res, err)
	}
	res.Body.Close()
}
