package main

import (
	"bytes"
	"os"
	"path/filepath"
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
