package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On SIGTERM arr says what it waits for (here a handler that runs for a
// minute, within a grace of a minute); a second SIGTERM exits at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	cfg := writeConfig(t, `routes:
  - path: /v1/slow
    handler: exec
    exec:
      command: ["sleep", "60"]
      contentType: text/plain
`)
	addr, data := freeAddr(t), t.TempDir()
	p := startArr(t, addr, data, "-config", cfg, "-shutdown-grace", "60s", "-log-level", "info")
	res, err := http.Post("http://"+addr+"/v1/slow", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 202 {
		t.Fatalf("submit: %d", res.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !runningHandler(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("the handler did not start\n%s", p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "running_handlers=1") {
		if time.Now().After(deadline) {
			t.Fatalf("the shutdown does not say it waits for the running handler\n%s", p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-exited:
		t.Fatalf("arr exited (%v) after one SIGTERM with a handler running and a grace of 60 s\n%s", err, p.log)
	case <-time.After(500 * time.Millisecond):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(p.log.String(), "second signal") {
			t.Fatalf("after a second SIGTERM: exit %v\n%s", err, p.log)
		}
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
		t.Fatalf("arr did not exit within 3 s of a second SIGTERM\n%s", p.log)
	}
	// The handler's command outlived the process that exited at once; the
	// next start on the data directory kills it (see command.Reap).
	again := startArr(t, addr, data, "-config", cfg, "-log-level", "info", "-shutdown-grace", "1s")
	if !strings.Contains(again.log.String(), "killed process groups left by a previous run") {
		t.Errorf("the next start did not reap the abandoned handler's command\n%s", again.log)
	}
	again.stop(t)
}

// runningHandler reports whether arr's metrics count a running operation.
func runningHandler(addr string) bool {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.Contains(string(b), "\narr_operations_running 1")
}
