package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/urlsign"
)

// get fetches url with the process tests' client (no redirects).
func fetch(t *testing.T, u string) (int, string, http.Header) {
	t.Helper()
	res, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(b), res.Header
}

// keysRun runs `arr keys args…` in this process and returns its output.
func keysRun(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(append([]string{"keys"}, args...), &out, &errb); err != nil {
		t.Fatalf("arr keys %q: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// signingKID is the key id `arr keys list` marks as signing.
func signingKID(t *testing.T, list string) string {
	t.Helper()
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[3] == "yes" {
			return f[0]
		}
	}
	t.Fatalf("no signing key in:\n%s", list)
	return ""
}

// resultURL is a freshly signed URL to the result of operation id, and its kid.
func resultURL(t *testing.T, base, id string) (string, string) {
	t.Helper()
	code, body, h := fetch(t, base+"/v1/operations/"+id+"/result")
	loc := h.Get("Location")
	if code/100 != 3 || loc == "" {
		t.Fatalf("result of %s: %d %s", id, code, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.String(), u.Query().Get("kid")
}

// mintURL signs a URL to the result key with the keyring of the data
// directory data, as whoever steals that keyring could, expiring in ttl.
func mintURL(t *testing.T, data, key string, ttl time.Duration) string {
	t.Helper()
	keys, err := urlsign.OpenFileKeys(filepath.Join(data, urlsign.DefaultKeyFileName), "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := urlsign.NewHMAC(context.Background(), keys, urlsign.HMACOptions{Domain: urlsign.FileDomain})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	u, err := h.SignedURL(context.Background(), key, time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// `arr keys rotate` and `-revoke` on the keyring of a running arr serve:
// URLs signed before a rotation keep working, new URLs use the new key
// without a restart, and a revoked key's URLs are refused. The server
// also runs with -admin-addr: /metrics and pprof there, not on -addr.
func TestKeysRotateWhileServing(t *testing.T) {
	data, admin := t.TempDir(), freeAddr(t)
	p := startArr(t, freeAddr(t), data, "-admin-addr", admin)
	defer p.stop(t)
	base := "http://" + p.addr

	if code, _, _ := fetch(t, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404", code)
	}
	if code, body, _ := fetch(t, "http://"+admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, "arr_queue_messages") {
		t.Errorf("admin /metrics: %d %.200s", code, body)
	}
	if code, body, _ := fetch(t, "http://"+admin+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("admin pprof: %d %.200s", code, body)
	}
	if code, body, _ := fetch(t, "http://"+admin+"/debug/pprof/cmdline"); code == http.StatusOK {
		t.Errorf("admin pprof serves the command line: %.200s", body)
	}
	if code, _, _ := fetch(t, "http://"+admin+"/readyz"); code != http.StatusOK {
		t.Errorf("admin /readyz: %d", code)
	}

	id := submitTo(t, base, "POST", "/v1/echo", "text/plain", "keep me")
	waitOp(t, base, id, 10*time.Second, func(o opJSON) bool { return o.Status == "succeeded" })
	old, oldKID := resultURL(t, base, id)
	// A leaked keyring mints no URL beyond the configured lifetime (10m).
	ou, _ := url.Parse(old)
	for ttl, want := range map[time.Duration]int{7 * 24 * time.Hour: 403, time.Hour: 403, 5 * time.Minute: 200} {
		if code, body, _ := fetch(t, base+mintURL(t, data, strings.TrimPrefix(ou.Path, "/blobs/"), ttl)); code != want {
			t.Errorf("URL minted with the keyring for %v: %d %.200s, want %d", ttl, code, body, want)
		}
	}
	if got := signingKID(t, keysRun(t, "list", "-data", data)); got != oldKID {
		t.Fatalf("keys list: signing %s, the server signs with %s", got, oldKID)
	}
	list := keysRun(t, "rotate", "-data", data)
	newKID := signingKID(t, list)
	if newKID == oldKID || !strings.Contains(list, "\n"+oldKID+" ") {
		t.Fatalf("after rotate:\n%s", list)
	}
	if strings.Contains(list, "secret") {
		t.Fatalf("keys output shows secrets:\n%s", list)
	}
	// The server signs with the new key after its next keyring reload.
	var kid string
	for deadline := time.Now().Add(15 * time.Second); kid != newKID; time.Sleep(200 * time.Millisecond) {
		if _, kid = resultURL(t, base, id); kid != newKID && time.Now().After(deadline) {
			t.Fatalf("the server still signs with %s, not %s", kid, newKID)
		}
	}
	if code, body, _ := fetch(t, old); code != http.StatusOK || body != "keep me" {
		t.Fatalf("URL signed before the rotation: %d %q", code, body)
	}
	list = keysRun(t, "rotate", "-revoke", oldKID, "-data", data)
	if strings.Contains(list, "\n"+oldKID+" ") {
		t.Fatalf("after -revoke %s:\n%s", oldKID, list)
	}
	var code int
	var body string
	for deadline := time.Now().Add(15 * time.Second); code != http.StatusForbidden; time.Sleep(200 * time.Millisecond) {
		if code, body, _ = fetch(t, old); code != http.StatusForbidden && time.Now().After(deadline) {
			t.Fatalf("URL of the revoked key %s: %d %q, want 403", oldKID, code, body)
		}
	}
	if !strings.Contains(body, "urn:arr:problem:signed-url-invalid") {
		t.Errorf("refusal of a revoked key's URL: %s", body)
	}
	// URLs of the key that stays still work.
	fresh, _ := resultURL(t, base, id)
	if code, body, _ := fetch(t, fresh); code != http.StatusOK || body != "keep me" {
		t.Fatalf("fresh URL after the revocation: %d %q", code, body)
	}
}

func TestKeysUsageErrors(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "frob"}, `unknown command "frob"`},
		{[]string{"keys", "rotate", "-data", data, "-revoke", "no/such"}, "not a key id"},
		{[]string{"keys", "rotate", "-data", data, "-revoke", "abcdef0123456789"}, "no such key"},
		{[]string{"keys", "list", "extra"}, "takes no arguments"},
	} {
		var out, errb bytes.Buffer
		err := run(c.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), c.want) {
			t.Errorf("run(%q) = %v (stderr %q), want an error mentioning %q", c.args, err, errb.String(), c.want)
		}
	}
}

// arr keys on a file: result store opens its keyring through the store's
// engine (beside the directory, as serve's signer keeps it).
func TestKeysOnFileResults(t *testing.T) {
	dir := t.TempDir()
	results := "file:" + dir + "/results"
	first := signingKID(t, keysRun(t, "list", "-results", results))
	list := keysRun(t, "rotate", "-results", results)
	second := signingKID(t, list)
	if second == first || !strings.Contains(list, "\n"+first+" ") {
		t.Fatalf("after rotate:\n%s", list)
	}
	if list := keysRun(t, "list", "-results", results+"?keyfile="+dir+"/other-keys.json"); signingKID(t, list) == second {
		t.Fatalf("another keyfile lists the same keys:\n%s", list)
	}
	if got := signingKID(t, keysRun(t, "list", "-results", results)); got != second {
		t.Fatalf("signing %s after the rotation, want %s", got, second)
	}
}
