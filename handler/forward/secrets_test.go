package forward

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/worker"
)

// An upstream's Set-Cookie is not kept in the result unless the route asks.
func TestSetCookieDropped(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "session=s3cret; HttpOnly")
		w.Header().Add("Set-Cookie2", "old=1")
		w.Header().Set("X-Other", "kept")
		w.Write([]byte("ok"))
	})
	for _, keep := range []bool{false, true} {
		h := newHandler(t, Config{URL: srv.URL, KeepSetCookie: keep})
		res, _, err := process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Header.Get("X-Other") != "kept" {
			t.Errorf("KeepSetCookie %v: X-Other lost: %v", keep, res.Header)
		}
		if got := res.Header.Get("Set-Cookie") != "" && res.Header.Get("Set-Cookie2") != ""; got != keep {
			t.Errorf("KeepSetCookie %v: result header %v", keep, res.Header)
		}
	}
}

// An unreachable upstream's problem names no host or address; the log has
// the error.
func TestUnreachableDetailIsScrubbed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logBuf bytes.Buffer
	h := newHandler(t, Config{URL: "http://" + addr + "/internal", Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	_, _, err = process(t, t.Context(), h, &operation.Request{Method: "GET", Path: "/"})
	var p *operation.Problem
	if !errors.As(err, &p) || p.Type != ProblemUpstreamUnreachable {
		t.Fatalf("error %v, want a %s problem", err, ProblemUpstreamUnreachable)
	}
	_, port, _ := net.SplitHostPort(addr)
	if p.Detail != "the upstream could not be reached" || strings.Contains(p.Error(), port) || strings.Contains(p.Error(), "127.0.0.1") {
		t.Errorf("problem %q: says more than that the upstream could not be reached", p.Error())
	}
	if !strings.Contains(logBuf.String(), addr) {
		t.Errorf("the log does not have the dial error: %s", logBuf.String())
	}
}

// sealed returns a stored request whose credentials are sealed by c for
// the test task's operation.
func sealedRequest(t *testing.T, c *arr.Credentials, id string, creds http.Header) *operation.Request {
	t.Helper()
	v, err := c.Seal(t.Context(), id, creds)
	if err != nil {
		t.Fatal(err)
	}
	return &operation.Request{Method: "GET", Path: "/", Header: http.Header{"Accept": {"text/plain"}, arr.SealedHeader: {v}}}
}

// Sealed credentials are opened and sent upstream, the sealed entry is
// not; after a rotation the old seals still open; a tampered one, or one
// with no Credentials to open it, fails the attempt for good with a
// problem.
func TestSealedCredentialsForwarded(t *testing.T) {
	srv, got := recorder(t, nil)
	keys := urlsign.NewMemKeys()
	creds := arr.NewCredentials(keys)
	h := newHandler(t, Config{URL: srv.URL, Credentials: creds})
	id := task(nil).ID
	req := sealedRequest(t, creds, id, http.Header{"Authorization": {"Bearer alice"}, "Cookie": {"a=1", "b=2"}})
	if strings.Contains(req.Header.Get(arr.SealedHeader), "alice") {
		t.Fatal("the sealed value holds the credential in clear")
	}
	check := func(what string) {
		t.Helper()
		if _, _, err := process(t, t.Context(), h, req); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		r := <-got
		if r.header.Get("Authorization") != "Bearer alice" || strings.Join(r.header.Values("Cookie"), "; ") != "a=1; b=2" ||
			r.header.Get("Accept") != "text/plain" {
			t.Errorf("%s: upstream got %v", what, r.header)
		}
		for k := range r.header {
			if strings.Contains(strings.ToLower(k), "arr-credentials") {
				t.Errorf("%s: the sealed entry reached the upstream as %s", what, k)
			}
		}
	}
	check("sealed with the first key")

	// Rotate: new seals use the new key, old ones still open, also in a
	// process that loaded the keyring before the rotation (h).
	if _, _, err := urlsign.RotateKeys(t.Context(), keys, time.Now(), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	check("sealed before the rotation")
	other := arr.NewCredentials(keys)
	req2 := sealedRequest(t, other, id, http.Header{"Authorization": {"Bearer alice"}})
	kid1 := strings.Split(req.Header.Get(arr.SealedHeader), ".")[1]
	if kid2 := strings.Split(req2.Header.Get(arr.SealedHeader), ".")[1]; kid1 == kid2 {
		t.Errorf("after the rotation the key %s still seals", kid1)
	}
	if _, _, err := process(t, t.Context(), h, req2); err != nil {
		t.Fatalf("sealed with the new key by another process: %v", err)
	}
	if r := <-got; r.header.Get("Authorization") != "Bearer alice" {
		t.Errorf("sealed with the new key: upstream got %v", r.header)
	}

	unreadable := func(what string, h worker.Handler, req *operation.Request) {
		t.Helper()
		_, _, err := process(t, t.Context(), h, req)
		var p *operation.Problem
		if !worker.IsPermanent(err) || !errors.As(err, &p) || p.Type != ProblemCredentialsUnreadable || p.Status != 500 {
			t.Errorf("%s: error %v, want a permanent %s problem", what, err, ProblemCredentialsUnreadable)
		}
		select {
		case r := <-got:
			t.Errorf("%s: the upstream was called: %v", what, r.header)
		default:
		}
	}
	v := req.Header.Get(arr.SealedHeader)
	tampered := []byte(v)
	tampered[len(tampered)-5] ^= 'A' ^ 'B'
	if tampered[len(tampered)-5] == v[len(v)-5] {
		t.Fatal("not tampered")
	}
	for what, bad := range map[string]string{
		"tampered":        string(tampered),
		"malformed":       "v1.nokey",
		"unknown key":     "v1.0000000000000000." + strings.SplitN(v, ".", 3)[2],
		"not base64":      "v1." + kid1 + ".!!!",
		"another version": "v9." + strings.TrimPrefix(v, "v1."),
	} {
		unreadable(what, h, &operation.Request{Method: "GET", Path: "/", Header: http.Header{arr.SealedHeader: {bad}}})
	}
	// Moved to another operation.
	moved := *req
	_, err := h.Process(t.Context(), &worker.Task{ID: "another-operation", Attempt: 1, Request: &moved}, nil)
	var p *operation.Problem
	if !errors.As(err, &p) || p.Type != ProblemCredentialsUnreadable {
		t.Errorf("sealed credentials moved to another operation: %v", err)
	}
	select {
	case r := <-got:
		t.Errorf("sealed credentials moved to another operation: the upstream was called: %v", r.header)
	default:
	}
	unreadable("no Credentials", newHandler(t, Config{URL: srv.URL}), req)
}
