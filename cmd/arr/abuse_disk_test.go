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

// smallDisk mounts a tmpfs of size (e.g. "128m") for the test, with a
// filler file of fill bytes on it to free later, and returns the mount
// point and the filler's path.
func smallDisk(t *testing.T, size string, fill int) (mnt, filler string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("mounting a tmpfs needs root")
		}
		t.Fatal("CI is set but the test does not run as root: it needs to mount a tmpfs")
	}
	mnt = t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	filler = filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, fill), 0o600); err != nil {
		t.Fatal(err)
	}
	return mnt, filler
}

// diskFlags are arr's flags for data on a small disk: small memtables and
// cache, as a user on a small disk would set them, a short write deadline
// and grace.
func diskFlags(data string, extra ...string) []string {
	db := "embedded:" + filepath.Join(data, "db") + "?memTableSize=4194304&cacheSize=8388608"
	return append([]string{"-store", db, "-queue", db, "-results", db, "-store-write-deadline", "1s",
		"-shutdown-grace", "3s", "-store-close-timeout", "2s", "-log-level", "info"}, extra...)
}

// acked is a submit answered 202.
type acked struct {
	key, id string
	body    []byte
}

// filler submits 1 MB bodies with Idempotency-Keys to an arr.
type filler struct {
	t    *testing.T
	base string
	hc   *http.Client
}

// submit posts body to /v1/echo with key, and returns the status, the
// operation id and how long the answer took; a 507 or 503 without
// Retry-After is an error.
func (f *filler) submit(key string, body []byte) (int, string, time.Duration, error) {
	req, _ := http.NewRequest("POST", f.base+"/v1/echo", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Idempotency-Key", key)
	start := time.Now()
	res, err := f.hc.Do(req)
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

// fill has four clients submit 1 MB bodies until each saw five refusals
// in a row (or for at most 25 s), and fails the test unless every submit
// was answered within 2 s with 202, 507 or 503. It returns the accepted
// ones and the count of each status.
func (f *filler) fill(prefix string, log fmt.Stringer) ([]acked, map[int]int) {
	t := f.t
	var (
		mu       sync.Mutex
		accepted []acked
		counts   = map[int]int{}
		problems []string
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(25 * time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refusedInARow := 0
			for i := 0; refusedInARow < 5 && time.Now().Before(stop); i++ {
				body := make([]byte, 1_000_000)
				_, _ = rand.Read(body)
				key := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				code, id, took, err := f.submit(key, body)
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
		t.Fatalf("%d submits not answered within 2 s with 202, 507 or 503:\n%s\n%s", len(problems), strings.Join(problems, "\n"), log)
	}
	return accepted, counts
}

// get answers GET path within 2 s, failing the test otherwise.
func (f *filler) get(path string, log fmt.Stringer) (int, string) {
	f.t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(f.base + path)
	if err != nil {
		f.t.Fatalf("GET %s: %v\n%s", path, err, log)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitFor polls ok every 50 ms, failing the test after limit.
func waitFor(t *testing.T, what string, limit time.Duration, log fmt.Stringer, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s\n%s", limit, what, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check fails the test unless every accepted submit's operation has its
// bytes as its result and its key finds it again.
func (f *filler) check(accepted []acked, log fmt.Stringer) {
	t := f.t
	for _, a := range accepted {
		var got []byte
		waitFor(t, "operation "+a.id+" finished", 20*time.Second, log, func() bool {
			res, err := f.hc.Get(f.base + "/v1/operations/" + a.id + "/result?redirect=false")
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
		code, id, _, err := f.submit(a.key, a.body)
		if err != nil || code != 202 || id != a.id {
			t.Fatalf("submit again with key %s = %d %q %v, want 202 with %s", a.key, code, id, err, a.id)
		}
	}
}

// sigterm stops p and fails the test unless it exits within limit; it
// returns p's exit error.
func sigterm(t *testing.T, cmd *exec.Cmd, exited <-chan error, limit time.Duration, log fmt.Stringer) error {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("arr did not exit within %s of SIGTERM\n%s", limit, log)
		return nil
	}
}

// The disk fills up under a real arr serve (a 128 MiB tmpfs, filled
// through /v1/echo with 1 MB bodies, and a 32 MiB watermark read every
// 100 ms): every submit is answered within 2 s with 202, 507 or 503, never
// a hang or another 5xx; /readyz turns 503 and /healthz stays 200; SIGTERM
// exits cleanly. Started again on the still-full disk, arr listens,
// /healthz answers 200 and /readyz 503 saying what is wrong; once space
// is freed it comes up without a restart, and every operation acknowledged
// with 202 is there with its bytes.
func TestAbuseDiskFull(t *testing.T) {
	mnt, fillerFile := smallDisk(t, "128m", 40<<20)
	data := filepath.Join(mnt, "data")
	flags := diskFlags(data, "-min-free-disk", "32MiB", "-disk-check-interval", "100ms")
	addr := freeAddr(t)
	p := startArr(t, addr, data, flags...)
	f := &filler{t: t, base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Second}}
	accepted, counts := f.fill("fill", p.log)
	if counts[507] == 0 || len(accepted) == 0 {
		t.Fatalf("the disk never filled (answers %v)\n%s", counts, p.log)
	}
	if code, body := f.get("/readyz", p.log); code != 503 || !strings.Contains(body, "free") {
		t.Fatalf("/readyz on a full disk: %d %s", code, body)
	}
	if code, _ := f.get("/healthz", p.log); code != 200 {
		t.Fatalf("/healthz on a full disk: %d", code)
	}
	if code, body := f.get("/metrics", p.log); code != 200 || !strings.Contains(body, "arr_storage_free_bytes") {
		t.Fatalf("/metrics on a full disk: %d", code)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	if err := sigterm(t, p.cmd, exited, 12*time.Second, p.log); err != nil {
		t.Errorf("arr exited with %v after SIGTERM\n%s", err, p.log)
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
		if err := sigterm(t, cmd, exited2, 12*time.Second, log2); err != nil {
			t.Errorf("the second arr exited with %v after SIGTERM\n%s", err, log2)
		}
	}()
	status := func(path string) int {
		res, err := f.hc.Get(f.base + path)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitFor(t, "/healthz 200 on the full disk", 10*time.Second, log2, func() bool { return status("/healthz") == 200 })
	if code, body := f.get("/readyz", log2); code != 503 || !strings.Contains(body, "free") {
		t.Fatalf("/readyz after a start on the full disk: %d %s\n%s", code, body, log2)
	}
	if !strings.Contains(log2.String(), "full disk") {
		t.Fatalf("the start on a full disk is not logged:\n%s", log2)
	}
	// Free space: it comes up without a restart.
	if err := os.Remove(fillerFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz 200 once space is freed", 20*time.Second, log2, func() bool { return status("/readyz") == 200 })
	f.check(accepted, log2)
}

// Without a watermark the disk really fills (a 96 MiB tmpfs, ENOSPC):
// Pebble's flushes fail and its writes stall. Every submit is still
// answered within 2 s (503 once writes fail or stall), and /healthz,
// /readyz (503) and /metrics within 2 s; once space is freed, arr takes
// submits again without a restart; SIGTERM exits within its limit; and
// after a restart every 202 is there with its bytes.
func TestAbuseDiskFullWithoutWatermark(t *testing.T) {
	mnt, fillerFile := smallDisk(t, "96m", 40<<20)
	data := filepath.Join(mnt, "data")
	flags := diskFlags(data, "-min-free-disk", "0")
	addr := freeAddr(t)
	p := startArr(t, addr, data, flags...)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	f := &filler{t: t, base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Second}}
	accepted, counts := f.fill("enospc", p.log)
	if counts[503] == 0 || len(accepted) == 0 {
		t.Fatalf("the disk never failed a write (answers %v)\n%s", counts, p.log)
	}
	select {
	case err := <-exited:
		t.Fatalf("arr exited (%v) on a full disk\n%s", err, p.log)
	default:
	}
	if code, _ := f.get("/healthz", p.log); code != 200 {
		t.Fatalf("/healthz on a full disk: %d", code)
	}
	if code, _ := f.get("/metrics", p.log); code != 200 {
		t.Fatalf("/metrics on a full disk: %d", code)
	}
	if code, body := f.get("/readyz", p.log); code != 503 {
		t.Fatalf("/readyz on a full disk: %d %s\n%s", code, body, p.log)
	}
	// Freed space: submits are taken again, without a restart.
	if err := os.Remove(fillerFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a submit taken once space is freed", 20*time.Second, p.log, func() bool {
		body := make([]byte, 1000)
		key := fmt.Sprintf("after-%d", time.Now().UnixNano())
		code, id, _, err := f.submit(key, body)
		if err == nil && code == 202 {
			accepted = append(accepted, acked{key, id, body})
			return true
		}
		return false
	})
	waitFor(t, "/readyz 200 once space is freed", 20*time.Second, p.log, func() bool {
		code, _ := f.get("/readyz", p.log)
		return code == 200
	})
	if err := sigterm(t, p.cmd, exited, 12*time.Second, p.log); err != nil {
		t.Logf("arr exited with %v after SIGTERM", err)
	}
	p2 := startArr(t, addr, data, flags...)
	defer p2.stop(t)
	f.check(accepted, p2.log)
}
