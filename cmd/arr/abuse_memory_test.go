package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssOf returns the resident set size of process pid (VmRSS), in bytes.
func rssOf(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// rssSampler records the highest RSS of a process until stopped.
type rssSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(t *testing.T, pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := rssOf(pid); err == nil && rss > s.max.Load() {
				s.max.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peak stops the sampler and returns the highest RSS it saw.
func (s *rssSampler) peak() int64 {
	close(s.stop)
	<-s.done
	return s.max.Load()
}

// The slow readers of issue 14: a 60 MiB result read by 40 connections at
// a slow pace (half through its signed URL, half through
// …/result?redirect=false) for several seconds grows arr's RSS by far less
// than one copy of the result per connection (the bound: 256 MiB, where a
// copy per connection is 2.4 GB); 400 HEADs and 400 If-None-Match GETs
// (answered 304) grow it by next to nothing. The bytes served are the
// result's, whole and by Range.
func TestAbuseSlowReadersOfALargeResult(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads the RSS from /proc")
	}
	const (
		size    = 60 << 20
		readers = 40
		// pace: each reader reads step bytes every tick, 1.6 MiB/s, above
		// any minimum transfer rate a server may enforce, for readFor.
		step    = 64 << 10
		tick    = 40 * time.Millisecond
		readFor = 10 * time.Second
	)
	addr, data := freeAddr(t), t.TempDir()
	base := "http://" + addr
	proc := startArr(t, addr, data, "-max-body", strconv.Itoa(64<<20))
	defer func() { proc.stop(t) }()
	hc := &http.Client{Timeout: 60 * time.Second}

	t0 := time.Now()
	body := make([]byte, size)
	_, _ = mrand.NewChaCha8([32]byte{14}).Read(body)
	sum := sha256.Sum256(body)
	at32MiB := [4]byte(body[32<<20:])
	res, err := hc.Post(base+"/v1/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var op struct{ ID string }
	if res.StatusCode != 202 || json.Unmarshal(b, &op) != nil || op.ID == "" {
		t.Fatalf("submit of %d bytes: %d %s", size, res.StatusCode, b)
	}
	body = nil
	var view struct {
		Status string
		Result struct {
			Href string
			Size int64
		}
		ResourceLocation string
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		res, err := hc.Get(base + "/v1/operations/" + op.ID + "?redirect=false")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&view)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if view.Status == "succeeded" {
			break
		}
		if view.Status == "failed" || time.Now().After(deadline) {
			t.Fatalf("operation %s: %s", op.ID, view.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	signed := resolve(t, base, view.Result.Href)
	direct := base + "/v1/operations/" + op.ID + "/result?redirect=false"
	if view.Result.Size != size {
		t.Fatalf("result size %d, want %d", view.Result.Size, size)
	}

	t.Logf("60 MiB stored in %s", time.Since(t0).Round(time.Millisecond))
	// A fresh process, so that the heap the 60 MiB submit left behind does
	// not hide what the readers cost.
	proc.stop(t)
	proc = startArr(t, addr, data, "-max-body", strconv.Itoa(64<<20))
	before, err := rssOf(proc.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	s := sampleRSS(t, proc.cmd.Process.Pid)

	// The bytes (whole on one path) and a Range, on both paths; the ETag
	// of each.
	etags := map[string]string{}
	for _, u := range []string{signed, direct} {
		req, _ := http.NewRequest("GET", u, nil)
		if u == direct {
			req.Method = "HEAD"
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, res.Body)
		res.Body.Close()
		if u == signed && (res.StatusCode != 200 || err != nil || n != size || !bytes.Equal(h.Sum(nil), sum[:])) {
			t.Fatalf("GET %s: %d, %d bytes, err %v, digest match %v", u, res.StatusCode, n, err, bytes.Equal(h.Sum(nil), sum[:]))
		}
		if u == direct && (res.StatusCode != 200 || res.ContentLength != size) {
			t.Fatalf("HEAD %s: %d, Content-Length %d", u, res.StatusCode, res.ContentLength)
		}
		etags[u] = res.Header.Get("ETag")
		if etags[u] != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Errorf("GET %s: ETag %s, want the SHA-256 of the bytes", u, etags[u])
		}
		req, _ = http.NewRequest("GET", u, nil)
		req.Header.Set("Range", "bytes=33554432-33554435")
		res, err = hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		part, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 206 || !bytes.Equal(part, at32MiB[:]) {
			t.Errorf("Range GET %s: %d %x, want 206 %x", u, res.StatusCode, part, at32MiB)
		}
	}

	var wg sync.WaitGroup
	var read atomic.Int64
	start := time.Now()
	for i := range readers {
		u := signed
		if i%2 == 1 {
			u = direct
		}
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			res, err := c.Get(u)
			if err != nil {
				t.Errorf("slow reader %d: %v", i, err)
				return
			}
			defer res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("slow reader %d: %d", i, res.StatusCode)
				return
			}
			buf := make([]byte, step)
			for time.Since(start) < readFor {
				n, err := io.ReadFull(res.Body, buf)
				read.Add(int64(n))
				if err != nil {
					t.Errorf("slow reader %d: %v after %d bytes", i, err, read.Load())
					return
				}
				time.Sleep(tick)
			}
		})
	}
	wg.Wait()
	peak := s.peak()
	t.Logf("a GET, a HEAD and 2 Range GETs, then %d slow readers read %d MiB in %s: RSS %d MiB before, peak %d MiB (growth %d MiB)",
		readers, read.Load()>>20, time.Since(start).Round(time.Millisecond), before>>20, peak>>20, (peak-before)>>20)
	if peak-before > 256<<20 {
		t.Errorf("RSS grew by %d MiB with %d slow readers of a %d MiB result; want under 256 MiB", (peak-before)>>20, readers, size>>20)
	}
	if read.Load() < readers*size/20 {
		t.Errorf("the slow readers read only %d bytes", read.Load())
	}

	// 400 HEADs and 400 If-None-Match GETs, 8 at a time.
	before, _ = rssOf(proc.cmd.Process.Pid)
	s = sampleRSS(t, proc.cmd.Process.Pid)
	var next atomic.Int64
	wg = sync.WaitGroup{}
	for range 8 {
		wg.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= 800 {
					return
				}
				u := signed
				if n%4 >= 2 {
					u = direct
				}
				req, _ := http.NewRequest("HEAD", u, nil)
				want := 200
				if n%2 == 1 {
					req.Method = "GET"
					req.Header.Set("If-None-Match", etags[u])
					want = 304
				}
				res, err := hc.Do(req)
				if err != nil {
					t.Errorf("%s %s: %v", req.Method, u, err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != want || (want == 200 && res.ContentLength != size) {
					t.Errorf("%s %s: %d, Content-Length %d; want %d", req.Method, u, res.StatusCode, res.ContentLength, want)
					return
				}
			}
		})
	}
	wg.Wait()
	peak = s.peak()
	t.Logf("400 HEADs and 400 If-None-Match GETs: RSS %d MiB before, peak %d MiB", before>>20, peak>>20)
	if peak-before > 32<<20 {
		t.Errorf("RSS grew by %d MiB over 400 HEADs and 400 conditional GETs of a %d MiB result; want next to nothing", (peak-before)>>20, size>>20)
	}
}

// resolve makes href (perhaps relative) absolute against base.
func resolve(t *testing.T, base, href string) string {
	t.Helper()
	b, err := url.Parse(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.Parse(href)
	if err != nil {
		t.Fatalf("result href %q: %v", href, err)
	}
	return u.String()
}
