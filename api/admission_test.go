package api_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/auth"
	"github.com/arrhq/arr/internal/trustedproxy"
	"github.com/arrhq/arr/server"
)

// slow is a rate that does not refill a token during a test: the burst is
// all a client gets.
const slow = 0.001

// userAuth authenticates "X-Test-User: name[/tenant]" as that principal,
// "admin" as an admin, and no header as the anonymous caller.
var userAuth = auth.AuthenticatorFunc(func(r *http.Request) (arr.Caller, error) {
	u := r.Header.Get("X-Test-User")
	if u == "" {
		return arr.Caller{Principal: arr.Anonymous}, nil
	}
	name, tenant, _ := strings.Cut(u, "/")
	return arr.Caller{Principal: name, Tenant: tenant, Admin: name == "admin"}, nil
})

func startLimited(t *testing.T, submit, read api.RateLimit, trusted string) *testServer {
	t.Helper()
	tp, err := trustedproxy.Parse(trusted)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Auth: userAuth, Admission: server.AdmissionConfig{RateLimits: api.RateLimits{Submit: submit, Read: read}}}
	cfg.API.TrustedProxies = tp
	return start(t, cfg)
}

func (s *testServer) echo(hdr ...string) *response {
	return s.do("POST", "/v1/echo", "x", append([]string{"Content-Type", "text/plain"}, hdr...)...)
}

// A client's submits beyond its burst are 429 problems with Retry-After;
// every limited answer carries RateLimit-Policy and RateLimit (draft-10
// form), the remaining count going down to 0. The probes are not limited.
func TestRateLimit429(t *testing.T) {
	s := startLimited(t, api.RateLimit{Rate: slow, Burst: 3}, api.RateLimit{}, "")
	for i := range 3 {
		r := s.echo()
		wantStatus(t, r, 202)
		if p := r.Header.Get("RateLimit-Policy"); !strings.HasPrefix(p, `"submit";q=3;w=`) {
			t.Fatalf("RateLimit-Policy %q", p)
		}
		if got, want := r.Header.Get("RateLimit"), `"submit";r=`+strconv.Itoa(2-i)+";t="; !strings.HasPrefix(got, want) {
			t.Fatalf("submit %d: RateLimit %q, want %s…", i, got, want)
		}
	}
	r := s.echo()
	wantProblem(t, r, http.StatusTooManyRequests, api.ProblemRateLimited)
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, `"submit";r=0;t=`) {
		t.Fatalf("RateLimit %q on the 429", got)
	}
	if n := s.count(); n != 3 {
		t.Fatalf("%d operations stored, want 3: a refused submit stores nothing", n)
	}
	for range 5 {
		r := s.get("/healthz")
		wantStatus(t, r, 200)
		if r.Header.Get("RateLimit") != "" {
			t.Fatal("/healthz carries RateLimit: it is not limited")
		}
	}
	if m := s.get("/metrics"); !strings.Contains(string(m.Body), `arr_rate_limited_total{limit="submit"} 1`) {
		t.Fatalf("/metrics lacks arr_rate_limited_total{limit=\"submit\"} 1")
	}
}

// Reads have a budget of their own: a client out of submits still reads,
// and one out of reads still submits.
func TestRateLimitReadBudget(t *testing.T) {
	s := startLimited(t, api.RateLimit{Rate: slow, Burst: 1}, api.RateLimit{Rate: slow, Burst: 2}, "")
	id := s.echo().JSON(t)["id"].(string)
	wantProblem(t, s.echo(), 429, api.ProblemRateLimited)
	for range 2 {
		r := s.get("/v1/operations/" + id + "?redirect=false")
		wantStatus(t, r, 200)
		if !strings.HasPrefix(r.Header.Get("RateLimit-Policy"), `"read";q=2;`) {
			t.Fatalf("RateLimit-Policy %q on a read", r.Header.Get("RateLimit-Policy"))
		}
	}
	wantProblem(t, s.get("/v1/operations/"+id), 429, api.ProblemRateLimited)
	wantProblem(t, s.get("/v1/no-such-route"), 429, api.ProblemRateLimited)
}

// Each principal has its own bucket: bob over his limit does not limit
// alice; admins are not limited.
func TestRateLimitPerPrincipal(t *testing.T) {
	s := startLimited(t, api.RateLimit{Rate: slow, Burst: 2}, api.RateLimit{}, "")
	bob, alice := []string{"X-Test-User", "bob"}, []string{"X-Test-User", "alice"}
	wantStatus(t, s.echo(bob...), 202)
	wantStatus(t, s.echo(bob...), 202)
	wantProblem(t, s.echo(bob...), 429, api.ProblemRateLimited)
	wantStatus(t, s.echo(alice...), 202)
	wantStatus(t, s.echo(alice...), 202)
	wantProblem(t, s.echo(alice...), 429, api.ProblemRateLimited)
	wantProblem(t, s.echo(bob...), 429, api.ProblemRateLimited)
	for range 5 {
		r := s.echo("X-Test-User", "admin")
		wantStatus(t, r, 202)
		if r.Header.Get("RateLimit") != "" {
			t.Fatal("an admin's answer carries RateLimit")
		}
	}
}

// Anonymous callers are limited by client address: the direct peer, or
// behind a trusted proxy the address it forwards; an IPv6 client by its
// /64. A forwarding header from an untrusted peer is not believed.
func TestRateLimitAnonymousByAddress(t *testing.T) {
	s := startLimited(t, api.RateLimit{Rate: slow, Burst: 1}, api.RateLimit{}, "127.0.0.1")
	from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }
	wantStatus(t, s.echo(from("203.0.113.1")...), 202)
	wantProblem(t, s.echo(from("203.0.113.1")...), 429, api.ProblemRateLimited)
	wantStatus(t, s.echo(from("203.0.113.2")...), 202)
	// A client-written hop before the proxy's is not believed: the last
	// address is the client.
	wantProblem(t, s.echo(from("198.51.100.7, 203.0.113.2")...), 429, api.ProblemRateLimited)
	wantStatus(t, s.echo("Forwarded", `for="[2001:db8:1:2::1]:4711"`), 202)
	wantProblem(t, s.echo("Forwarded", `for="[2001:db8:1:2::ffff]"`), 429, api.ProblemRateLimited)
	wantStatus(t, s.echo("Forwarded", `for="[2001:db8:1:3::1]"`), 202)
	// The direct peer, 127.0.0.1, is a bucket of its own.
	wantStatus(t, s.echo(), 202)
	wantProblem(t, s.echo(), 429, api.ProblemRateLimited)

	u := startLimited(t, api.RateLimit{Rate: slow, Burst: 1}, api.RateLimit{}, "")
	wantStatus(t, u.echo(from("203.0.113.1")...), 202)
	wantProblem(t, u.echo(from("203.0.113.2")...), 429, api.ProblemRateLimited) // both are 127.0.0.1
}

// A header block over the bound that net/http lets through (it allows
// 4096 bytes of slack) is the api's 431 problem; one within is served.
func TestHeadersTooLarge(t *testing.T) {
	s := start(t, server.Config{Admission: server.AdmissionConfig{MaxHeaderBytes: 16 << 10}})
	wantStatus(t, s.echo("X-Pad", strings.Repeat("a", 15<<10)), 202)
	r := s.echo("X-Pad", strings.Repeat("a", 16<<10+100))
	wantProblem(t, r, http.StatusRequestHeaderFieldsTooLarge, api.ProblemHeadersTooLarge)
	if n := s.count(); n != 1 {
		t.Fatalf("%d operations stored, want 1", n)
	}
	// Beyond net/http's slack, net/http answers 431 itself.
	req, _ := http.NewRequest("POST", s.URL+"/v1/echo", strings.NewReader("x"))
	req.Header.Set("X-Pad", strings.Repeat("a", 24<<10))
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || res.Header.Get("Content-Type") == "application/problem+json" {
		t.Fatalf("24 KiB of headers: %d %s, want net/http's own 431 (the server's MaxHeaderBytes)", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// Over the stored-bytes budget, submits are 507 problems with Retry-After;
// per tenant, one tenant's spent budget does not refuse another's.
func TestStoredBytesBudget507(t *testing.T) {
	cfg := server.Config{Auth: userAuth}
	// An operation keeps its 10,000-byte body twice (request and echoed
	// result), about 20 KB with its headers; a submit is checked with its
	// request only (about 10 KB). A tenant's 40 KiB takes two operations
	// and refuses a third; the total of 80 KiB takes four.
	cfg.Core.MaxTenantStoredBytes = 40 << 10
	cfg.Core.MaxStoredBytes = 80 << 10
	s := start(t, cfg)
	body := strings.Repeat("b", 10000)
	post := func(user string) *response {
		return s.do("POST", "/v1/echo", body, "Content-Type", "text/plain", "X-Test-User", user)
	}
	done := func(user string) {
		t.Helper()
		r := post(user)
		wantStatus(t, r, 202)
		id := r.JSON(t)["id"].(string)
		// A long-poll ends at the first change (running), so poll until
		// the operation has succeeded.
		for deadline := time.Now().Add(20 * time.Second); ; {
			r = s.get("/v1/operations/"+id+"?wait=5&redirect=false", "X-Test-User", user)
			st := r.JSON(t)["status"]
			if st == "succeeded" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %v, want succeeded", st)
			}
		}
	}
	done("bob/t1")
	done("bob/t1")
	r := post("bob/t1")
	wantProblem(t, r, http.StatusInsufficientStorage, api.ProblemStorageFull)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("507 without Retry-After")
	}
	if d, _ := r.JSON(t)["detail"].(string); !strings.Contains(d, "tenant") {
		t.Fatalf("detail %q does not say it is the tenant's budget", d)
	}
	// Another tenant has its own share, until the total is spent.
	done("carol/t2")
	done("carol/t2")
	r = post("dave/t3")
	wantProblem(t, r, http.StatusInsufficientStorage, api.ProblemStorageFull)
	if d, _ := r.JSON(t)["detail"].(string); strings.Contains(d, "tenant") {
		t.Fatalf("detail %q: it is the total budget that is spent", d)
	}
}

// Every reason of a StorageError has its answer: 507 for the disk and the
// budgets, 503 for a failing store.
func TestStorageErrorAnswers(t *testing.T) {
	for reason, code := range map[string]int{arr.StorageFull: 507, arr.StorageBudget: 507,
		arr.StorageTenantBudget: 507, arr.StorageUnavailable: 503} {
		rec := api.RecordStorageError(&arr.StorageError{Reason: reason, Err: errors.New("x")})
		if rec.Code != code || rec.Header().Get("Retry-After") == "" ||
			rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %v, want %d with Retry-After, a problem", reason, rec.Code, rec.Header(), code)
		}
	}
}
