package api_test

import (
	"bufio"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

// openStream opens an event stream of id with Last-Event-ID lastID (if
// set), on a connection of its own.
func openStream(t *testing.T, s *testServer, id, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+"/v1/operations/"+id+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// nextEvent reads the next event's id and data, or ok false at the end.
func nextEvent(sc *bufio.Scanner) (id, data string, ok bool) {
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" && data != "":
			return id, data, true
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	return "", "", false
}

// SSE streams beyond the process cap, and beyond a principal's, are 503
// with Retry-After and ProblemTooManyStreams; a closed stream frees its
// place.
func TestSSECaps(t *testing.T) {
	for _, c := range []struct {
		name       string
		total, per int
	}{{"process", 2, -1}, {"principal", -1, 2}} {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, server.Config{Workers: -1, API: api.Config{MaxStreams: c.total, MaxStreamsPerPrincipal: c.per}})
			id := s.submit("x")
			a, b := openStream(t, s, id, ""), openStream(t, s, id, "")
			defer b.Body.Close()
			if a.StatusCode != 200 || b.StatusCode != 200 {
				t.Fatalf("streams within the cap: %d %d", a.StatusCode, b.StatusCode)
			}
			r := s.get("/v1/operations/" + id + "/events")
			wantProblem(t, r, 503, api.ProblemTooManyStreams)
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			a.Body.Close()
			for deadline := time.Now().Add(5 * time.Second); ; {
				res := openStream(t, s, id, "")
				res.Body.Close()
				if res.StatusCode == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a closed stream's place was not freed: %d", res.StatusCode)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// Long-polls beyond the cap are 503 on the monitor and the seed's
// Synchronous status; a submit asking to wait gets its 202 at once.
func TestLongPollCap(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{MaxLongPolls: 1}})
	id := s.submit("x")
	done := make(chan *response, 1)
	go func() { done <- s.get("/v1/operations/" + id + "?wait=20s") }()
	// Wait until the first long-poll holds the place.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(string(s.get("/metrics").Body), `arr_streams_open{kind="long_poll"} 1`); {
		if time.Now().After(deadline) {
			t.Fatal("the long-poll is not counted in arr_streams_open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := s.get("/v1/operations/" + id + "?wait=1s")
	wantProblem(t, r, 503, api.ProblemTooManyStreams)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	wantProblem(t, s.get("/api/RequestStatus/"+id+"?OnPending=Synchronous"), 503, api.ProblemTooManyStreams)
	// Without a wait, the monitor answers as ever.
	wantStatus(t, s.get("/v1/operations/"+id), 200)
	began := time.Now()
	sub := s.do("POST", "/v1/echo", "y", "Prefer", "wait=10")
	wantStatus(t, sub, 202)
	if time.Since(began) > 5*time.Second || sub.Header.Get("Preference-Applied") != "" {
		t.Fatalf("submit over the cap waited %s, Preference-Applied %q", time.Since(began), sub.Header.Get("Preference-Applied"))
	}
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	if r := <-done; r.StatusCode != 200 || !strings.Contains(string(r.Body), `"canceled"`) {
		t.Fatalf("long-poll: %d %s", r.StatusCode, r.Body)
	}
}

// A stream ends after StreamLifetime having said retry:; resumed with
// Last-Event-ID it sends only what changed since, the terminal event
// included, and resumed past the terminal event it is 204.
func TestSSEResume(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{StreamLifetime: 500 * time.Millisecond, StreamRetry: 1500 * time.Millisecond}})
	id := s.submit("x")
	res := openStream(t, s, id, "")
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || sc.Text() != "retry: 1500" {
		t.Fatalf("first line %q, want retry: 1500", sc.Text())
	}
	first, data, ok := nextEvent(sc)
	if !ok || !strings.Contains(data, `"pending"`) {
		t.Fatalf("first event %q %q", first, data)
	}
	begun := time.Now()
	if _, _, ok := nextEvent(sc); ok {
		t.Fatal("a second event for an unchanged operation")
	}
	if d := time.Since(begun); d > 5*time.Second {
		t.Fatalf("stream outlived its lifetime: %s", d)
	}
	res.Body.Close()

	res = openStream(t, s, id, first)
	defer res.Body.Close()
	sc = bufio.NewScanner(res.Body)
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	last, data, ok := nextEvent(sc)
	if !ok || last == first || !strings.Contains(data, `"canceled"`) {
		t.Fatalf("resumed stream: %q %q %v", last, data, ok)
	}
	if _, _, ok := nextEvent(sc); ok {
		t.Fatal("an event after the terminal one")
	}
	r := openStream(t, s, id, last)
	r.Body.Close()
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("resumed past the terminal event: %d, want 204", r.StatusCode)
	}
}

// An SSE stream idle for several times the write grace is not cut off:
// the minimum write rate counts only time spent writing.
func TestSSEIdleBeyondWriteGrace(t *testing.T) {
	s := start(t, server.Config{Workers: -1, Conns: server.ConnConfig{MinWriteRate: 1000, WriteRateGrace: 200 * time.Millisecond}})
	id := s.submit("x")
	res := openStream(t, s, id, "")
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	if _, _, ok := nextEvent(sc); !ok {
		t.Fatal("no first event")
	}
	time.Sleep(time.Second) // five graces
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	if _, data, ok := nextEvent(sc); !ok || !strings.Contains(data, `"canceled"`) {
		t.Fatalf("after a second idle: %q %v", data, ok)
	}
}

// Anonymous clients behind a trusted proxy are capped each by their own
// address, as the rate limits count them, not all together by the
// proxy's.
func TestStreamCapPerForwardedClient(t *testing.T) {
	s := start(t, server.Config{Workers: -1, API: api.Config{MaxLongPollsPerPrincipal: 1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}})
	id := s.submit("x")
	done := make(chan *response, 1)
	go func() { done <- s.do("GET", "/v1/operations/"+id+"?wait=20s", "", "X-Forwarded-For", "203.0.113.1") }()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(string(s.get("/metrics").Body), `arr_streams_open{kind="long_poll"} 1`); {
		if time.Now().After(deadline) {
			t.Fatal("the long-poll is not counted in arr_streams_open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantProblem(t, s.do("GET", "/v1/operations/"+id+"?wait=1s", "", "X-Forwarded-For", "203.0.113.1"), 503, api.ProblemTooManyStreams)
	wantStatus(t, s.do("GET", "/v1/operations/"+id+"?wait=1s", "", "X-Forwarded-For", "203.0.113.2"), 200)
	wantStatus(t, s.do("DELETE", "/v1/operations/"+id, ""), 200)
	if r := <-done; r.StatusCode != 200 {
		t.Fatalf("long-poll: %d %s", r.StatusCode, r.Body)
	}
}
