package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/config"
)

// errs returns the *config.Errors in err.
func errs(t *testing.T, err error) []*config.Error {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]*config.Error, 0, len(list))
	for _, e := range list {
		var ce *config.Error
		if !errors.As(e, &ce) {
			t.Fatalf("%T %v is not a *config.Error", e, e)
		}
		out = append(out, ce)
	}
	return out
}

func mustParse(t testing.TB, src string, knownGo []string) *config.File {
	t.Helper()
	f, err := config.Parse("arr.yaml", []byte(src), knownGo)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return f
}

func TestExampleFile(t *testing.T) {
	f, err := config.Load("../examples/arr.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Server
	if s.Addr != "127.0.0.1:8080" || s.Data != "arr-data" || s.Workers == nil || *s.Workers != 16 ||
		s.MaxBody != 1<<20 || s.MaxQueue != 1_000_000 || s.ResultURLTTL.Std() != 10*time.Minute ||
		s.SyncWait.Std() != 127*time.Second || s.MaxWait.Std() != time.Minute ||
		s.ShutdownGrace.Std() != 30*time.Second || s.Lease.Std() != 30*time.Second ||
		s.SeedRoutes == nil || !*s.SeedRoutes || s.Forward != "" || s.PublicURL != "" {
		t.Errorf("server = %+v", s)
	}

	type want struct {
		name, pattern, handler string
		mediaTypes             []string
		schema                 bool
		eff                    config.RouteSettings
	}
	d := func(s string) config.Duration {
		v, err := config.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	base := config.RouteSettings{Timeout: d("5m"), MaxAttempts: 3, Backoff: d("1s"), MaxBackoff: d("5m"),
		ResultTTL: d("10m"), Retention: d("7d"), Tombstone: d("30d")}
	with := func(fn func(*config.RouteSettings)) config.RouteSettings {
		s := base
		fn(&s)
		return s
	}
	wants := []want{
		{"customers", "POST /v1/customers", "echo", []string{"application/json"}, true, base},
		{"reports", "POST /v1/reports/{kind}", "forward", []string{"application/json", "application/x-ndjson"}, false,
			with(func(s *config.RouteSettings) { s.Timeout, s.MaxAttempts, s.Concurrency = d("2m"), 5, 4 })},
		{"post-v1-shout", "POST /v1/shout", "exec", []string{"text/plain"}, false,
			with(func(s *config.RouteSettings) { s.Timeout, s.MaxBody, s.Retention = d("30s"), 64<<10, d("24h") })},
		{"orders", "POST /v1/orders", "echo", []string{"application/json"}, true, base},
	}
	if len(f.Routes) != len(wants) {
		t.Fatalf("%d routes, want %d", len(f.Routes), len(wants))
	}
	for i, w := range wants {
		r := &f.Routes[i]
		if r.Name != w.name || r.Pattern() != w.pattern || r.Handler != w.handler ||
			!slices.Equal(r.MediaTypes, w.mediaTypes) || r.HasSchema() != w.schema || r.Line == 0 {
			t.Errorf("routes[%d] = %s %q %s %v schema=%v line %d, want %s %q %s %v schema=%v", i,
				r.Name, r.Pattern(), r.Handler, r.MediaTypes, r.HasSchema(), r.Line,
				w.name, w.pattern, w.handler, w.mediaTypes, w.schema)
		}
		if got := f.Effective(r); got != w.eff {
			t.Errorf("Effective(%s) = %+v, want %+v", r.Name, got, w.eff)
		}
	}
	if got := f.Routes[0].SchemaFile; got != filepath.Join("..", "examples", "customer.schema.json") {
		t.Errorf("schemaFile = %q, want it relative to the config's directory", got)
	}
	if fw := f.Routes[1].Forward; fw == nil || fw.URL != "http://127.0.0.1:9000" ||
		fw.Header["Authorization"] != "Bearer change-me" {
		t.Errorf("forward = %+v", fw)
	}
	x := f.Routes[2].Exec
	if x == nil || !slices.Equal(x.Command, []string{"sh", "-c", "tr a-z A-Z"}) ||
		x.ContentType != "text/plain; charset=utf-8" || x.KillGrace.Std() != 5*time.Second ||
		!slices.Equal(x.PermanentExitCodes, []int{2}) || x.Env["LC_ALL"] != "C" {
		t.Errorf("exec = %+v", x)
	}
	orders := &f.Routes[3]
	if err := orders.Validate([]byte(`{"sku": "ABC-1", "quantity": 2}`)); err != nil {
		t.Errorf("orders: valid body refused: %v", err)
	}
	if err := orders.Validate([]byte(`{"sku": "abc", "quantity": 0}`)); err == nil {
		t.Error("orders: invalid body accepted")
	}
	if err := f.Routes[1].Validate([]byte("not json")); err != nil {
		t.Errorf("a route without a schema validated: %v", err)
	}
}

// TestCustomerSchemaIsTheSeedRule checks that examples/customer.schema.json
// gives arr.ValidateCustomer's verdict.
func TestCustomerSchemaIsTheSeedRule(t *testing.T) {
	f := mustParse(t, `
routes:
  - path: /v1/customers
    handler: echo
    schemaFile: ../examples/customer.schema.json
`, nil)
	r := &f.Routes[0]
	bodies := []string{
		`{"id": "1", "customername": "Contoso"}`,
		`{"id": "1", "customername": "Contoso", "extra": [1, 2], "more": {"a": null}}`,
		`{"id": " ", "customername": "é"}`,
		`{"customername": "Contoso"}`,
		`{"id": "1"}`,
		`{}`,
		`{"id": "", "customername": "Contoso"}`,
		`{"id": "1", "customername": ""}`,
		`{"id": 1, "customername": "Contoso"}`,
		`{"id": "1", "customername": 42}`,
		`{"id": "1", "customername": null}`,
		`{"id": true, "customername": "x"}`,
		`{"id": {"v": "1"}, "customername": "x"}`,
		`[{"id": "1", "customername": "Contoso"}]`,
		`"id"`,
		`42`,
		`null`,
		`not json`,
		`{"id": "1", "customername": "Contoso"`,
		`{"id": "1", "customername": "Contoso"} trailing`,
		``,
	}
	for _, b := range bodies {
		seed := arr.ValidateCustomer([]byte(b))
		got := r.Validate([]byte(b))
		if (seed == nil) != (got == nil) {
			t.Errorf("%s: seed says %v, schema says %v", b, seed, got)
		}
		if got != nil {
			var se *config.SchemaError
			if !errors.As(got, &se) || len(se.Issues) == 0 {
				t.Errorf("%s: %T %v is not a *SchemaError with issues", b, got, got)
			}
		}
	}
}

func TestSchemaError(t *testing.T) {
	f := mustParse(t, `
routes:
  - path: /v1/customers
    handler: echo
    schemaFile: ../examples/customer.schema.json
`, nil)
	r := &f.Routes[0]
	err := r.Validate([]byte(`{"id": 7, "customername": ""}`))
	var se *config.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("%T %v", err, err)
	}
	if want := "/customername: must not be empty; /id: must be a string, not a number"; se.Error() != want {
		t.Errorf("Error() = %q, want %q", se.Error(), want)
	}
	wantExt := map[string]any{"errors": []map[string]any{
		{"pointer": "/customername", "detail": "must not be empty"},
		{"pointer": "/id", "detail": "must be a string, not a number"},
	}}
	if got := se.ProblemExtensions(); !reflect.DeepEqual(got, wantExt) {
		t.Errorf("ProblemExtensions() = %#v, want %#v", got, wantExt)
	}

	err = r.Validate([]byte(`{"customername": "x"}`))
	if err == nil || err.Error() != "/id: is required" {
		t.Errorf("missing id: %v", err)
	}

	err = r.Validate([]byte(`{"id": `))
	if !errors.As(err, &se) || len(se.Issues) != 1 || se.Issues[0].Pointer != "" ||
		!strings.Contains(se.Issues[0].Message, "not JSON") {
		t.Errorf("not JSON: %#v", err)
	}
	ext := se.ProblemExtensions()["errors"].([]map[string]any)
	if len(ext) != 1 || ext[0]["pointer"] != "" || !strings.Contains(ext[0]["detail"].(string), "not JSON") {
		t.Errorf("not JSON: extensions %v", ext)
	}
}

func TestErrorFormat(t *testing.T) {
	src := `# line 1
server:
  addr: :8080
defaults:
  timeout: 1m
routes:
  - path: /v1/a
    handler: echo
  - path: /v1/b
    handler: echo
    maxAttempts: 2
    timeout: 10x
`
	_, err := config.Parse("arr.yaml", []byte(src), nil)
	want := `arr.yaml:12: routes[1].timeout: "10x" is not a duration (use e.g. 30s, 10m, 24h, 7d)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.json"), []byte(`{"type": "object"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	route := "routes:\n  - path: /x\n    handler: echo\n" // lines 1-3
	for _, c := range []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		{"unknown key", route + "    timout: 5s\n", 4, "routes[0]", `unknown key "timout" (did you mean "timeout"?)`},
		{"callback target", route + "    callbacks:\n      targets:\n        - url: ftp://h.example/x\n", 6, "routes[0].callbacks.targets[0].url", "invalid callback URL"},
		{"route callback allow", route + "    callbacks:\n      allow: [\"*.\"]\n", 5, "routes[0].callbacks.allow", `callback allow-list entry "*.": empty host`},
		{"server callback allow", "server:\n  callbacks:\n    allow: [\"http://x\"]\n", 3, "server.callbacks.allow", "give HOST[:PORT], not a URL"},
		{"callback backoff order", "server:\n  callbacks:\n    minBackoff: 1h\n    maxBackoff: 1m\n", 3, "server.callbacks.minBackoff", "is more than maxBackoff"},
		{"callback max age", "server:\n  callbacks:\n    maxAge: 0s\n", 3, "server.callbacks.maxAge", "must be more than 0"},
		{"unknown top key", "rotues: []\n", 1, "", `unknown key "rotues" (did you mean "routes"?)`},
		{"unknown key listed", "routes:\n  - path: /x\n    handler: exec\n    exec:\n      command: [a]\n      cmd: [a]\n", 6, "routes[0].exec", `unknown key "cmd" (known keys: command, dir, env`},
		{"bad duration", route + "    timeout: 10x\n", 4, "routes[0].timeout", `"10x" is not a duration (use e.g. 30s, 10m, 24h, 7d)`},
		{"bare number duration", route + "    retention: 30\n", 4, "routes[0].retention", `"30" is not a duration`},
		{"bad days", "defaults:\n  retention: 1.5d\n", 2, "defaults.retention", `"1.5d" is not a duration`},
		{"zero duration", "defaults:\n  backoff: 0s\n", 2, "defaults.backoff", "must be more than 0"},
		{"negative duration", route + "    timeout: -5s\n", 4, "routes[0].timeout", "must be more than 0"},
		{"empty value", route + "    timeout:\n", 4, "routes[0].timeout", "has no value"},
		{"bad method", "routes:\n  - method: GE T\n    path: /x\n    handler: echo\n", 2, "routes[0].method", `"GE T" is not an HTTP method`},
		{"lower-case method", "routes:\n  - method: post\n    path: /x\n    handler: echo\n", 2, "routes[0].method", `methods are case-sensitive; write POST`},
		{"reserved path", "routes:\n  - path: /v1/operations/{id}/x\n    handler: echo\n", 2, "routes[0].path", "a path of arr's own api"},
		{"reserved path any case", "routes:\n  - path: /API/requeststatus/{id}\n    handler: echo\n", 2, "routes[0].path", "under /api/RequestStatus/"},
		{"reserved exact", "routes:\n  - path: /healthz\n    handler: echo\n", 2, "routes[0].path", "under /healthz"},
		{"relative path", "routes:\n  - path: v1/x\n    handler: echo\n", 2, "routes[0].path", `"v1/x" must start with /`},
		{"bad pattern", "routes:\n  - path: /x/{id\n    handler: echo\n", 2, "routes[0].path", "is not a valid path pattern: at offset 3: bad wildcard segment"},
		{"path with query", "routes:\n  - path: /x?a=1\n    handler: echo\n", 2, "routes[0].path", "no spaces, query or fragment"},
		{"no path", "routes:\n  - handler: echo\n", 2, "routes[0].path", "is required"},
		{"duplicate route", route + "  - path: /x\n    handler: echo\n    name: other\n", 4, "routes[1].path", "duplicate route: POST /x is also routes[0] (line 2)"},
		{"duplicate wildcard route", "routes:\n  - path: /x/{a}\n    handler: echo\n  - path: /x/{b}\n    handler: echo\n", 4, "routes[1].path", "duplicate route"},
		{"conflicting routes", "routes:\n  - path: /a/{x}/b\n    handler: echo\n  - path: /a/c/{y}\n    handler: echo\n", 4, "routes[1].path", `conflicts with routes[0] (line 2), POST /a/{x}/b: both match some paths, like "/a/c/b"`},
		{"seed route", "routes:\n  - path: /v1/echo\n    handler: echo\n", 2, "routes[0].path", "conflicts with the seed's route POST /v1/echo"},
		{"seed route any case", "routes:\n  - path: /api/asyncprocessingworkacceptor\n    handler: echo\n", 2, "routes[0].path", "matches any case"},
		{"duplicate name", route + "  - name: post-x\n    path: /y\n    handler: echo\n", 4, "routes[1].name", `"post-x" is already the name of routes[0] (line 2)`},
		{"duplicate derived name", "routes:\n  - path: /a-b\n    handler: echo\n  - path: /a/b\n    handler: echo\n", 4, "routes[1].name", "derived from the method and path"},
		{"bad name", "routes:\n  - name: Reports\n    path: /x\n    handler: echo\n", 2, "routes[0].name", `"Reports" is not a route name`},
		{"forward without url", "routes:\n  - path: /x\n    handler: forward\n", 2, "routes[0].forward.url", "is required with handler: forward"},
		{"forward block without url", "routes:\n  - path: /x\n    handler: forward\n    forward:\n      header: {A: b}\n", 4, "routes[0].forward.url", "is required"},
		{"forward relative url", "routes:\n  - path: /x\n    handler: forward\n    forward:\n      url: /upstream\n", 5, "routes[0].forward.url", "not an absolute http:// or https:// URL"},
		{"forward block on echo", route + "    forward:\n      url: http://a\n", 4, "routes[0].forward", "only for handler: forward"},
		{"exec without command", "routes:\n  - path: /x\n    handler: exec\n    exec:\n      dir: /tmp\n", 4, "routes[0].exec.command", "is required with handler: exec"},
		{"exec without block", "routes:\n  - path: /x\n    handler: exec\n", 2, "routes[0].exec.command", "is required"},
		{"exec command as string", "routes:\n  - path: /x\n    handler: exec\n    exec:\n      command: tr a-z A-Z\n", 5, "routes[0].exec.command", `"tr a-z A-Z" is not a list of strings`},
		{"exec bad exit code", "routes:\n  - path: /x\n    handler: exec\n    exec:\n      command: [x]\n      permanentExitCodes: [1, 0]\n", 6, "routes[0].exec.permanentExitCodes[1]", "0 is not a failing exit code"},
		{"unknown handler", "routes:\n  - path: /x\n    handler: resize\n", 3, "routes[0].handler", `unknown handler "resize"`},
		{"no handler", "routes:\n  - path: /x\n", 2, "routes[0].handler", "is required"},
		{"bad inline schema", route + "    schema:\n      type: object\n      properties:\n        id:\n          type: strin\n", 8, "routes[0].schema", "not a valid JSON Schema: /properties/id/type: value must be one of"},
		{"bad inline schema keyword", route + "    schema:\n      minLength: -1\n", 5, "routes[0].schema", "not a valid JSON Schema: /minLength"},
		{"schema and schemaFile", route + "    schema: {type: object}\n    schemaFile: s.json\n", 5, "routes[0].schemaFile", "set schema or schemaFile, not both"},
		{"missing schemaFile", route + "    schemaFile: nope.json\n", 4, "routes[0].schemaFile", "no such file"},
		{"schema and text media type", route + "    schemaFile: s.json\n    mediaTypes: [text/plain]\n", 5, "routes[0].mediaTypes[0]", "not a JSON media type"},
		{"bad media type", route + "    mediaTypes: [application/json, 'text/']\n", 4, "routes[0].mediaTypes[1]", `"text/" is not a media type`},
		{"media type params", route + "    mediaTypes: ['application/json; charset=utf-8']\n", 4, "routes[0].mediaTypes[0]", "matched without parameters; write application/json"},
		{"media type wildcard", route + "    mediaTypes: ['text/*']\n", 4, "routes[0].mediaTypes[0]", "wildcards are not matched"},
		{"maxAttempts 0", route + "    maxAttempts: 0\n", 4, "routes[0].maxAttempts", "must be at least 1, not 0"},
		{"maxAttempts not a number", "defaults:\n  maxAttempts: three\n", 2, "defaults.maxAttempts", `"three" is not a whole number`},
		{"negative concurrency", "defaults:\n  concurrency: -1\n", 2, "defaults.concurrency", "must be 0 (no limit) or more"},
		{"maxBackoff below backoff", "defaults:\n  backoff: 1m\n" + route + "    maxBackoff: 10s\n", 6, "routes[0].maxBackoff", "10s is less than backoff (1m0s)"},
		{"defaults maxBackoff below backoff", "defaults:\n  backoff: 1m\n  maxBackoff: 30s\n", 3, "defaults.maxBackoff", "30s is less than backoff (1m0s)"},
		{"bad size", route + "    maxBody: 1 MiBs\n", 4, "routes[0].maxBody", `"1 MiBs" is not a size`},
		{"server workers", "server:\n  workers: -2\n", 2, "server.workers", "must be -1 (no workers), 0 (the default) or more"},
		{"server forward", "server:\n  forward: localhost:9000\n", 2, "server.forward", "not an absolute http:// or https:// URL"},
		{"server maxInterruptions", "server:\n  maxInterruptions: 0\n", 2, "server.maxInterruptions", "must be more than 0"},
		{"server maxResult", "server:\n  maxResult: 0\n", 2, "server.maxResult", "must be more than 0"},
		{"server janitorInterval", "server:\n  janitorInterval: 0s\n", 2, "server.janitorInterval", "must be more than 0"},
		{"server addr", "server:\n  addr: 8080\n", 2, "server.addr", "not a host:port address"},
		{"server adminAddr", "server:\n  adminAddr: 9090\n", 2, "server.adminAddr", "not a host:port address"},
		{"server maxQueue", "server:\n  maxQueue: 0\n", 2, "server.maxQueue", "must be more than 0"},
		{"routes not a list", "routes:\n  path: /x\n", 2, "routes", "want a list of routes, got a mapping"},
		{"route not a mapping", "routes:\n  - /x\n", 2, "routes[0]", `"/x" is not a mapping`},
		{"duplicate key", route + "    handler: exec\n", 4, "routes[0]", `"handler" is set twice (first at line 3)`},
		{"tab indentation", "routes:\n  - path: /x\n\thandler: echo\n", 3, "", "a tab in the indentation"},
		{"tab indentation first", "routes:\n\t- path: /x\n", 2, "", "a tab in the indentation"},
		{"unclosed flow list", "routes:\n  - path: /x\n    handler: echo\n    mediaTypes: [a/b\n", 4, "", "YAML syntax: did not find expected ',' or ']'"},
		{"mapping in a value", "server:\n  addr: a: b\n", 2, "", "YAML syntax: mapping values are not allowed"},
		{"unknown anchor", "server:\n  addr: :80\nroutes:\n  - *route\n", 4, "", "YAML syntax: unknown anchor 'route'"},
		{"not a mapping", "- a\n- b\n", 1, "", "the config must be a mapping"},
		{"two documents", "server: {}\n---\nserver: {}\n", 2, "", "one YAML document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse(filepath.Join(dir, "arr.yaml"), []byte(c.src), nil)
			if err == nil {
				t.Fatalf("no error for\n%s", c.src)
			}
			list := errs(t, err)
			if len(list) != 1 {
				t.Errorf("%d errors, want 1:\n%v", len(list), err)
			}
			e := list[0]
			if e.Line != c.line || e.Key != c.key || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("got  %d %q %q\nwant %d %q %q", e.Line, e.Key, e.Msg, c.line, c.key, c.msg)
			}
			if !strings.HasPrefix(e.Error(), filepath.Join(dir, "arr.yaml")+":") {
				t.Errorf("%q does not start with the file's name", e.Error())
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	src := `server:
  workers: many
defaults:
  timeout: 10x
routes:
  - path: /x
    handler: echo
    mediaTypes: [nope]
  - path: /healthz
    handler: echo
  - path: /y
    handler: forward
  - path: /z
    handler: exec
    exec: {}
    maxAttempts: 0
    bogus: 1
`
	_, err := config.Parse("arr.yaml", []byte(src), nil)
	if err == nil {
		t.Fatal("no error")
	}
	want := []struct {
		line int
		key  string
	}{
		{2, "server.workers"},
		{4, "defaults.timeout"},
		{8, "routes[0].mediaTypes[0]"},
		{9, "routes[1].path"},
		{11, "routes[2].forward.url"},
		{15, "routes[3].exec.command"},
		{16, "routes[3].maxAttempts"},
		{17, "routes[3]"},
	}
	list := errs(t, err)
	var got []string
	for _, e := range list {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Key))
	}
	var exp []string
	for _, w := range want {
		exp = append(exp, fmt.Sprintf("%d %s", w.line, w.key))
	}
	if !slices.Equal(got, exp) {
		t.Errorf("errors at\n%s\nwant\n%s\nfull:\n%v", strings.Join(got, "\n"), strings.Join(exp, "\n"), err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("Error() has %d lines, want %d", n, len(want))
	}
}

// TestRoutesYAMLLeavesOut checks that routes after ones yaml.v3 cannot
// decode (and so leaves out of the slice) keep their own lines and indexes.
func TestRoutesYAMLLeavesOut(t *testing.T) {
	src := `routes:
  -
  - /v1/a
  - path: /v1/b
    handler: echo
    handler: echo
  - path: /v1/c
    handler: nope
  - path: /v1/c
    handler: echo
`
	_, err := config.Parse("arr.yaml", []byte(src), nil)
	var got []string
	for _, e := range errs(t, err) {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Key))
	}
	want := []string{"2 routes[0]", "3 routes[1]", "6 routes[2]", "8 routes[3].handler", "9 routes[4].path"}
	if !slices.Equal(got, want) {
		t.Errorf("errors at %q, want %q:\n%v", got, want, err)
	}
	if !strings.Contains(err.Error(), "duplicate route: POST /v1/c is also routes[3] (line 7)") {
		t.Errorf("%v", err)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte("type: object\nrequired: [a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "arr.yaml")
	src := `routes:
  - path: /v1/run
    handler: exec
    exec:
      command: [./run.sh]
      dir: scripts
  - path: /v1/abs
    handler: exec
    exec:
      command: [true]
      dir: /srv
  - path: /v1/yaml-schema
    handler: echo
    schemaFile: s.yaml
`
	if err := os.WriteFile(name, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Routes[0].Exec.Dir; got != filepath.Join(dir, "scripts") {
		t.Errorf("relative dir = %q", got)
	}
	if got := f.Routes[1].Exec.Dir; got != "/srv" {
		t.Errorf("absolute dir = %q", got)
	}
	r := &f.Routes[2]
	if r.SchemaFile != filepath.Join(dir, "s.yaml") || r.Validate([]byte(`{"a": 1}`)) != nil ||
		r.Validate([]byte(`{}`)) == nil {
		t.Errorf("YAML schema file: %q", r.SchemaFile)
	}
}

func TestGoHandlers(t *testing.T) {
	src := "routes:\n  - path: /v1/thumbnails\n    handler: resize\n"
	f, err := config.Parse("arr.yaml", []byte(src), []string{"transcode", "resize"})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Routes[0]; r.Handler != "resize" || r.Name != "post-v1-thumbnails" {
		t.Errorf("route = %+v", r)
	}
	_, err = config.Parse("arr.yaml", []byte(src), nil)
	if err == nil || !strings.Contains(err.Error(), `arr.yaml:3: routes[0].handler: unknown handler "resize": use echo, forward or exec (this program registers no Go handlers)`) {
		t.Errorf("no Go handlers: %v", err)
	}
	_, err = config.Parse("arr.yaml", []byte(src), []string{"transcode", "crop"})
	if err == nil || !strings.Contains(err.Error(), "one of the program's Go handlers: transcode, crop") {
		t.Errorf("other Go handlers: %v", err)
	}
	// A Go handler takes no forward or exec block.
	_, err = config.Parse("arr.yaml", []byte(src+"    exec: {command: [x]}\n"), []string{"resize"})
	if err == nil || !strings.Contains(err.Error(), "only for handler: exec") {
		t.Errorf("exec block on a Go handler: %v", err)
	}
}

func TestDurations(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"30s", 30 * time.Second, "30s"},
		{"10m", 10 * time.Minute, "10m0s"},
		{"24h", 24 * time.Hour, "1d"},
		{"7d", 7 * 24 * time.Hour, "7d"},
		{"1d12h", 36 * time.Hour, "36h0m0s"},
		{"90d", 90 * 24 * time.Hour, "90d"},
		{"1h30m", 90 * time.Minute, "1h30m0s"},
		{"250ms", 250 * time.Millisecond, "250ms"},
	} {
		d, err := config.ParseDuration(c.in)
		if err != nil || d.Std() != c.want || d.String() != c.str {
			t.Errorf("ParseDuration(%q) = %v (%s), %v; want %v (%s)", c.in, d.Std(), d, err, c.want, c.str)
		}
		if back, err := config.ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%q does not round-trip: %v %v", d.String(), back, err)
		}
	}
	for _, in := range []string{"", "7", "d", "1.5d", "7days", "-1d", "1d-1h", "7D", "1w", "10x", "99999999999999d"} {
		if d, err := config.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
	f := mustParse(t, "defaults:\n  retention: 7d\n  tombstone: 1d12h\nroutes:\n  - path: /x\n    handler: echo\n    retention: 2d\n", nil)
	if f.Defaults.Retention.Std() != 168*time.Hour || f.Defaults.Tombstone.Std() != 36*time.Hour {
		t.Errorf("defaults = %+v", f.Defaults)
	}
	if e := f.Effective(&f.Routes[0]); e.Retention.Std() != 48*time.Hour || e.Tombstone.Std() != 36*time.Hour {
		t.Errorf("Effective = %+v", e)
	}
}

func TestByteSizes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"1MiB", 1 << 20}, {"512KiB", 512 << 10}, {"1 MiB", 1 << 20},
		{"2GiB", 2 << 30}, {"10MB", 10_000_000}, {"5kb", 5000}, {"100B", 100}, {"1mib", 1 << 20},
	} {
		b, err := config.ParseByteSize(c.in)
		if err != nil || int64(b) != c.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", c.in, b, err, c.want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5MiB", "-1", "1TiB", "1 M iB", "99999999999GiB"} {
		if b, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, b)
		}
	}
	if s := config.ByteSize(64 << 10).String(); s != "64KiB" {
		t.Errorf("String = %q", s)
	}
	f := mustParse(t, "server:\n  maxBody: 2MiB\ndefaults:\n  maxBody: 65536\n", nil)
	if f.Server.MaxBody != 2<<20 || f.Defaults.MaxBody != 64<<10 {
		t.Errorf("maxBody = %d, %d", f.Server.MaxBody, f.Defaults.MaxBody)
	}
}

func TestRouteDefaults(t *testing.T) {
	f := mustParse(t, `
server:
  seedRoutes: false
routes:
  - path: /v1/echo
    handler: echo
  - method: ANY
    path: /api/
    handler: echo
  - method: "*"
    path: /v1/items/{id}
    handler: echo
  - method: PUT
    path: /v1/items/{id}
    handler: echo
    name: put.items_v2
  - path: /v1/json
    handler: echo
    schema: {"type": "object", "required": ["a"]}
    mediaTypes: [Application/JSON, application/merge-patch+json]
`, nil)
	var got []string
	for _, r := range f.Routes {
		got = append(got, fmt.Sprintf("%s %q %v", r.Name, r.Pattern(), r.MediaTypes))
	}
	want := []string{
		`post-v1-echo "POST /v1/echo" []`,
		`any-api "/api/" []`,
		`any-v1-items-id "/v1/items/{id}" []`,
		`put.items_v2 "PUT /v1/items/{id}" []`,
		`post-v1-json "POST /v1/json" [application/json application/merge-patch+json]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := f.Routes[4].Validate([]byte(`{"b": 1}`)); err == nil || err.Error() != "/a: is required" {
		t.Errorf("inline JSON schema: %v", err)
	}
}

func TestEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "---\n", "server:\ndefaults:\nroutes:\n"} {
		f, err := config.Parse("arr.yaml", []byte(src), nil)
		if err != nil || f == nil || len(f.Routes) != 0 || f.Path != "arr.yaml" {
			t.Errorf("%q: %+v, %v", src, f, err)
		}
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func ExampleParse() {
	f, err := config.Parse("arr.yaml", []byte(`
defaults:
  timeout: 2m
routes:
  - path: /v1/reports
    handler: forward
    forward: {url: "http://127.0.0.1:9000/reports"}
  - name: shout
    path: /v1/shout
    handler: exec
    exec: {command: [sh, -c, "tr a-z A-Z"]}
    timeout: 30s
  - method: PUT
    path: /v1/customers/{id}
    handler: echo
    schemaFile: ../examples/customer.schema.json
`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range f.Routes {
		fmt.Printf("line %d: %s %q handler=%s timeout=%s media=%v\n",
			r.Line, r.Name, r.Pattern(), r.Handler, f.Effective(&r).Timeout, r.MediaTypes)
	}
	fmt.Println(f.Routes[2].Validate([]byte(`{"id": "42"}`)))
	// Output:
	// line 5: post-v1-reports "POST /v1/reports" handler=forward timeout=2m0s media=[]
	// line 8: shout "POST /v1/shout" handler=exec timeout=30s media=[]
	// line 13: put-v1-customers-id "PUT /v1/customers/{id}" handler=echo timeout=2m0s media=[application/json]
	// /customername: is required
}

func TestInlineResults(t *testing.T) {
	f := mustParse(t, "routes:\n  - path: /v1/page\n    handler: echo\n    inlineResults: true\n  - path: /v1/file\n    handler: echo\n", nil)
	if !f.Routes[0].InlineResults || f.Routes[1].InlineResults {
		t.Fatalf("inlineResults: %v, %v", f.Routes[0].InlineResults, f.Routes[1].InlineResults)
	}
	if _, err := config.Parse("arr.yaml", []byte("routes:\n  - path: /v1/page\n    handler: echo\n    inlineResults: maybe\n"), nil); err == nil {
		t.Fatal("inlineResults: maybe was accepted")
	}
}

func TestCallbacks(t *testing.T) {
	f := mustParse(t, "server:\n  callbacks:\n    allow: [\"*.example.com\", \"10.0.0.5:9000\"]\n    maxAge: 2h\n"+
		"routes:\n  - path: /v1/x\n    handler: echo\n    callbacks:\n      targets:\n        - url: https://h.example.com/cb\n          every: true\n      allow: []\n      every: true\n", nil)
	cb := f.Routes[0].Callbacks
	if len(f.Server.Callbacks.Allow) != 2 || f.Server.Callbacks.MaxAge.Std() != 2*time.Hour || cb == nil ||
		len(cb.Targets) != 1 || cb.Targets[0].URL != "https://h.example.com/cb" || !cb.Targets[0].Every || cb.Allow == nil || len(*cb.Allow) != 0 || !cb.Every {
		t.Fatalf("callbacks: server %+v, route %+v", f.Server.Callbacks, cb)
	}
}

func TestServerBrowserAndProxySettings(t *testing.T) {
	f := mustParse(t, "server:\n  allowedHosts: [api.example, 'other.example:8443']\n  trustedProxies: [10.0.0.0/8, 192.168.1.7]\n  allowedOrigins: ['https://app.example']\n", nil)
	if s := f.Server; len(s.AllowedHosts) != 2 || len(s.TrustedProxies) != 2 || s.AllowedOrigins[0] != "https://app.example" {
		t.Fatalf("server: %+v", s)
	}
	_, err := config.Parse("arr.yaml", []byte("server:\n  trustedProxies: [10.0.0.0/33]\n"), nil)
	if es := errs(t, err); len(es) != 1 || es[0].Key != "server.trustedProxies[0]" {
		t.Fatalf("bad trustedProxies: %v", err)
	}
}
