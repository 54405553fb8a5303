package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildReceiver builds examples/callback-receiver once per test binary:
// the receiver the docs show, run as a real process.
var buildReceiver = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "arr-receiver-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "callback-receiver")
	out, err := exec.Command("go", "build", "-o", bin, "../../examples/callback-receiver").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// receiverProcess is a running callback-receiver.
type receiverProcess struct {
	cmd *exec.Cmd
	out string // its JSON lines of verified events
	log *syncBuffer
}

// startReceiver starts the receiver on addr, verifying with secrets.
func startReceiver(t *testing.T, addr, out string, secrets ...string) *receiverProcess {
	t.Helper()
	bin, err := buildReceiver()
	if err != nil {
		t.Fatal(err)
	}
	r := &receiverProcess{out: out, log: &syncBuffer{}}
	r.cmd = exec.Command(bin, "-addr", addr, "-out", out, "-secret", strings.Join(secrets, ","))
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not listen on %s\n%s", addr, r.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *receiverProcess) kill(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// receivedEvent is one line the receiver wrote.
type receivedEvent struct {
	WebhookID string `json:"webhookId"`
	Type      string `json:"type"`
	Subject   string `json:"subject"`
	Event     struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
	} `json:"event"`
}

// events reads the receiver's verified events.
func (r *receiverProcess) events(t *testing.T) []receivedEvent {
	t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []receivedEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e receivedEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("receiver line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// waitEvents waits until the receivers together hold an event of every
// subject in want (operation ids) and target path, and returns them by
// subject.
func waitEvents(t *testing.T, within time.Duration, r *receiverProcess, want map[string]int) map[string][]receivedEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		by := map[string][]receivedEvent{}
		for _, e := range r.events(t) {
			by[e.Subject] = append(by[e.Subject], e)
		}
		done := true
		for id, n := range want {
			if len(by[id]) < n {
				done = false
			}
		}
		if done {
			return by
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for callbacks %v; the receiver has %d events\n%s", want, len(r.events(t)), r.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// callbackConfig writes a config file: the hooks route calls the
// receiver's /route back, and requests may name any target (*), while
// only the receiver's exact address may be a loopback one.
func callbackConfig(t *testing.T, receiver string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "arr.yaml")
	cfg := `server:
  callbacks:
    allow: ["*", "` + receiver + `"]
    minBackoff: 200ms
    maxBackoff: 1s
    timeout: 2s
routes:
  - path: /v1/hooks
    name: hooks
    handler: echo
    callbacks:
      targets:
        - url: http://` + receiver + `/route
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secret reads a callback secret with key's credentials.
func secret(t *testing.T, key, url string) string {
	t.Helper()
	res, body := as(t, key, "GET", url, "")
	if res.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", url, res.StatusCode, body)
	}
	var v struct {
		Secrets []struct {
			Secret string `json:"secret"`
		} `json:"secrets"`
	}
	if err := json.Unmarshal(body, &v); err != nil || len(v.Secrets) == 0 || !strings.HasPrefix(v.Secrets[0].Secret, "whsec_") {
		t.Fatalf("GET %s = %s: %v", url, body, err)
	}
	return v.Secrets[0].Secret
}

// Callbacks against a real arr serve and a real receiver process that
// verifies every signature, on every engine: the route's target and the
// request's X-Callback-Url are both called back, signed; a receiver that
// is down gets every callback once it is back, even across a kill -9 of
// arr while they were owed; loopback, link-local and metadata targets are
// refused unless allow-listed.
func TestCallbacks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, eng := range storeEngines {
		t.Run(eng.name, func(t *testing.T) {
			recvAddr := freeAddr(t)
			args := append([]string{"-api-keys", writeKeys(t), "-config", callbackConfig(t, recvAddr)}, eng.flags(t)...)
			addr, data := freeAddr(t), t.TempDir()
			p := startArr(t, addr, data, args...)
			base := "http://" + addr
			routeSecret := secret(t, rootKey, base+"/v1/callbacks/secret?route=hooks")
			aliceSecret := secret(t, aliceKey, base+"/v1/callbacks/secret")
			if routeSecret == aliceSecret {
				t.Fatal("the route and alice sign with the same secret")
			}
			if res, body := as(t, aliceKey, "GET", base+"/v1/callbacks/secret?route=hooks", ""); res.StatusCode != 403 {
				t.Fatalf("alice reading the route's secret = %d %s, want 403", res.StatusCode, body)
			}
			out := filepath.Join(t.TempDir(), "events.jsonl")
			recv := startReceiver(t, recvAddr, out, routeSecret, aliceSecret)

			submit := func(hdr ...string) string {
				t.Helper()
				res, body := as(t, aliceKey, "POST", base+"/v1/hooks", `{"n":1}`, append([]string{"Content-Type", "application/json"}, hdr...)...)
				if res.StatusCode != 202 {
					t.Fatalf("submit = %d %s", res.StatusCode, body)
				}
				var v struct{ ID string }
				_ = json.Unmarshal(body, &v)
				return v.ID
			}

			// Both targets called back, each signed with its own secret.
			id := submit("X-Callback-Url", "http://"+recvAddr+"/alice")
			by := waitEvents(t, 20*time.Second, recv, map[string]int{id: 2})
			for _, e := range by[id] {
				if e.Type != "arr.operation.succeeded" || e.WebhookID == "" || e.WebhookID != e.Event.ID {
					t.Fatalf("event %+v", e)
				}
				var op struct{ ID, Status string }
				if err := json.Unmarshal(e.Event.Data, &op); err != nil || op.ID != id || op.Status != "succeeded" {
					t.Fatalf("event data %s: %v", e.Event.Data, err)
				}
			}
			waitCallbacks(t, base, id, 2, "delivered")

			// Refused targets: named by the request (allowed by "*"),
			// but loopback, link-local or the metadata address, which
			// no exact entry exempts.
			var refused []string
			for _, target := range []string{"http://127.0.0.1:9/x", "http://[::1]:9/x", "http://169.254.169.254/latest/meta-data/",
				"http://localhost:9/x"} {
				refused = append(refused, submit("X-Callback-Url", target))
			}
			for _, rid := range refused {
				cbs := waitCallbacks(t, base, rid, 2, "")
				var request map[string]any
				for _, cb := range cbs {
					if cb["url"] != "http://"+recvAddr+"/route" {
						request = cb
					}
				}
				if request == nil || request["state"] != "failed" || request["lastStatus"] != nil {
					t.Fatalf("callback to a refused target: %v", cbs)
				}
			}
			// A target the allow-list does not name at all: 400.
			res, body := as(t, aliceKey, "POST", base+"/v1/hooks", `{}`, "Content-Type", "application/json", "X-Callback-Url", "ftp://"+recvAddr+"/x")
			if res.StatusCode != 400 || !strings.Contains(string(body), "invalid-callback") {
				t.Fatalf("an ftp callback URL = %d %s, want 400", res.StatusCode, body)
			}

			// The receiver goes down; operations finish meanwhile; arr is
			// killed -9 while their callbacks are owed and restarted;
			// the receiver comes back and gets every one.
			recv.kill(t)
			var owed []string
			for range 5 {
				owed = append(owed, submit("X-Callback-Url", "http://"+recvAddr+"/alice"))
			}
			for _, oid := range owed {
				waitFinished(t, base, oid)
			}
			time.Sleep(1500 * time.Millisecond) // attempts fail against the closed port
			p.kill9(t)
			p = startArr(t, addr, data, args...)
			defer p.stop(t)
			recv = startReceiver(t, recvAddr, out, routeSecret, aliceSecret)
			want := map[string]int{}
			for _, oid := range owed {
				want[oid] = 2
			}
			waitEvents(t, 30*time.Second, recv, want)
			for _, oid := range owed {
				waitCallbacks(t, base, oid, 2, "delivered")
			}
			if strings.Contains(recv.log.String(), "refused") {
				t.Fatalf("the receiver rejected a callback:\n%s", recv.log)
			}
		})
	}
}

// waitFinished waits until the operation is terminal.
func waitFinished(t *testing.T, base, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := as(t, aliceKey, "GET", base+"/v1/operations/"+id+"?redirect=false", "")
		var op struct{ Status string }
		_ = json.Unmarshal(body, &op)
		if op.Status == "succeeded" || op.Status == "failed" || op.Status == "canceled" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s did not finish: %s", id, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCallbacks waits until the operation shows n callbacks, all in
// state (any state but pending when state is ""), and returns them.
func waitCallbacks(t *testing.T, base, id string, n int, state string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, body := as(t, aliceKey, "GET", base+"/v1/operations/"+id+"?redirect=false", "")
		var op struct {
			Callbacks []map[string]any `json:"callbacks"`
		}
		_ = json.Unmarshal(body, &op)
		ok := res.StatusCode == 200 && len(op.Callbacks) == n
		for _, cb := range op.Callbacks {
			if state != "" && cb["state"] != state || state == "" && cb["state"] == "pending" {
				ok = false
			}
		}
		if ok {
			return op.Callbacks
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s: callbacks %s, want %d %q", id, body, n, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
