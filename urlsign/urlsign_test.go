package urlsign

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// storedKeyring is a keyring in the format the drivers have always
// written (with a retired key and the active one).
const storedKeyring = `{
  "version": 1,
  "active": "k2",
  "keys": [
    {
      "id": "k1",
      "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
      "created": "2025-11-21T07:23:00Z",
      "retired": "2025-11-28T07:23:00Z"
    },
    {
      "id": "k2",
      "secret": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
      "created": "2025-11-28T07:23:00Z"
    }
  ]
}
`

func mustParse(t *testing.T, data string) *Keyring {
	t.Helper()
	kr, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestParseMarshalRoundTrip(t *testing.T) {
	kr := mustParse(t, storedKeyring)
	if kr.Active().ID != "k2" || kr.Key("k1") == nil || kr.Key("k3") != nil || len(kr.Keys()) != 2 {
		t.Fatalf("parsed keyring: active %s, %d keys", kr.Active().ID, len(kr.Keys()))
	}
	if k1 := kr.Key("k1"); !bytes.Equal(k1.Secret, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}) ||
		!k1.Retired.Equal(time.Date(2025, 11, 28, 7, 23, 0, 0, time.UTC)) {
		t.Errorf("key k1: retired %v", k1.Retired)
	}
	data, err := kr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != storedKeyring {
		t.Errorf("Marshal:\n%s\nwant\n%s", data, storedKeyring)
	}
	kr.Keys()[0].ID = "changed" // a copy
	if kr.Key("k1") == nil || kr.Keys()[0].ID != "k1" {
		t.Error("Keys returned the keyring's own slice")
	}
}

func TestParseRefusals(t *testing.T) {
	sec := base64.StdEncoding.EncodeToString(make([]byte, SecretLen))
	short := base64.StdEncoding.EncodeToString(make([]byte, SecretLen-1))
	key := func(id, s string) string {
		return `{"id":"` + id + `","secret":"` + s + `","created":"2025-11-21T07:23:00Z"}`
	}
	for name, data := range map[string]string{
		"malformed":      `{"version":1,`,
		"version 2":      `{"version":2,"active":"a","keys":[` + key("a", sec) + `]}`,
		"no version":     `{"active":"a","keys":[` + key("a", sec) + `]}`,
		"invalid id":     `{"version":1,"active":"a","keys":[` + key("a", sec) + `,` + key("a/b", sec) + `]}`,
		"empty id":       `{"version":1,"active":"a","keys":[` + key("a", sec) + `,` + key("", sec) + `]}`,
		"short secret":   `{"version":1,"active":"a","keys":[` + key("a", short) + `]}`,
		"duplicate id":   `{"version":1,"active":"a","keys":[` + key("a", sec) + `,` + key("a", sec) + `]}`,
		"active missing": `{"version":1,"active":"b","keys":[` + key("a", sec) + `]}`,
		"no keys":        `{"version":1,"active":"a","keys":[]}`,
		"too large":      `{"version":1,"active":"a","keys":[` + key("a", sec) + `]}` + strings.Repeat(" ", MaxLen),
	} {
		kr, err := Parse([]byte(data))
		if err == nil {
			t.Errorf("%s: accepted, active %s", name, kr.Active().ID)
			continue
		}
		if strings.Contains(err.Error(), sec[:20]) {
			t.Errorf("%s: error quotes key material: %v", name, err)
		}
	}
	// A damaged secret is refused without quoting it.
	damaged := strings.Replace(storedKeyring, "AAECAwQFBgcICQ", "AAECAwQFB!cICQ", 1)
	if _, err := Parse([]byte(damaged)); err == nil || strings.Contains(err.Error(), "AAECAwQFB") {
		t.Errorf("damaged secret: %v", err)
	}
}

func TestValidKID(t *testing.T) {
	for id, want := range map[string]bool{
		"3f9a0c1e5b7d2a64": true, "A-z_0.9": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "a/b": false, "a b": false, "a&b": false, "é": false,
	} {
		if got := ValidKID(id); got != want {
			t.Errorf("ValidKID(%q) = %v", id, got)
		}
	}
}

func TestNew(t *testing.T) {
	now := time.Date(2025, 11, 21, 7, 23, 0, 999, time.FixedZone("x", 3600))
	kr := NewKeyring(now)
	k := kr.Active()
	if len(kr.Keys()) != 1 || !ValidKID(k.ID) || len(k.ID) != 16 || len(k.Secret) != SecretLen || !k.Retired.IsZero() {
		t.Fatalf("new keyring: %d keys, key %q, %d byte secret", len(kr.Keys()), k.ID, len(k.Secret))
	}
	if !k.Created.Equal(now.Truncate(time.Second)) || k.Created.Location() != time.UTC {
		t.Errorf("created %v", k.Created)
	}
	data, err := kr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back := mustParse(t, string(data))
	if back.Active().ID != k.ID || !bytes.Equal(back.Active().Secret, k.Secret) {
		t.Error("a new keyring does not survive Marshal and Parse")
	}
	if NewKeyring(now).Active().ID == k.ID {
		t.Error("two new keyrings have the same key id")
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	k := NewKey(time.Now())
	raw := string(k.Secret)
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q"} {
		out := fmt.Sprintf(f, k) + fmt.Sprintf(f, k.Secret) + fmt.Sprintf(f, &k)
		for _, enc := range []string{raw, hex.EncodeToString(k.Secret), base64.StdEncoding.EncodeToString(k.Secret), fmt.Sprint([]byte(k.Secret))} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(enc)) {
				t.Errorf("%s prints the secret: %s", f, out)
			}
		}
	}
}

func TestRotate(t *testing.T) {
	kr := mustParse(t, storedKeyring) // k1 retired 2025-11-28T07:23:00Z, k2 active
	k1Retired := kr.Key("k1").Retired
	now := k1Retired.Add(90*time.Minute + 500*time.Millisecond)

	r1 := kr.Rotate(now, 2*time.Hour)
	if kr.Active().ID != "k2" || !kr.Key("k2").Retired.IsZero() || len(kr.Keys()) != 2 {
		t.Error("Rotate changed the keyring it rotated")
	}
	keys := r1.Keys()
	if len(keys) != 3 || keys[0].ID != "k1" || keys[1].ID != "k2" || keys[2].ID != r1.Active().ID {
		t.Fatalf("rotated keyring: %d keys, active %s", len(keys), r1.Active().ID)
	}
	if nk := r1.Active(); nk.ID == "k2" || !nk.Retired.IsZero() || !nk.Created.Equal(now.Truncate(time.Second)) {
		t.Errorf("new active key %s created %v retired %v", nk.ID, nk.Created, nk.Retired)
	}
	if got := r1.Key("k2").Retired; !got.Equal(now.Truncate(time.Second)) || got.Location() != time.UTC {
		t.Errorf("previous active key retired %v, want %v", got, now.Truncate(time.Second))
	}
	if !r1.Key("k1").Retired.Equal(k1Retired) {
		t.Errorf("a key retired before was re-retired: %v", r1.Key("k1").Retired)
	}

	// A key retired exactly retain ago is kept; one retired longer ago is
	// dropped.
	at := k1Retired.Add(2 * time.Hour)
	if r := kr.Rotate(at, 2*time.Hour); r.Key("k1") == nil {
		t.Error("key retired exactly retain ago was dropped")
	}
	r2 := kr.Rotate(at.Add(time.Second), 2*time.Hour)
	if r2.Key("k1") != nil || r2.Key("k2") == nil || len(r2.Keys()) != 2 {
		t.Errorf("after retain: %d keys, k1 kept: %v", len(r2.Keys()), r2.Key("k1") != nil)
	}

	// The rotated keyring survives Marshal and Parse, and a second
	// rotation retires the key the first added.
	data, err := r1.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back := mustParse(t, string(data))
	if back.Active().ID != r1.Active().ID || len(back.Keys()) != 3 {
		t.Fatal("rotated keyring does not survive Marshal and Parse")
	}
	later := now.Add(10 * time.Hour)
	r3 := back.Rotate(later, 2*time.Hour)
	if r3.Key(r1.Active().ID) == nil || !r3.Key(r1.Active().ID).Retired.Equal(later.Truncate(time.Second)) ||
		r3.Key("k1") != nil || r3.Key("k2") != nil || len(r3.Keys()) != 2 {
		t.Errorf("second rotation: %d keys", len(r3.Keys()))
	}
}

var (
	testKey = Key{ID: "k1", Secret: Secret{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}}
	t0      = time.Unix(1700000000, 0)
)

// TestSignGolden pins the URL format and signatures: URLs signed before
// this package existed keep verifying.
func TestSignGolden(t *testing.T) {
	for domain, want := range map[string]string{
		"arr-fileresult-url-v1": "se=1700000000&kid=k1&sig=OXdRXfm8txPRqIbu7RE3hAzm3a2e8easGVthaLOvQQ4",
		"arr-s3result-url-v1":   "se=1700000000&kid=k1&sig=njIy2JUOet3EwNC-dej7oGaQhStqOx7fhRSbWYsPBIE",
	} {
		sc := Scheme{Domain: domain, MaxLifetime: time.Hour}
		if got := sc.Sign(&testKey, "dir/r 1.json", 1700000000); got != want {
			t.Errorf("%s: Sign = %q, want %q", domain, got, want)
		}
		exp, err := sc.Verify("dir/r 1.json", want, t0.Add(-time.Minute), lookupOf(&testKey))
		if err != nil || !exp.Equal(t0) {
			t.Errorf("%s: Verify = %v, %v", domain, exp, err)
		}
	}
}

func lookupOf(keys ...*Key) func(string) *Key {
	return func(kid string) *Key {
		for _, k := range keys {
			if k.ID == kid {
				return k
			}
		}
		return nil
	}
}

func TestVerify(t *testing.T) {
	const key = "a/b"
	other := Key{ID: "k2", Secret: bytes.Repeat([]byte{7}, SecretLen)}
	lookup := lookupOf(&testKey, &other)
	now := t0.Add(-10 * time.Minute)
	for _, exact := range []bool{false, true} {
		sc := Scheme{Domain: "test-domain", MaxLifetime: time.Hour, ExactQuery: exact}
		good := sc.Sign(&testKey, key, t0.Unix())
		parts := strings.Split(good, "&")
		sig := strings.TrimPrefix(parts[2], "sig=")
		flipped := string(sig[0]^1) + sig[1:]
		if sig[0] == 'A' {
			flipped = "B" + sig[1:]
		}
		refused := map[string]string{
			"empty":               "",
			"tampered sig":        parts[0] + "&" + parts[1] + "&sig=" + flipped,
			"sig one short":       parts[0] + "&" + parts[1] + "&sig=" + sig[:SigLen-1],
			"sig padded":          parts[0] + "&" + parts[1] + "&sig=" + sig + "=",
			"sig not base64url":   parts[0] + "&" + parts[1] + "&sig=" + strings.Repeat("+", SigLen),
			"tampered se":         fmt.Sprintf("se=%d&", t0.Unix()+1) + parts[1] + "&" + parts[2],
			"se leading zero":     "se=0" + strings.TrimPrefix(parts[0], "se=") + "&" + parts[1] + "&" + parts[2],
			"se not a number":     "se=x&" + parts[1] + "&" + parts[2],
			"other kid":           parts[0] + "&kid=k2&" + parts[2],
			"unknown kid":         parts[0] + "&kid=k9&" + parts[2],
			"invalid kid":         parts[0] + "&kid=k%2F1&" + parts[2],
			"se missing":          parts[1] + "&" + parts[2],
			"kid missing":         parts[0] + "&" + parts[2],
			"sig missing":         parts[0] + "&" + parts[1],
			"se duplicated":       good + "&" + parts[0],
			"kid duplicated":      good + "&" + parts[1],
			"sig duplicated":      good + "&" + parts[2],
			"se given twice":      good + fmt.Sprintf("&se=%d", t0.Unix()+1),
			"semicolon":           parts[0] + ";" + parts[1] + "&" + parts[2],
			"bad escape":          good + "&x=%zz",
			"other key":           sc.Sign(&testKey, "a/c", t0.Unix()),
			"other domain":        Scheme{Domain: "other-domain"}.Sign(&testKey, key, t0.Unix()),
			"beyond MaxLifetime":  sc.Sign(&testKey, key, now.Add(time.Hour+time.Minute+time.Second).Unix()),
			"negative expiry":     sc.Sign(&testKey, key, -5),
			"signed with k2 as 1": strings.Replace(sc.Sign(&other, key, t0.Unix()), "kid=k2", "kid=k1", 1),
		}
		if exact {
			for name, extra := range map[string]string{"extra": "&x=1", "empty extra": "&", "bare name": "&se", "response override": "&response-content-type=text/html"} {
				refused[name] = good + extra
			}
		} else if exp, err := sc.Verify(key, good+"&x=1", now, lookup); err != nil || !exp.Equal(t0) {
			t.Errorf("not exact: an extra parameter is not ignored: %v", err)
		}
		for name, q := range refused {
			if _, err := sc.Verify(key, q, now, lookup); !errors.Is(err, ErrBadSignature) {
				t.Errorf("exact=%v %s (%q): %v, want ErrBadSignature", exact, name, q, err)
			}
		}
		// Reordered parameters are the same query.
		if exp, err := sc.Verify(key, parts[2]+"&"+parts[0]+"&"+parts[1], now, lookup); err != nil || !exp.Equal(t0) {
			t.Errorf("exact=%v reordered: %v", exact, err)
		}
		if exp, err := sc.Verify(key, good, now, lookup); err != nil || !exp.Equal(t0) {
			t.Errorf("exact=%v genuine: %v %v", exact, exp, err)
		}
		// Expired: at and after se, with the expiry.
		for _, at := range []time.Time{t0, t0.Add(time.Hour)} {
			if exp, err := sc.Verify(key, good, at, lookup); !errors.Is(err, ErrExpired) || !exp.Equal(t0) {
				t.Errorf("exact=%v at %v: %v %v, want ErrExpired", exact, at, exp, err)
			}
		}
		if exp, err := sc.Verify(key, good, t0.Add(-time.Second), lookup); err != nil || !exp.Equal(t0) {
			t.Errorf("exact=%v a second before expiry: %v", exact, err)
		}
	}
}

func TestVerifyLookup(t *testing.T) {
	sc := Scheme{Domain: "d", MaxLifetime: time.Hour}
	good := sc.Sign(&testKey, "k", t0.Unix())
	calls := 0
	lookup := func(kid string) *Key { calls++; return lookupOf(&testKey)(kid) }
	for _, q := range []string{"", "se=1&kid=k1", "se=x&kid=k1&sig=" + strings.Repeat("A", SigLen), "se=1&kid=k%2F1&sig=" + strings.Repeat("A", SigLen)} {
		_, _ = sc.Verify("k", q, t0.Add(-time.Minute), lookup)
	}
	if calls != 0 {
		t.Errorf("malformed queries looked up %d key ids", calls)
	}
	if _, err := sc.Verify("k", good, t0.Add(-time.Minute), lookup); err != nil || calls != 1 {
		t.Errorf("genuine: %v after %d lookups", err, calls)
	}
}

// TestVerifyRetiredKey: a retired key verifies the URLs it signed, but not
// one expiring more than MaxLifetime (+1 minute) after its retirement.
func TestVerifyRetiredKey(t *testing.T) {
	retired := testKey
	retired.Retired = t0
	sc := Scheme{Domain: "d", MaxLifetime: time.Hour}
	lookup := lookupOf(&retired)
	now := t0.Add(50 * time.Minute)
	within := sc.Sign(&retired, "k", t0.Add(time.Hour).Unix())
	if _, err := sc.Verify("k", within, now, lookup); err != nil {
		t.Errorf("URL within MaxLifetime of retirement: %v", err)
	}
	edge := sc.Sign(&retired, "k", t0.Add(time.Hour+time.Minute).Unix())
	if _, err := sc.Verify("k", edge, now, lookup); err != nil {
		t.Errorf("URL at MaxLifetime + 1 minute of retirement: %v", err)
	}
	beyond := sc.Sign(&retired, "k", t0.Add(time.Hour+time.Minute+time.Second).Unix())
	if _, err := sc.Verify("k", beyond, now, lookup); !errors.Is(err, ErrBadSignature) {
		t.Errorf("URL outliving its retired key: %v, want ErrBadSignature", err)
	}
}

func TestRotatedKeyringVerifies(t *testing.T) {
	sc := Scheme{Domain: "d", MaxLifetime: time.Hour}
	kr := mustParse(t, storedKeyring)
	now := kr.Key("k1").Retired.Add(30 * time.Minute)
	old := sc.Sign(kr.Active(), "k", now.Add(20*time.Minute).Unix())
	r := kr.Rotate(now, time.Hour+time.Minute)
	lookup := func(kid string) *Key { return r.Key(kid) }
	if _, err := sc.Verify("k", old, now.Add(time.Minute), lookup); err != nil {
		t.Errorf("URL of the key just retired: %v", err)
	}
	nu := sc.Sign(r.Active(), "k", now.Add(20*time.Minute).Unix())
	if _, err := sc.Verify("k", nu, now.Add(time.Minute), lookup); err != nil {
		t.Errorf("URL of the new key: %v", err)
	}
	pruned := r.Rotate(now.Add(3*time.Hour), time.Hour+time.Minute)
	if _, err := sc.Verify("k", old, now.Add(time.Minute), pruned.Key); !errors.Is(err, ErrBadSignature) {
		t.Errorf("URL of a pruned key: %v", err)
	}
}

func TestHTTPHelpers(t *testing.T) {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		if !AllowMethod(rec, httptest.NewRequest(m, "/x", nil)) || rec.Code != 200 || len(rec.Header()) != 0 {
			t.Errorf("%s refused: %d", m, rec.Code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		rec := httptest.NewRecorder()
		if AllowMethod(rec, httptest.NewRequest(m, "/x", nil)) || rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" ||
			!strings.Contains(rec.Body.String(), ProblemMethodNotAllowed) {
			t.Errorf("%s: %d Allow %q %s", m, rec.Code, rec.Header().Get("Allow"), rec.Body)
		}
	}
	type want struct {
		status int
		typ    string
		detail string
	}
	for name, c := range map[string]struct {
		write func(http.ResponseWriter, *http.Request)
		want  want
	}{
		"expired": {func(w http.ResponseWriter, r *http.Request) { WriteRefusal(w, r, ErrExpired, t0) },
			want{403, ProblemSignedURLExpired, `"detail":"the URL has expired at 2023-11-14T22:13:20Z"`}},
		"invalid": {func(w http.ResponseWriter, r *http.Request) { WriteRefusal(w, r, ErrBadSignature, time.Time{}) },
			want{403, ProblemSignedURLInvalid, `"detail":"the URL's signature is missing, malformed or not valid"`}},
		"not found": {WriteNotFound, want{404, ProblemResultNotFound, `"detail":"the result no longer exists"`}},
	} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			rec := httptest.NewRecorder()
			c.write(rec, httptest.NewRequest(m, "/x", nil))
			h := rec.Header()
			if rec.Code != c.want.status || h.Get("Content-Type") != "application/problem+json" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %s: %d %v", name, m, rec.Code, h)
			}
			body := rec.Body.String()
			if m == http.MethodHead && body != "" {
				t.Errorf("%s HEAD: body %q", name, body)
			}
			if m == http.MethodGet && (!strings.Contains(body, `"type":"`+c.want.typ+`"`) || !strings.Contains(body, c.want.detail) || !strings.Contains(body, fmt.Sprintf(`"status":%d`, c.want.status))) {
				t.Errorf("%s GET: body %s", name, body)
			}
		}
	}
}

func TestKeyPaths(t *testing.T) {
	for _, key := range []string{"a", "dir/r 1.json", "a?b#c/%d", "ü/x&y=z"} {
		p := "/blobs/" + EscapeKey(key)
		if got, ok := KeyFromPath(p, "/blobs/"); !ok || got != key {
			t.Errorf("KeyFromPath(%q) = %q, %v, want %q", p, got, ok, key)
		}
	}
	for _, p := range []string{"/blobs/", "/other/a", "/blobs/a%2Fb", "/blobs/a%2fb", "/blobs/%zz", "/blob"} {
		if got, ok := KeyFromPath(p, "/blobs/"); ok {
			t.Errorf("KeyFromPath(%q) = %q, want refused", p, got)
		}
	}
}

func TestDownloadName(t *testing.T) {
	for _, c := range [][3]string{
		{"dir/r 1", "application/json", "r 1.json"},
		{"r", "application/problem+json; charset=utf-8", "r.json"},
		{"r", "text/plain; charset=utf-8", "r.txt"},
		{"r", "text/csv", "r.csv"},
		{"r", "application/octet-stream", "r"},
		{"r.bin", "application/json", "r.bin"},
	} {
		if got := DownloadName(c[0], c[1]); got != c[2] {
			t.Errorf("DownloadName(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}
