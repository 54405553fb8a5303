package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Abuse of connections and streams (issue 14, docs/operations.md
// "Connections and streams") against a real arr serve, with small caps
// and short deadlines set by flags.

// submitClient is a keep-alive client of its own: a normal user of arr
// during an attack.
func submitClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// submitEcho submits body to /v1/echo and returns the operation's id.
func submitEcho(t *testing.T, hc *http.Client, base, body string) string {
	t.Helper()
	res, err := hc.Post(base+"/v1/echo", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	defer res.Body.Close()
	var op struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&op); err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %d %v", res.StatusCode, err)
	}
	return op.ID
}

// submitMedian is the median time of n submits.
func submitMedian(t *testing.T, hc *http.Client, base string, n int) time.Duration {
	t.Helper()
	var d []time.Duration
	for i := range n {
		start := time.Now()
		submitEcho(t, hc, base, fmt.Sprintf(`{"n":%d}`, i))
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[n/2]
}

// checkLatency fails t when the median submit under attack is over three
// times the idle one measured in the same run.
func checkLatency(t *testing.T, what string, idle, attack time.Duration) {
	t.Helper()
	t.Logf("%s: median submit %s idle, %s under attack", what, idle, attack)
	if attack > 3*idle {
		t.Errorf("%s: median submit %s under attack, over 3× the idle %s", what, attack, idle)
	}
}

// countOps is the number of operations arr holds.
func countOps(t *testing.T, base string) int {
	t.Helper()
	res, err := http.Get(base + "/v1/operations?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct{ Items []json.RawMessage }
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return len(page.Items)
}

// rawResponse reads one response from br (with its body).
func rawResponse(br *bufio.Reader) (*http.Response, []byte, error) {
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return res, b, err
}

// Hundreds of connections dribbling a body are cut off with 408 once
// below the minimum rate, nothing of them is stored, a normal submit
// meanwhile keeps its latency, and connections beyond the cap get a quick
// 503 with Retry-After while the open ones never exceed it.
func TestAbuseSlowSendersCutOffAndCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	const senders, maxConns, extra = 200, 260, 100
	addr, admin := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	proc := startArr(t, addr, t.TempDir(), "-max-conns", fmt.Sprint(maxConns), "-admin-addr", admin,
		"-min-body-rate", "100", "-body-rate-grace", "4s", "-read-header-timeout", "3s")
	defer proc.stop(t)
	hc := submitClient()
	idle := submitMedian(t, hc, base, 15)
	submitted := 15

	type outcome struct {
		status int
		typ    string
		after  time.Duration
		err    error
	}
	results := make(chan outcome, senders)
	var conns []net.Conn
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range senders {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		start := time.Now()
		fmt.Fprintf(c, "POST /v1/echo HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", addr)
		wg.Add(1)
		go func() { // one byte every 400 ms: 2.5 bytes/s
			defer wg.Done()
			tick := time.NewTicker(400 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			res, body, err := rawResponse(bufio.NewReader(c))
			o := outcome{after: time.Since(start), err: err}
			if err == nil {
				o.status = res.StatusCode
				var p struct{ Type string }
				_ = json.Unmarshal(body, &p)
				o.typ = p.Type
			}
			results <- o
		}()
	}
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	time.Sleep(300 * time.Millisecond)
	attack := submitMedian(t, hc, base, 15)
	submitted += 15
	checkLatency(t, "slow senders", idle, attack)

	// Beyond the cap: a quick 503, and never more open than the cap.
	var refused, accepted int
	var extraConns []net.Conn
	for range extra {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		extraConns = append(extraConns, c)
	}
	mu.Lock()
	conns = append(conns, extraConns...)
	mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	open := metric(t, "http://"+admin, "arr_connections_open")
	var ansMu sync.Mutex
	var answered sync.WaitGroup
	for _, c := range extraConns {
		answered.Add(1)
		go func() {
			defer answered.Done()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			res, body, err := rawResponse(bufio.NewReader(c))
			ansMu.Lock()
			defer ansMu.Unlock()
			if err != nil {
				accepted++ // held open, waiting for a request
				return
			}
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
				!strings.Contains(string(body), "urn:arr:problem:too-many-connections") {
				t.Errorf("refused connection: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
			}
			refused++
		}()
	}
	answered.Wait()
	t.Logf("beyond the cap: %d refused, %d held; %v open", refused, accepted, open)
	// The normal client's idle connection may have been closed to make
	// room: at most maxConns-senders of the extra ones are held.
	if refused < extra-(maxConns-senders) || open > maxConns || open < maxConns-1 {
		t.Errorf("cap %d: %d of %d extra connections refused, %v open", maxConns, refused, extra, open)
	}
	if v := metric(t, "http://"+admin, "arr_connections_idle_closed_total"); v < 1 {
		t.Errorf("the normal client's idle connection was not closed first (arr_connections_idle_closed_total %v)", v)
	}

	// Every slow sender is cut off with 408 within the grace and a few
	// seconds, and nothing of theirs is stored.
	for range senders {
		o := <-results
		if o.err != nil || o.status != http.StatusRequestTimeout || o.typ != "urn:arr:problem:body-too-slow" {
			t.Errorf("slow sender: %d %q after %s: %v", o.status, o.typ, o.after, o.err)
			continue
		}
		if o.after > 15*time.Second {
			t.Errorf("slow sender cut off after %s", o.after)
		}
	}
	if n := countOps(t, base); n != submitted {
		t.Errorf("%d operations stored, want the %d normal submits only", n, submitted)
	}
	if v := metric(t, "http://"+admin, `arr_slow_transfers_total{direction="body"}`); v < senders {
		t.Errorf("arr_slow_transfers_total{direction=\"body\"} %v, want %d", v, senders)
	}
}

// metric reads one sample of /metrics (name with its labels, as printed).
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// openSSE opens an event stream; the response is 200 with the stream or
// a refusal.
func openSSE(t *testing.T, base, id, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/operations/"+id+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := (&http.Transport{}).RoundTrip(req) // a connection of its own
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// An SSE flood stops at the cap (503 + Retry-After beyond it), a normal
// submit meanwhile keeps its latency, and closed streams free their
// places.
func TestAbuseSSEFloodCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	const max, flood = 40, 50
	addr, admin := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	proc := startArr(t, addr, t.TempDir(), "-workers", "-1", "-admin-addr", admin,
		"-max-streams", fmt.Sprint(max), "-max-streams-per-principal", fmt.Sprint(max))
	defer proc.stop(t)
	hc := submitClient()
	idle := submitMedian(t, hc, base, 15)
	id := submitEcho(t, hc, base, `{"watch":1}`) // pending: no workers

	var open []*http.Response
	refused := 0
	for range flood {
		res := openSSE(t, base, id, "")
		switch res.StatusCode {
		case http.StatusOK:
			open = append(open, res)
		case http.StatusServiceUnavailable:
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "urn:arr:problem:too-many-streams") {
				t.Errorf("refused stream: Retry-After %q %s", res.Header.Get("Retry-After"), b)
			}
			refused++
		default:
			t.Fatalf("stream: %d", res.StatusCode)
		}
	}
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	if len(open) != max || refused != flood-max {
		t.Fatalf("%d streams open, %d refused; want %d and %d", len(open), refused, max, flood-max)
	}
	if v := metric(t, "http://"+admin, `arr_streams_open{kind="sse"}`); v != max {
		t.Errorf("arr_streams_open{kind=\"sse\"} %v, want %d", v, max)
	}
	checkLatency(t, "SSE flood", idle, submitMedian(t, hc, base, 15))

	// Closing streams frees their places.
	for _, r := range open[:5] {
		r.Body.Close()
	}
	open = open[5:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := openSSE(t, base, id, "")
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream after 5 closed: %d", res.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A long-poll flood stops at the cap (503 + Retry-After beyond it), a
// normal submit meanwhile keeps its latency, and the waits end when the
// operation does, freeing their places.
func TestAbuseLongPollFloodCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	const max, flood = 30, 40
	addr := freeAddr(t)
	base := "http://" + addr
	proc := startArr(t, addr, t.TempDir(), "-workers", "-1",
		"-max-long-polls", fmt.Sprint(max), "-max-long-polls-per-principal", fmt.Sprint(max))
	defer proc.stop(t)
	hc := submitClient()
	idle := submitMedian(t, hc, base, 15)
	id := submitEcho(t, hc, base, `{"poll":1}`)

	statuses := make(chan int, flood)
	for range flood {
		go func() {
			c := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
			res, err := c.Get(base + "/v1/operations/" + id + "?wait=25s")
			if err != nil {
				statuses <- -1
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusServiceUnavailable &&
				(res.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "urn:arr:problem:too-many-streams")) {
				t.Errorf("refused long-poll: Retry-After %q %s", res.Header.Get("Retry-After"), b)
			}
			statuses <- res.StatusCode
		}()
	}
	// The refusals come at once; the others wait.
	// expect takes n answers, each want, within 10 s.
	expect := func(n, want int, what string) {
		t.Helper()
		for range n {
			select {
			case st := <-statuses:
				if st != want {
					t.Fatalf("%s: %d, want %d", what, st, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no answer within 10 s", what)
			}
		}
	}
	expect(flood-max, http.StatusServiceUnavailable, "long-polls beyond the cap, at once")
	checkLatency(t, "long-poll flood", idle, submitMedian(t, hc, base, 15))
	// A submit asking to wait, over the cap, is answered 202 at once.
	req, _ := http.NewRequest("POST", base+"/v1/echo", strings.NewReader(`{}`))
	req.Header.Set("Prefer", "wait=20")
	start := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || time.Since(start) > 5*time.Second || res.Header.Get("Preference-Applied") != "" {
		t.Errorf("submit with Prefer: wait over the cap: %d after %s, Preference-Applied %q",
			res.StatusCode, time.Since(start), res.Header.Get("Preference-Applied"))
	}
	select {
	case st := <-statuses:
		t.Fatalf("a long-poll within the cap ended early: %d", st)
	default:
	}
	// Canceling the operation ends the waits.
	req, _ = http.NewRequest("DELETE", base+"/v1/operations/"+id, nil)
	if res, err := hc.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	expect(max, http.StatusOK, "long-polls within the cap, ended with their operation")
	// Their places are free again: a new long-poll waits (and is cut
	// short by its own small wait).
	id2 := submitEcho(t, hc, base, `{"poll":2}`)
	res, err = hc.Get(base + "/v1/operations/" + id2 + "?wait=1s")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Preference-Applied") != "wait=1" {
		t.Errorf("long-poll after the flood: %d, Preference-Applied %q", res.StatusCode, res.Header.Get("Preference-Applied"))
	}
}

// A request with both Content-Length and Transfer-Encoding is refused
// with 400 and its connection closed: the request smuggled in its body is
// never served, and nothing is stored.
func TestAbuseAmbiguousFramingRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	addr, admin := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	proc := startArr(t, addr, t.TempDir(), "-workers", "-1", "-admin-addr", admin)
	defer proc.stop(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// A normal request first: served as ever on the same connection.
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	smuggled := fmt.Sprintf("POST /v1/echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 2\r\n\r\n{}", addr)
	fmt.Fprintf(c, "POST /v1/echo HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s", addr, smuggled)
	br := bufio.NewReader(c)
	res, body, err := rawResponse(br)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res, body, err = rawResponse(br)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "urn:arr:problem:ambiguous-framing") || !res.Close {
		t.Fatalf("CL+TE: %d close=%v %s", res.StatusCode, res.Close, body)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the refusal: read %q, %v", n, err)
	}
	if n := countOps(t, base); n != 0 {
		t.Errorf("%d operations stored", n)
	}
	if v := metric(t, "http://"+admin, "arr_ambiguous_framing_total"); v != 1 {
		t.Errorf("arr_ambiguous_framing_total %v, want 1", v)
	}
}

// sseEvent is one event of a stream.
type sseEvent struct{ id, event, data string }

// readEvents reads a stream's events (and its retry: field) until it
// ends, sending each on a channel.
func readEvents(body io.Reader) (<-chan sseEvent, *string) {
	ch := make(chan sseEvent, 16)
	retry := new(string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.event != "" {
					ch <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "retry: "):
				*retry = line[len("retry: "):]
			case strings.HasPrefix(line, "id: "):
				e.id = line[len("id: "):]
			case strings.HasPrefix(line, "event: "):
				e.event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				e.data = line[len("data: "):]
			}
		}
	}()
	return ch, retry
}

// An SSE stream ends at its maximum lifetime; the client reconnects with
// Last-Event-ID, gets nothing it has, then the terminal event; a reconnect
// with the terminal event's id is 204 (an EventSource stops).
func TestSSELifetimeAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	addr := freeAddr(t)
	base := "http://" + addr
	proc := startArr(t, addr, t.TempDir(), "-workers", "-1", "-stream-lifetime", "2s")
	defer proc.stop(t)
	hc := submitClient()
	id := submitEcho(t, hc, base, `{"sse":1}`)

	start := time.Now()
	res := openSSE(t, base, id, "")
	events, retry := readEvents(res.Body)
	first, ok := <-events
	if !ok || first.event != "operation" || first.id == "" || !strings.Contains(first.data, `"pending"`) {
		t.Fatalf("first event: %+v", first)
	}
	if e, ok := <-events; ok {
		t.Fatalf("unexpected event %+v", e)
	}
	res.Body.Close()
	if d := time.Since(start); d < 1500*time.Millisecond || d > 6*time.Second {
		t.Fatalf("stream lasted %s, want its 2s lifetime", d)
	}
	if *retry == "" {
		t.Error("no retry: field")
	}

	// Resumed: nothing new until the operation changes, then the terminal
	// event, after which the stream ends.
	res = openSSE(t, base, id, first.id)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("resume: %d", res.StatusCode)
	}
	events, _ = readEvents(res.Body)
	time.Sleep(300 * time.Millisecond)
	req, _ := http.NewRequest("DELETE", base+"/v1/operations/"+id, nil)
	if r, err := hc.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	last, ok := <-events
	if !ok || last.id == first.id || !strings.Contains(last.data, `"canceled"`) {
		t.Fatalf("resumed stream: %+v (ok %v), want the canceled state", last, ok)
	}
	if e, ok := <-events; ok {
		t.Fatalf("event after the terminal one: %+v", e)
	}
	res.Body.Close()
	// Resumed past the terminal event: 204.
	res = openSSE(t, base, id, last.id)
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("resume after the terminal event: %d, want 204", res.StatusCode)
	}
	// Resumed from before it (the terminal event was lost): it comes again.
	res = openSSE(t, base, id, first.id)
	events, _ = readEvents(res.Body)
	if e, ok := <-events; !ok || e.id != last.id {
		t.Fatalf("resume from before the terminal event: %+v", e)
	}
	res.Body.Close()
}

// A client that does not read a large result is cut off once a write
// waits beyond the grace and the minimum rate (an SSE stream idle for
// longer is not: api's TestSSEIdleBeyondWriteGrace).
func TestAbuseSlowReaderCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real arr")
	}
	for _, results := range []string{"embedded", "file"} { // file: results are sent with sendfile
		t.Run(results, func(t *testing.T) { slowReaderCutOff(t, results) })
	}
}

func slowReaderCutOff(t *testing.T, results string) {
	addr, admin := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	data := t.TempDir()
	extra := []string{"-admin-addr", admin, "-max-body", fmt.Sprint(16 << 20), "-min-write-rate", "10000", "-write-rate-grace", "1s"}
	if results == "file" {
		extra = append(extra, "-results", "file:"+data+"/results")
	}
	proc := startArr(t, addr, data, extra...)
	defer proc.stop(t)
	hc := submitClient()
	big := `"` + strings.Repeat("x", 12<<20) + `"`
	id := submitEcho(t, hc, base, big)
	// Succeeded, not merely changed: a long-poll returns at the first
	// change (pending to running), and a result read then answers a
	// small 202 that no deadline cuts (a CI run on a loaded machine).
	waitOp(t, base, id, time.Minute, func(o opJSON) bool { return o.Status == "succeeded" })

	// A reader with a tiny receive window that reads nothing.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/operations/%s/result?redirect=false HTTP/1.1\r\nHost: %s\r\n\r\n", id, addr)
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, "http://"+admin, `arr_slow_transfers_total{direction="response"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("a reader that reads nothing was not cut off")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Its connection is closed: reading what was sent ends, short of the
	// result.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err == nil && n >= int64(len(big)) || isDeadline(err) {
		t.Fatalf("after the cut: read %d bytes, %v", n, err)
	}
	// A client that reads gets the whole result, sent under one write
	// deadline after another.
	res, err := hc.Get(base + "/v1/operations/" + id + "/result?redirect=false")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || string(got) != big {
		t.Fatalf("result read at full speed: %d of %d bytes, %v", len(got), len(big), err)
	}
}

func isDeadline(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
