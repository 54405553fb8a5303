package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/arrhq/arr/config"
)

func TestSecretsKeys(t *testing.T) {
	f := mustParse(t, `
routes:
  - path: /v1/fwd
    handler: forward
    dropHeaders: [X-Debug]
    forward:
      url: http://127.0.0.1:9000
      credentials: [Authorization, X-Api-Key]
      keepSetCookie: true
  - path: /v1/run
    handler: exec
    exec:
      command: [env]
      passEnv: [TMPDIR]
`, nil)
	fw, x := f.Routes[0], f.Routes[1].Exec
	if !slices.Equal(fw.DropHeaders, []string{"X-Debug"}) || !slices.Equal(fw.Forward.Credentials, []string{"Authorization", "X-Api-Key"}) ||
		!fw.Forward.KeepSetCookie || !slices.Equal(x.PassEnv, []string{"TMPDIR"}) {
		t.Errorf("parsed %+v %+v %+v", fw, fw.Forward, x)
	}
	for src, want := range map[string]string{
		"routes:\n  - path: /a\n    handler: echo\n    dropHeaders: [X_Debug]\n":                                          "routes[0].dropHeaders[0]",
		"routes:\n  - path: /a\n    handler: forward\n    forward: {url: http://h, credentials: [Proxy-Authorization]}\n": "routes[0].forward.credentials[0]",
		"routes:\n  - path: /a\n    handler: forward\n    forward: {url: http://h, credentials: [a, 'b c']}\n":            "routes[0].forward.credentials[1]",
		"routes:\n  - path: /a\n    handler: exec\n    exec: {command: [x], passEnv: [A=B]}\n":                            "routes[0].exec.passEnv[0]",
		"routes:\n  - path: /a\n    handler: exec\n    exec: {command: [x], passEnv: [ARR_ROUTE]}\n":                      "routes[0].exec.passEnv[0]",
	} {
		_, err := config.Parse("arr.yaml", []byte(src), nil)
		if err == nil || !strings.Contains(err.Error(), want+":") {
			t.Errorf("%s: error %v, want one about %s", src, err, want)
		}
	}
}
