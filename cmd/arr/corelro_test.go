package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// coreLRO is testdata/corelro installed (npm ci, the versions its
// package-lock.json pins) in a directory of its own, once per test binary.
var coreLRO = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "arr-corelro-")
	if err != nil {
		return "", err
	}
	for _, f := range []string{"package.json", "package-lock.json", "poll.mjs"} {
		b, err := os.ReadFile(filepath.Join("testdata", "corelro", f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &exec.Error{Name: "npm ci: " + string(out), Err: err}
	}
	return dir, nil
})

// lroOutcome is what poll.mjs reports.
type lroOutcome struct {
	OK      bool   `json:"ok"`
	Result  string `json:"result"`
	Message string `json:"message"`
	State   string `json:"state"`
	Polls   int    `json:"polls"`
}

// corelroPoll runs poll.mjs for s against base: @azure/core-lro's
// createHttpPoller and pollUntilDone, as the Azure SDK for JavaScript's
// generated clients use them.
func corelroPoll(dir, base string, s subject, accepted func(string)) (lroOutcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "poll.mjs", base, s.path, s.contentType, s.body)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return lroOutcome{}, err
	}
	if err := cmd.Start(); err != nil {
		return lroOutcome{}, err
	}
	var o lroOutcome
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var line struct {
			Accepted string `json:"accepted"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Accepted != "" {
			accepted(line.Accepted)
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return o, err
		}
	}
	return o, cmd.Wait()
}

// The Azure SDK for JavaScript's poller (@azure/core-lro 3.4.1, from the
// npm registry) against a real arr serve: the result is the bytes on the
// echo, seed and forward routes; a failure rejects with the stored
// problem's code and message (not the bare "The long-running operation
// has failed"); a cancel ends it canceled.
func TestCoreLROPoller(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr serve")
	}
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("node is not installed")
		}
		t.Fatal("node is not installed; CI is set, so this test must run (.ci/run installs nodejs)")
	}
	dir, err := coreLRO()
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, base string, subjects []subject, accepted func(string), check func(*testing.T, subject, lroOutcome)) {
		t.Helper()
		outs := make([]lroOutcome, len(subjects))
		errs := make([]error, len(subjects))
		var wg sync.WaitGroup
		for i, s := range subjects {
			wg.Go(func() { outs[i], errs[i] = corelroPoll(dir, base, s, accepted) })
		}
		wg.Wait()
		for i, s := range subjects {
			t.Run(s.name, func(t *testing.T) {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				check(t, s, outs[i])
			})
		}
	}
	t.Run("succeed-and-fail", func(t *testing.T) {
		base := startClientsArr(t, newClientsUpstream(t), 16)
		run(t, base, successes, func(string) {}, func(t *testing.T, s subject, o lroOutcome) {
			if !o.OK || o.State != "succeeded" || o.Result != s.result {
				t.Fatalf("outcome %+v, want the result %s", o, s.result)
			}
		})
		run(t, base, failures, func(string) {}, func(t *testing.T, s subject, o lroOutcome) {
			// core-lro builds its message from error.code and
			// error.message: "… has failed. CODE. MESSAGE".
			if o.OK || o.State != "failed" || !strings.Contains(o.Message, "has failed. "+s.code+". ") ||
				strings.HasSuffix(o.Message, s.code+". ") {
				t.Fatalf("outcome %+v, want failed with code %s and a message", o, s.code)
			}
		})
	})
	t.Run("canceled", func(t *testing.T) {
		up := newClientsUpstream(t)
		base := startClientsArr(t, up, 1)
		submitRunning(t, base, "/v1/fwd/hold")
		cancelLater := func(id string) {
			time.AfterFunc(1500*time.Millisecond, func() {
				req, _ := http.NewRequest(http.MethodDelete, base+"/v1/operations/"+id, nil)
				if res, err := noRedirects.Do(req); err == nil {
					res.Body.Close()
				}
			})
		}
		run(t, base, successes, cancelLater, func(t *testing.T, s subject, o lroOutcome) {
			if o.State != "canceled" || o.Polls < 1 {
				t.Fatalf("outcome %+v, want canceled after a few polls", o)
			}
		})
	})
}
