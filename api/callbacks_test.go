package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/auth"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/webhook"
	"github.com/arrhq/arr/worker"
)

const (
	cbAlice = "alice-key-0123456789"
	cbBob   = "bob-key-0123456789ab"
	cbRoot  = "root-key-0123456789a"
)

// startCallbacks is a server with API keys (alice, bob, an admin), a
// route that calls back to a target with a token in its query, and
// requests allowed to name *.example.com.
func startCallbacks(t *testing.T) *testServer {
	t.Helper()
	set, _, err := auth.ParseKeys("keys", strings.NewReader("alice:"+cbAlice+"\nbob:"+cbBob+"\nroot:"+cbRoot+" role=admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	allow, err := webhook.ParseAllowList("*.example.com")
	if err != nil {
		t.Fatal(err)
	}
	mux := server.NewServeMux()
	// The route's target is on loopback, which nothing exempts: its
	// attempts are refused at once, so the test needs no network.
	mux.HandleRoute(server.Route{Pattern: "POST /v1/hooks", Name: "hooks", Handler: worker.Echo,
		Callbacks: []server.CallbackTarget{{URL: "http://127.0.0.1:9/hook?token=s3cret"}}})
	return start(t, server.Config{Mux: mux, Auth: auth.NewAPIKeys(set), CallbackAllow: allow})
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

// X-Callback-Url: a malformed one, one the allow-list does not name, and
// two of them are 400s that store nothing; an allowed one is accepted.
func TestCallbackURLChecked(t *testing.T) {
	s := startCallbacks(t)
	for _, tc := range []struct {
		hdr  []string
		typ  string
		code string
	}{
		{[]string{"X-Callback-Url", "ftp://hooks.example.com/x"}, "urn:arr:problem:invalid-callback", "InvalidCallback"},
		{[]string{"X-Callback-Url", "https://user:pw@hooks.example.com/x"}, "urn:arr:problem:invalid-callback", "InvalidCallback"},
		{[]string{"X-Callback-Url", "https://evil.test/x"}, "urn:arr:problem:callback-not-allowed", "CallbackNotAllowed"},
		{[]string{"X-Callback-Url", "http://169.254.169.254/latest"}, "urn:arr:problem:callback-not-allowed", "CallbackNotAllowed"},
		{[]string{"X-Callback-Url", "https://a.example.com/1", "X-Callback-Url", "https://b.example.com/2"}, "urn:arr:problem:invalid-callback", "InvalidCallback"},
	} {
		req := append(bearer(cbAlice), tc.hdr...)
		r := s.do("POST", "/v1/echo", "hi", req...)
		wantProblem(t, r, 400, tc.typ)
		if m := r.JSON(t); m["code"] != tc.code || m["message"] == "" {
			t.Errorf("%v: code %v message %v", tc.hdr, m["code"], m["message"])
		}
	}
	if n := len(s.get("/v1/operations", bearer(cbRoot)...).JSON(t)["items"].([]any)); n != 0 {
		t.Fatalf("rejected requests stored %d operations", n)
	}
	r := s.do("POST", "/v1/echo", "hi", append(bearer(cbAlice), "X-Callback-Url", "https://hooks.example.com/done")...)
	wantStatus(t, r, 202)
}

// The operation shows its callbacks; the route's target without its
// query to its caller, whole to an admin. Redelivery is the owner's.
func TestCallbacksOnTheOperation(t *testing.T) {
	s := startCallbacks(t)
	r := s.do("POST", "/v1/hooks", "hi", bearer(cbAlice)...)
	wantStatus(t, r, 202)
	id := r.JSON(t)["id"].(string)
	var cb map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		op := s.get("/v1/operations/"+id+"?redirect=false", bearer(cbAlice)...).JSON(t)
		if cbs, _ := op["callbacks"].([]any); len(cbs) == 1 {
			if cb = cbs[0].(map[string]any); cb["state"] == "failed" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("callbacks never failed: %v", op)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cb["url"] != "http://127.0.0.1:9/hook" || cb["event"] != "succeeded" || cb["attempts"] != 1.0 || cb["lastError"] == "" {
		t.Fatalf("alice's view of the route's callback: %v", cb)
	}
	admin := s.get("/v1/operations/"+id+"?redirect=false", bearer(cbRoot)...).JSON(t)
	if u := admin["callbacks"].([]any)[0].(map[string]any)["url"]; u != "http://127.0.0.1:9/hook?token=s3cret" {
		t.Fatalf("the admin sees %v", u)
	}
	wantProblem(t, s.do("POST", "/v1/operations/"+id+"/callbacks/redeliver", "", bearer(cbBob)...), 404, "urn:arr:problem:not-found")
	wantProblem(t, s.do("GET", "/v1/operations/"+id+"/callbacks/redeliver", "", bearer(cbAlice)...), 405, "urn:arr:problem:method-not-allowed")
	r = s.do("POST", "/v1/operations/"+id+"/callbacks/redeliver", "", bearer(cbAlice)...)
	wantStatus(t, r, 202)
	if cb := r.JSON(t)["callbacks"].([]any)[0].(map[string]any); cb["state"] != "pending" || cb["nextAttemptAt"] == nil {
		t.Fatalf("after redeliver: %v", cb)
	}
}

// GET /v1/callbacks/secret: a caller's own; a route's or another's only
// for an admin; each scope its own secret.
func TestCallbackSecret(t *testing.T) {
	s := startCallbacks(t)
	secretOf := func(key, query string) string {
		t.Helper()
		r := s.get("/v1/callbacks/secret"+query, bearer(key)...)
		wantStatus(t, r, 200)
		m := r.JSON(t)
		secs := m["secrets"].([]any)
		v := secs[0].(map[string]any)["secret"].(string)
		if _, err := webhook.ParseSecret(v); err != nil || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("secret %q: %v", v, err)
		}
		return m["scope"].(string) + " " + v
	}
	alice, bob := secretOf(cbAlice, ""), secretOf(cbBob, "")
	if !strings.HasPrefix(alice, "principal:alice whsec_") || !strings.HasPrefix(bob, "principal:bob ") || alice[len("principal:alice"):] == bob[len("principal:bob"):] {
		t.Fatalf("alice %q, bob %q", alice, bob)
	}
	if again := secretOf(cbAlice, "?principal=alice"); again != alice {
		t.Fatalf("alice's own by name %q, want %q", again, alice)
	}
	wantProblem(t, s.get("/v1/callbacks/secret?route=hooks", bearer(cbAlice)...), 403, "urn:arr:problem:forbidden")
	wantProblem(t, s.get("/v1/callbacks/secret?principal=bob", bearer(cbAlice)...), 403, "urn:arr:problem:forbidden")
	if got := secretOf(cbRoot, "?principal=alice"); got != alice {
		t.Fatalf("the admin's view of alice's %q, want %q", got, alice)
	}
	if route := secretOf(cbRoot, "?route=hooks"); !strings.HasPrefix(route, "route:hooks whsec_") {
		t.Fatalf("route secret %q", route)
	}
	wantProblem(t, s.get("/v1/callbacks/secret?route=nope", bearer(cbRoot)...), 404, "urn:arr:problem:not-found")
	plain := start(t, server.Config{})
	wantProblem(t, plain.get("/v1/callbacks/secret"), 404, "urn:arr:problem:callbacks-not-configured")
}
