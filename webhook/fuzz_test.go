package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseAllowList feeds the allow-list parser arbitrary lists, and the
// list's rules arbitrary URLs. Properties: nothing panics; a parsed list's
// String parses again to the same String (the canonical form is stable);
// Names never accepts a URL that is not http(s) or that carries user
// information; whatever Exempt allows, Names allows too (exempting entries
// are a subset of naming ones); every exact entry exempts its own host.
func FuzzParseAllowList(f *testing.F) {
	for _, s := range [][2]string{
		{"hooks.example.com,*.corp.example:8443", "https://a.corp.example:8443/x"},
		{"127.0.0.1:8080,[::1]", "http://[::1]:9/"},
		{"*", "http://user@x.example/"},
		{"[::ffff:10.0.0.1]:443, Example.COM.", "https://10.0.0.1/"},
		{"*.*.x,a..b", "ftp://x/"},
		{"[fe80::1%eth0]", "http://[fe80::1%25eth0]/"},
		{"127.1,0x7f.1", "http://127.1/"},
		{"", "https://example.com:0443/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, raw string) {
		l, err := ParseAllowList(list)
		if err != nil {
			if !strings.Contains(err.Error(), "allow-list entry") {
				t.Fatalf("error %q does not name the entry", err)
			}
			return
		}
		canon := l.String()
		again, err := ParseAllowList(canon)
		if err != nil || again.String() != canon || again.Len() != l.Len() {
			t.Fatalf("%q: String %q parses to %q (%v)", list, canon, again.String(), err)
		}
		for _, e := range l.entries {
			if e.kind == exactHost && !l.Exempt(e.host, cmpOr(e.port, "1")) {
				t.Fatalf("exact entry %+v does not exempt its own host", e)
			}
		}
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if !l.Names(u) {
			if l.Exempt(u.Hostname(), portOf(u)) && u.User == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
				t.Fatalf("%q exempts %q but does not name it", canon, raw)
			}
			return
		}
		if u.User != nil || u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q names %q", canon, raw)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

// FuzzVerify feeds Verify arbitrary header values and bodies. Properties:
// it never panics and fails only with its three errors; it accepts only
// when the id is present, the timestamp is digits within the tolerance,
// and one of the space-separated signatures is exactly the one Sign makes
// for that key, id, timestamp and body; what Sign makes verifies, and not
// with another key.
func FuzzVerify(f *testing.F) {
	key := specKey(f)
	f.Add(specID, strconv.Itoa(specTimestamp), specSignature, []byte(specBody), int64(0))
	f.Add(specID, strconv.Itoa(specTimestamp), "v1a,x "+specSignature+" v2,y", []byte(specBody), int64(299))
	f.Add(specID, strconv.Itoa(specTimestamp), strings.TrimSuffix(specSignature, "=")+"F=", []byte(specBody), int64(-301))
	f.Add("", "+1614265330", "v1,", []byte{}, int64(0))
	f.Add("a.b", "0001614265330", "v1,,,, v1", []byte("x"), int64(1<<40))
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte, skew int64) {
		now := time.Unix(specTimestamp, 0).Add(time.Duration(skew) * time.Second)
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sigs)
		err := Verify(key, h, body, now, 0)
		if err != nil {
			if !errors.Is(err, ErrMissingHeader) && !errors.Is(err, ErrTimestamp) && !errors.Is(err, ErrSignature) {
				t.Fatalf("unexpected error %v", err)
			}
		} else {
			secs, perr := strconv.ParseInt(ts, 10, 64)
			if id == "" || perr != nil || strings.Trim(ts, "0123456789") != "" {
				t.Fatalf("accepted id %q, timestamp %q", id, ts)
			}
			if d := now.Sub(time.Unix(secs, 0)); d > DefaultTolerance || d < -DefaultTolerance {
				t.Fatalf("accepted timestamp %q at %v", ts, now)
			}
			want := "v1," + base64.StdEncoding.EncodeToString(mac(key, id, ts, body))
			if !slices.Contains(strings.Fields(sigs), want) {
				t.Fatalf("accepted %q; the signature is %q", sigs, want)
			}
		}
		if id == "" || now.Unix() < 0 || now.Unix() >= 1e12 {
			return // Unix seconds are 0 to 12 digits
		}
		signed := http.Header{}
		SetHeaders(signed, id, now, body, key)
		if err := Verify(key, signed, body, now, 0); err != nil {
			t.Fatalf("what Sign made does not verify: %v", err)
		}
		if err := Verify(DeriveSecret(key, "other"), signed, body, now, 0); !errors.Is(err, ErrSignature) {
			t.Fatalf("another key verifies: %v", err)
		}
	})
}
