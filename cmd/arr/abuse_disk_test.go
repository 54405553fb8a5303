package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The disk fills up under a real arr serve (a 128 MiB tmpfs, filled
// through /v1/echo with 1 MB bodies): every submit is answered within 2 s
// with 202, 507 or 503, never a hang or another 5xx; /readyz turns 503
// and /healthz stays 200; SIGTERM exits within the grace. Started again on
// the still-full disk, arr listens, /healthz answers 200 and /readyz 503
// saying what is wrong; once space is freed it comes up without a restart,
// and every operation acknowledged with 202 is there with its bytes.
func TestAbuseDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("mounting a tmpfs needs root")
		}
		t.Fatal("CI is set but the test does not run as root: it needs to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	// A filler file to free later: 40 MiB of the 128.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	// Small memtables and cache, as a user on a small disk would set them.
	db := "embedded:" + filepath.Join(data, "db") + "?memTableSize=4194304&cacheSize=8388608"
	flags := []string{"-store", db, "-queue", db, "-results", db, "-min-free-disk", "32MiB", "-disk-check-interval", "100ms",
		"-store-write-deadline", "1s", "-shutdown-grace", "3s", "-store-close-timeout", "2s", "-log-level", "info"}
	addr := freeAddr(t)
	p := startArr(t, addr, data, flags...)
	base := "http://" + addr
	hc := &http.Client{Timeout: 10 * time.Second}

	// Fill the disk: four clients submit 1 MB bodies until five submits in
	// a row are refused.
	type acked struct {
		key, id string
		body    []byte
	}
	var (
		mu       sync.Mutex
		accepted []acked
		counts   = map[int]int{}
		problems []string
	)
	submit := func(key string, body []byte) (int, string, time.Duration, error) {
		req, _ := http.NewRequest("POST", base+"/v1/echo", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Idempotency-Key", key)
		start := time.Now()
		res, err := hc.Do(req)
		took := time.Since(start)
		if err != nil {
			return 0, "", took, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var v struct{ ID string }
		_ = json.Unmarshal(b, &v)
		if (res.StatusCode == 507 || res.StatusCode == 503) && res.Header.Get("Retry-After") == "" {
			return res.StatusCode, "", took, fmt.Errorf("%d without Retry-After: %s", res.StatusCode, b)
		}
		return res.StatusCode, v.ID, took, nil
	}
	var wg sync.WaitGroup
	stopFill := time.Now().Add(25 * time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refusedInARow := 0
			for i := 0; refusedInARow < 5 && time.Now().Before(stopFill); i++ {
				body := make([]byte, 1_000_000)
				_, _ = rand.Read(body)
				key := fmt.Sprintf("fill-%d-%d", w, i)
				code, id, took, err := submit(key, body)
				mu.Lock()
				counts[code]++
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("%s: %v after %s", key, err, took))
				case took > 2*time.Second:
					problems = append(problems, fmt.Sprintf("%s: answered %d after %s", key, code, took))
				case code == 202:
					accepted = append(accepted, acked{key, id, body})
				case code != 507 && code != 503:
					problems = append(problems, fmt.Sprintf("%s: answered %d", key, code))
				}
				mu.Unlock()
				if code == 202 {
					refusedInARow = 0
				} else {
					refusedInARow++
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("submits answered: %v; %d accepted", counts, len(accepted))
	if len(problems) > 0 {
		t.Fatalf("%d submits not answered within 2 s with 202, 507 or 503:\n%s\n%s", len(problems), strings.Join(problems, "\n"), p.log)
	}
	if counts[507] == 0 || len(accepted) == 0 {
		t.Fatalf("the disk never filled (answers %v)\n%s", counts, p.log)
	}
	probe := func(path string) (int, string) {
		res, err := hc.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, p.log)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := probe("/readyz"); code != 503 || !strings.Contains(body, "free") {
		t.Fatalf("/readyz on a full disk: %d %s", code, body)
	}
	if code, _ := probe("/healthz"); code != 200 {
		t.Fatalf("/healthz on a full disk: %d", code)
	}
	if code, body := probe("/metrics"); code != 200 || !strings.Contains(body, "arr_storage_free_bytes") {
		t.Fatalf("/metrics on a full disk: %d", code)
	}

	// SIGTERM: out within the HTTP grace (5 s) plus the close timeout,
	// with room for a slow machine.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("arr exited with %v after SIGTERM\n%s", err, p.log)
		}
	case <-time.After(12 * time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
		t.Fatalf("arr did not exit within 12 s of SIGTERM on a full disk\n%s", p.log)
	}

	// Start again on the still-full disk: it listens and says why it is
	// not ready.
	bin, err := buildArr()
	if err != nil {
		t.Fatal(err)
	}
	log2 := &syncBuffer{}
	cmd := exec.Command(bin, append([]string{"serve", "-addr", addr, "-data", data}, flags...)...)
	cmd.Stdout, cmd.Stderr = log2, log2
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited2 := make(chan error, 1)
	go func() { exited2 <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited2:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited2
			t.Errorf("the second arr did not exit within 15 s of SIGTERM\n%s", log2)
		}
	}()
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("not within %s: %s\n%s", limit, what, log2)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	status := func(path string) (int, string) {
		res, err := hc.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitFor("/healthz 200 on the full disk", 10*time.Second, func() bool { c, _ := status("/healthz"); return c == 200 })
	if code, body := status("/readyz"); code != 503 || !strings.Contains(body, "free") {
		t.Fatalf("/readyz after a start on the full disk: %d %s\n%s", code, body, log2)
	}
	if !strings.Contains(log2.String(), "full disk") {
		t.Fatalf("the start on a full disk is not logged:\n%s", log2)
	}

	// Free space: it comes up without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor("/readyz 200 once space is freed", 20*time.Second, func() bool { c, _ := status("/readyz"); return c == 200 })

	// Every 202 is there with its bytes, and its key finds it.
	for _, a := range accepted {
		var got []byte
		waitFor("operation "+a.id+" finished", 20*time.Second, func() bool {
			res, err := hc.Get(base + "/v1/operations/" + a.id + "/result?redirect=false")
			if err != nil {
				return false
			}
			defer res.Body.Close()
			if res.StatusCode != 200 {
				return false
			}
			got, err = io.ReadAll(res.Body)
			return err == nil
		})
		if !bytes.Equal(got, a.body) {
			t.Fatalf("operation %s (key %s): result of %d bytes is not the %d bytes submitted", a.id, a.key, len(got), len(a.body))
		}
		code, id, _, err := submit(a.key, a.body)
		if err != nil || code != 202 || id != a.id {
			t.Fatalf("submit again with key %s = %d %q %v, want 202 with %s", a.key, code, id, err, a.id)
		}
	}
}
