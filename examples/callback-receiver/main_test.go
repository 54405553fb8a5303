package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/webhook"
)

// TestReceiver builds the program, runs it as a process, and sends it one
// signed callback, one signed with another secret and one whose body was
// changed after signing: the first is answered -status and recorded, the
// others are answered 401, logged and not recorded.
func TestReceiver(t *testing.T) {
	bin := build(t)
	oldSecret, newSecret := webhook.NewSecret(), webhook.NewSecret()
	out := filepath.Join(t.TempDir(), "events.jsonl")
	p := start(t, exec.Command(bin, "-secret", oldSecret+","+newSecret, "-out", out, "-status", "202"))

	body := event(t, "cb_1")
	key, _ := webhook.ParseSecret(newSecret)
	if code := post(t, p.url, body, body, key); code != http.StatusAccepted {
		t.Fatalf("a signed callback got %d, want 202", code)
	}
	forger, _ := webhook.ParseSecret(webhook.NewSecret())
	if code := post(t, p.url, event(t, "cb_2"), event(t, "cb_2"), forger); code != http.StatusUnauthorized {
		t.Fatalf("a forged callback got %d, want 401", code)
	}
	if code := post(t, p.url, event(t, "cb_3"), bytes.Replace(event(t, "cb_3"), []byte("succeeded"), []byte("failed"), 1), key); code != http.StatusUnauthorized {
		t.Fatalf("a tampered callback got %d, want 401", code)
	}
	stderr := p.stop(t)

	lines := readLines(t, out)
	if len(lines) != 1 {
		t.Fatalf("recorded %d events, want 1: %q", len(lines), lines)
	}
	var rec struct {
		WebhookID, Type, Subject string
		Event                    webhook.Event
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.WebhookID != "cb_1" || rec.Type != "dev.arr.operation.succeeded" || rec.Subject != "op_7" || rec.Event.ID != "cb_1" || string(rec.Event.Data) != `{"id":"op_7","status":"succeeded"}` {
		t.Fatalf("recorded %s", lines[0])
	}
	if n := strings.Count(stderr, "refused"); n != 2 {
		t.Fatalf("stderr has %d refusals, want 2:\n%s", n, stderr)
	}
}

// TestReceiverEnvAndStdout: the secret from CALLBACK_SECRET, the events on
// stdout after the listening line, the default status 204.
func TestReceiverEnvAndStdout(t *testing.T) {
	bin := build(t)
	secret := webhook.NewSecret()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CALLBACK_SECRET="+secret)
	p := start(t, cmd)
	key, _ := webhook.ParseSecret(secret)
	body := event(t, "cb_env")
	if code := post(t, p.url, body, body, key); code != http.StatusNoContent {
		t.Fatalf("a signed callback got %d, want 204", code)
	}
	p.stop(t)
	line, err := p.stdout.ReadString('\n')
	if err != nil || !strings.Contains(line, `"webhookId":"cb_env"`) {
		t.Fatalf("stdout after the listening line: %q, %v", line, err)
	}
}

func TestReceiverNeedsASecret(t *testing.T) {
	cmd := exec.Command(build(t))
	cmd.Env = append(os.Environ(), "CALLBACK_SECRET=")
	if err := cmd.Run(); err == nil {
		t.Fatal("it ran without a secret")
	}
	if err := exec.Command(build(t), "-secret", "not-a-secret").Run(); err == nil {
		t.Fatal("it ran with a bad secret")
	}
}

var built string

// build compiles the program once per test run.
func build(t *testing.T) string {
	t.Helper()
	if built != "" {
		return built
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "callback-receiver")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "callback-receiver")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	built = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

type process struct {
	cmd    *exec.Cmd
	url    string
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

// start runs cmd and waits for its "listening on" line.
func start(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	cmd.Args = append(cmd.Args, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdout: bufio.NewReader(stdout), stderr: new(bytes.Buffer)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	first := make(chan string, 1)
	go func() {
		line, _ := p.stdout.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok {
			t.Fatalf("first line %q; stderr: %s", line, p.stderr)
		}
		p.url = "http://" + addr + "/callbacks"
	case <-time.After(10 * time.Second):
		t.Fatal("no listening line within 10 s")
	}
	return p
}

// stop interrupts the process, waits for it to exit cleanly, and returns
// its stderr.
func (p *process) stop(t *testing.T) string {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(p.stdout) // before Wait, which closes the pipe
	p.stdout = bufio.NewReader(bytes.NewReader(rest))
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, p.stderr)
	}
	return p.stderr.String()
}

// event is a CloudEvent as arr sends it.
func event(t *testing.T, id string) []byte {
	b, err := webhook.Event{
		ID:      id,
		Source:  "https://arr.example/v1/operations",
		Type:    "dev.arr.operation.succeeded",
		Subject: "op_7",
		Time:    time.Now(),
		Data:    json.RawMessage(`{"id":"op_7","status":"succeeded"}`),
	}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body with the headers of signed, signed with key.
func post(t *testing.T, url string, signed, body, key []byte) int {
	t.Helper()
	var ev webhook.Event
	json.Unmarshal(signed, &ev)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", webhook.ContentType)
	webhook.SetHeaders(req.Header, ev.ID, time.Now(), signed, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readLines(t *testing.T, name string) []string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
