package webhook

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test vector of the Standard Webhooks reference libraries
// (libraries/go/webhook_test.go, TestWebhookSign, in
// github.com/standard-webhooks/standard-webhooks).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specKey(t testing.TB) []byte {
	key, err := ParseSecret(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSignSpecVector(t *testing.T) {
	key := specKey(t)
	if len(key) != 24 {
		t.Fatalf("the spec's secret has %d bytes, want 24", len(key))
	}
	ts := time.Unix(specTimestamp, 0)
	if got := Sign(specID, ts, []byte(specBody), key); got != specSignature {
		t.Fatalf("Sign = %q, want the spec's %q", got, specSignature)
	}
	h := http.Header{}
	h.Set(HeaderID, specID)
	h.Set(HeaderTimestamp, strconv.Itoa(specTimestamp))
	h.Set(HeaderSignature, specSignature)
	if err := Verify(key, h, []byte(specBody), ts.Add(time.Minute), 0); err != nil {
		t.Fatalf("the spec's signature does not verify: %v", err)
	}
}

func TestSignSeveralKeys(t *testing.T) {
	k1, k2 := specKey(t), DeriveSecret([]byte("m"), "s")
	ts := time.Unix(specTimestamp, 0)
	got := Sign(specID, ts, []byte(specBody), k1, k2)
	want := specSignature + " " + Sign(specID, ts, []byte(specBody), k2)
	if got != want {
		t.Fatalf("Sign with two keys = %q, want %q", got, want)
	}
	if Sign(specID, ts, nil) != "" {
		t.Fatal("Sign with no key is not empty")
	}
}

func signedHeader(id string, ts time.Time, body []byte, keys ...[]byte) http.Header {
	h := http.Header{}
	SetHeaders(h, id, ts, body, keys...)
	return h
}

func TestVerify(t *testing.T) {
	key := specKey(t)
	other := DeriveSecret([]byte("another master"), "route:x")
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"op1"}`)
	good := signedHeader("msg_1", now, body, key)
	goodSig := good.Get(HeaderSignature)

	with := func(k, v string) http.Header {
		h := good.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	cases := []struct {
		name string
		key  []byte
		h    http.Header
		body []byte
		now  time.Time
		tol  time.Duration
		want error // nil: verifies
	}{
		{"good", key, good, body, now, 0, nil},
		{"another key", other, good, body, now, 0, ErrSignature},
		{"another body", key, good, []byte(`{"id":"op2"}`), now, 0, ErrSignature},
		{"body with a space more", key, good, []byte(`{"id": "op1"}`), now, 0, ErrSignature},
		{"another id", key, with(HeaderID, "msg_2"), body, now, 0, ErrSignature},
		{"another timestamp", key, with(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10)), body, now, 0, ErrSignature},
		{"no id", key, with(HeaderID, ""), body, now, 0, ErrMissingHeader},
		{"no timestamp", key, with(HeaderTimestamp, ""), body, now, 0, ErrMissingHeader},
		{"no signature", key, with(HeaderSignature, ""), body, now, 0, ErrMissingHeader},
		{"timestamp with a sign", key, with(HeaderTimestamp, "+"+strconv.FormatInt(now.Unix(), 10)), body, now, 0, ErrTimestamp},
		{"timestamp with a fraction", key, with(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10)+".0"), body, now, 0, ErrTimestamp},
		{"timestamp in ms", key, with(HeaderTimestamp, strconv.FormatInt(now.UnixMilli(), 10)), body, now, 0, ErrTimestamp},
		{"huge timestamp", key, with(HeaderTimestamp, "999999999999"), body, now, 0, ErrTimestamp},
		{"at the tolerance, late", key, good, body, now.Add(DefaultTolerance), 0, nil},
		{"past the tolerance, late", key, good, body, now.Add(DefaultTolerance + time.Second), 0, ErrTimestamp},
		{"at the tolerance, early", key, good, body, now.Add(-DefaultTolerance), 0, nil},
		{"past the tolerance, early", key, good, body, now.Add(-DefaultTolerance - time.Second), 0, ErrTimestamp},
		{"within a wider tolerance", key, good, body, now.Add(time.Hour), 2 * time.Hour, nil},
		{"past a narrower tolerance", key, good, body, now.Add(2 * time.Second), time.Second, ErrTimestamp},
		{"among others", key, with(HeaderSignature, "v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+goodSig+" v1,%%%"), body, now, 0, nil},
		{"tabs and double spaces", key, with(HeaderSignature, "v1,xx  \t"+goodSig), body, now, 0, nil},
		{"another version", key, with(HeaderSignature, "v2"+goodSig[2:]), body, now, 0, ErrSignature},
		{"no version", key, with(HeaderSignature, goodSig[3:]), body, now, 0, ErrSignature},
		{"truncated", key, with(HeaderSignature, goodSig[:len(goodSig)-4]), body, now, 0, ErrSignature},
		{"unpadded", key, with(HeaderSignature, strings.TrimRight(goodSig, "=")), body, now, 0, ErrSignature},
		{"lengthened", key, with(HeaderSignature, goodSig[:len(goodSig)-1]+"AAAA"), body, now, 0, ErrSignature},
	}
	for _, c := range cases {
		err := Verify(c.key, c.h, c.body, c.now, c.tol)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestVerifyRotation(t *testing.T) {
	oldKey, newKey, third := DeriveSecret([]byte("m"), "old"), DeriveSecret([]byte("m"), "new"), DeriveSecret([]byte("m"), "third")
	now := time.Now()
	h := signedHeader("msg_rot", now, []byte("{}"), newKey, oldKey)
	for _, k := range [][]byte{oldKey, newKey} {
		if err := Verify(k, h, []byte("{}"), now, 0); err != nil {
			t.Errorf("a key the header was signed with does not verify: %v", err)
		}
	}
	if err := Verify(third, h, []byte("{}"), now, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("a third key verifies: %v", err)
	}
}

func TestSecrets(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b || !strings.HasPrefix(a, SecretPrefix) {
		t.Fatalf("NewSecret gave %q and %q", a, b)
	}
	key, err := ParseSecret(" " + a + "\n")
	if err != nil || len(key) != SecretSize {
		t.Fatalf("ParseSecret(NewSecret()) = %d bytes, %v", len(key), err)
	}
	if FormatSecret(key) != a {
		t.Fatalf("FormatSecret(ParseSecret(%q)) = %q", a, FormatSecret(key))
	}
	for name, s := range map[string]string{
		"no prefix":    strings.TrimPrefix(a, SecretPrefix),
		"other prefix": "whsk_" + strings.TrimPrefix(a, SecretPrefix),
		"bad base64":   a[:len(a)-2] + "!!",
		"url base64":   SecretPrefix + "-_-_" + strings.TrimPrefix(a, SecretPrefix)[4:],
		"too short":    FormatSecret(make([]byte, MinSecretSize-1)),
		"too long":     FormatSecret(make([]byte, MaxSecretSize+1)),
		"empty":        SecretPrefix,
	} {
		_, err := ParseSecret(s)
		if !errors.Is(err, ErrSecret) {
			t.Errorf("%s: ParseSecret(%q) = %v, want ErrSecret", name, s, err)
		} else if len(s) > len(SecretPrefix)+4 && strings.Contains(err.Error(), s[len(SecretPrefix):]) {
			t.Errorf("%s: the error %q shows the secret", name, err)
		}
	}
	for _, n := range []int{MinSecretSize, MaxSecretSize} {
		if _, err := ParseSecret(FormatSecret(bytes.Repeat([]byte{7}, n))); err != nil {
			t.Errorf("a %d-byte key is refused: %v", n, err)
		}
	}
}

func TestDeriveSecret(t *testing.T) {
	// Computed independently: HMAC-SHA256(key "master", "arr webhook secret v1\x00route:orders").
	const want = "5b721fc62fa35ad8273446b152ea3461324a0a24bdd51bc47380c0f73ded8b0b"
	got := DeriveSecret([]byte("master"), "route:orders")
	if hex.EncodeToString(got) != want {
		t.Fatalf("DeriveSecret = %x, want %s (the label or construction changed: every derived secret would change)", got, want)
	}
	if !bytes.Equal(got, DeriveSecret([]byte("master"), "route:orders")) {
		t.Fatal("DeriveSecret is not deterministic")
	}
	for _, other := range [][]byte{
		DeriveSecret([]byte("master"), "route:order"),
		DeriveSecret([]byte("master"), "principal:orders"),
		DeriveSecret([]byte("master2"), "route:orders"),
	} {
		if bytes.Equal(got, other) {
			t.Fatal("another scope or master gives the same key")
		}
	}
	if _, err := ParseSecret(FormatSecret(got)); err != nil {
		t.Fatalf("a derived key is not a valid secret: %v", err)
	}
}
