package command

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/worker"
)

// envOf runs `env` for a request with header hdr and returns its lines.
func envOf(t *testing.T, cfg Config, hdr http.Header) []string {
	t.Helper()
	cfg.Command = []string{"env"}
	h := newHandler(t, cfg)
	res, err := h.Process(context.Background(), &worker.Task{ID: "op-1", Route: "r", Attempt: 1,
		Request: &operation.Request{Method: "POST", Path: "/", Header: hdr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(readAll(t, res)), "\n")
}

// The command gets PATH, HOME, LANG, TZ, what PassEnv names and Env, and
// nothing else of arr's environment: not its secrets.
func TestMinimalEnvironment(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	t.Setenv("PGPASSWORD", "pg-secret")
	t.Setenv("HOME", "/home/arr")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("TZ", "Europe/Paris")
	t.Setenv("ARR_PASSED", "passed on")
	t.Setenv("ARR_HEADER_LEAKED", "from arr's own environment")
	got := envOf(t, Config{PassEnv: []string{"ARR_PASSED", "UNSET_VARIABLE"}, Env: map[string]string{"EXTRA": "x"}}, nil)
	for _, want := range []string{"HOME=/home/arr", "LANG=C.UTF-8", "TZ=Europe/Paris", "ARR_PASSED=passed on", "EXTRA=x"} {
		if !slices.Contains(got, want) {
			t.Errorf("environment lacks %q: %q", want, got)
		}
	}
	if !slices.ContainsFunc(got, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		t.Errorf("environment lacks PATH: %q", got)
	}
	for _, kv := range got {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.Contains(kv, "secret"), name == "UNSET_VARIABLE", strings.HasPrefix(name, "ARR_HEADER_"):
			t.Errorf("the command got %q", kv)
		case !slices.Contains([]string{"PATH", "HOME", "LANG", "TZ", "ARR_PASSED", "EXTRA", "PWD", "SHLVL", "_"}, name) &&
			!strings.HasPrefix(name, "ARR_"):
			t.Errorf("the command got %q, not asked for", kv)
		}
	}
	for _, bad := range []string{"A=B", "", "ARR_OPERATION_ID", "ARR_HEADER_X"} {
		if _, err := New(Config{Command: []string{"true"}, PassEnv: []string{bad}}); err == nil {
			t.Errorf("PassEnv %q accepted", bad)
		}
	}
}

// A header name with anything but letters, digits and '-' is left out,
// so that X_Remote_User cannot pass for X-Remote-User; the values of a
// header keep their order, and two spellings of one name join in a fixed
// order.
func TestHeaderVariables(t *testing.T) {
	for range 20 { // map order varies from run to run
		got := envOf(t, Config{}, http.Header{
			"X-Remote-User": {"alice"},
			"X_Remote_User": {"mallory"},
			"X.Remote.User": {"eve"},
			"X-Multi":       {"3", "1", "2"},
			"x-multi":       {"0"},
		})
		var hdrs []string
		for _, kv := range got {
			if strings.HasPrefix(kv, "ARR_HEADER_") {
				hdrs = append(hdrs, kv)
			}
		}
		slices.Sort(hdrs)
		if want := []string{"ARR_HEADER_X_MULTI=3, 1, 2, 0", "ARR_HEADER_X_REMOTE_USER=alice"}; !slices.Equal(hdrs, want) {
			t.Fatalf("header variables %q, want %q", hdrs, want)
		}
	}
}
