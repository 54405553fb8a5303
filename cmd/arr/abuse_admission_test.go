package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A flood of submits from one API key against a real arr serve gets 429s
// (with Retry-After and the RateLimit fields) while another key's submits
// during the flood are all accepted; the key's accepted submits stay
// within its burst and rate. A header block over -max-header-bytes is a
// 431 problem.
func TestAbuseRateLimitPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const rate, burst = 20, 40
	p := startArr(t, freeAddr(t), t.TempDir(), "-api-keys", writeKeys(t),
		"-rate-limit-submit", strconv.Itoa(rate), "-rate-limit-submit-burst", strconv.Itoa(burst))
	defer p.stop(t)
	base := "http://" + p.addr
	var accepted, limited, other atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				res, body, err := postAs(aliceKey, base+"/v1/echo")
				if err != nil {
					bad.Store(err)
					return
				}
				switch res.StatusCode {
				case 202:
					accepted.Add(1)
				case 429:
					limited.Add(1)
					if res.Header.Get("Retry-After") == "" || !strings.HasPrefix(res.Header.Get("RateLimit"), `"submit";r=0;t=`) ||
						res.Header.Get("RateLimit-Policy") != `"submit";q=40;w=2` ||
						res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), "rate-limited") {
						bad.Store(res.Header.Clone())
					}
				default:
					other.Add(1)
				}
			}
		}()
	}
	// Bob submits during the flood: his bucket is his own.
	for i := range 20 {
		res, body := as(t, bobKey, "POST", base+"/v1/echo", "bob", "Content-Type", "text/plain")
		if res.StatusCode != 202 {
			t.Fatalf("bob's submit %d during alice's flood: %d %s", i, res.StatusCode, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if h := bad.Load(); h != nil {
		t.Fatalf("a request failed, or a 429 came without Retry-After, the RateLimit fields or its problem: %v", h)
	}
	if other.Load() != 0 || limited.Load() == 0 {
		t.Fatalf("alice's flood: %d accepted, %d limited, %d other answers", accepted.Load(), limited.Load(), other.Load())
	}
	if max := int64(burst + rate*elapsed.Seconds() + 2); accepted.Load() > max {
		t.Fatalf("alice got %d submits accepted in %v; her burst and rate allow %d", accepted.Load(), elapsed, max)
	}
	res, body := as(t, rootKey, "GET", base+"/metrics", "")
	if res.StatusCode != 200 || !strings.Contains(string(body), `arr_rate_limited_total{limit="submit"} `+strconv.FormatInt(limited.Load(), 10)) {
		t.Fatalf("/metrics does not count the %d refusals", limited.Load())
	}

	// Headers over 64 KiB (the default bound) but within net/http's slack.
	res, body = as(t, bobKey, "POST", base+"/v1/echo", "x", "Content-Type", "text/plain", "X-Pad", strings.Repeat("p", 65<<10))
	var prob struct{ Type string }
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || json.Unmarshal(body, &prob) != nil ||
		prob.Type != "urn:arr:problem:headers-too-large" {
		t.Fatalf("66 KiB of headers: %d %s, want a 431 problem", res.StatusCode, body)
	}
}

// Over its tenant's stored-bytes budget a key's submits are 507 problems
// with Retry-After while another key's are accepted, and so they stay
// after a restart: the count is taken again from the store.
func TestAbuseTenantStoredBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	keys, data, addr := writeKeys(t), t.TempDir(), freeAddr(t)
	args := []string{"-api-keys", keys, "-max-tenant-stored-bytes", "64KiB"}
	p := startArr(t, addr, data, args...)
	body := strings.Repeat("s", 10<<10)
	submit := func(key string) (*http.Response, []byte) {
		return as(t, key, "POST", "http://"+addr+"/v1/echo", body, "Content-Type", "text/plain")
	}
	n := 0
	for ; n < 20; n++ {
		res, b := submit(aliceKey)
		if res.StatusCode == 507 {
			if res.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "insufficient-storage") {
				t.Fatalf("507 without Retry-After or its problem: %v %s", res.Header, b)
			}
			break
		}
		if res.StatusCode != 202 {
			t.Fatalf("submit %d: %d %s", n, res.StatusCode, b)
		}
	}
	// Each operation keeps ~20 KiB (body and echoed result): 64 KiB takes
	// three or four, depending on how many results were in when checked.
	if n < 3 || n > 6 {
		t.Fatalf("alice's tenant took %d operations of ~20 KiB in 64 KiB", n)
	}
	if res, b := submit(bobKey); res.StatusCode != 202 {
		t.Fatalf("bob, another tenant: %d %s", res.StatusCode, b)
	}
	p.stop(t)
	p = startArr(t, addr, data, args...)
	defer p.stop(t)
	// The count from the store runs as the server starts; a submit that
	// came before it finished would be checked against what the process
	// had seen (one at most here, and only on a slow machine).
	for i := 0; ; i++ {
		res, b := submit(aliceKey)
		if res.StatusCode == 507 {
			break
		}
		if res.StatusCode != 202 || i == 1 {
			t.Fatalf("after a restart, alice's tenant over its budget: %d %s", res.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postAs posts a one-byte text body to url with key's credentials, for
// goroutines (no t.Fatal).
func postAs(key, url string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader("x"))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/plain")
	return laDo(req)
}
