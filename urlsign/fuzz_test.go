package urlsign

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// FuzzVerify feeds the signed-URL verifier arbitrary result keys, queries
// and paths. Properties: it never panics; it accepts a query only when the
// query's se, kid and sig are exactly those Sign gives for that key (so no
// mutation of a signed URL verifies), and never one that outlives
// MaxLifetime; a URL Sign made verifies, with its expiry, and not for
// another key; the key VerifyRequest finds in a path re-escapes to a path
// it finds again.
func FuzzVerify(f *testing.F) {
	sc := Scheme{Domain: "fuzz-domain", MaxLifetime: time.Hour}
	now := t0.Add(-10 * time.Minute)
	good := sc.Sign(&testKey, "a/b", t0.Unix())
	for _, s := range [][2]string{
		{"a/b", good}, {"a/b", good + "&x=1"}, {"a/c", good}, {"", ""}, {"a/b", "se=1&kid=k1&sig=" + good[len(good)-SigLen:]},
		{"dir/r 1.json", "se=1700000000&kid=k1&sig=OXdRXfm8txPRqIbu7RE3hAzm3a2e8easGVthaLOvQQ4"},
		{"a%2Fb", "se=99999999999999999999&kid=k1&sig="}, {"x", "%zz;&&=="},
	} {
		f.Add(s[0], s[1], false)
		f.Add(s[0], s[1], true)
	}
	lookup := lookupOf(&testKey)
	f.Fuzz(func(t *testing.T, key, rawQuery string, exact bool) {
		sc := sc
		sc.ExactQuery = exact
		exp, err := sc.Verify(key, rawQuery, now, lookup)
		if err == nil {
			q, perr := url.ParseQuery(rawQuery)
			if perr != nil {
				t.Fatalf("accepted an unparsable query %q", rawQuery)
			}
			se, _ := strconv.ParseInt(q.Get("se"), 10, 64)
			want := sc.Sign(&testKey, key, se)
			if "se="+q.Get("se")+"&kid="+q.Get("kid")+"&sig="+q.Get("sig") != want {
				t.Fatalf("accepted %q for key %q; the signature for it is %q", rawQuery, key, want)
			}
			if exact && rawQuery != want {
				t.Fatalf("ExactQuery accepted %q, not exactly %q", rawQuery, want)
			}
			if exp.After(now.Add(sc.MaxLifetime+time.Minute)) || !exp.Equal(time.Unix(se, 0)) {
				t.Fatalf("accepted expiry %v (now %v)", exp, now)
			}
		} else if err != ErrBadSignature && err != ErrExpired {
			t.Fatalf("unexpected error %v", err)
		}
		// What Sign makes verifies, for that key only.
		signed := sc.Sign(&testKey, key, t0.Unix())
		if exp, err := sc.Verify(key, signed, now, lookup); err != nil || !exp.Equal(t0) {
			t.Fatalf("Sign(%q) = %q does not verify: %v", key, signed, err)
		}
		if key != rawQuery {
			if _, err := sc.Verify(rawQuery, signed, now, lookup); err == nil {
				t.Fatalf("the URL signed for %q verifies for %q", key, rawQuery)
			}
		}
		// A path's key round-trips through EscapeKey.
		if k, ok := KeyFromPath("/r/"+key, "/r/"); ok {
			if k2, ok := KeyFromPath("/r/"+EscapeKey(k), "/r/"); !ok || k2 != k {
				t.Fatalf("key %q from path %q re-escapes to %q, read back as %q (%v)", k, "/r/"+key, EscapeKey(k), k2, ok)
			}
		}
		// VerifyRequest never panics on a request built from the inputs.
		if u, err := url.ParseRequestURI("/r/" + key + "?" + rawQuery); err == nil {
			_, _, _ = sc.VerifyRequest(&http.Request{Method: "GET", URL: u}, "/r/", func(string) error { return nil }, now, lookup)
		}
	})
}
