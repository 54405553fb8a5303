package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	arr "github.com/arrhq/arr"
)

func TestParseKeys(t *testing.T) {
	const secret = "s3cret-s3cret-s3cret"
	sum := sha256.Sum256([]byte(secret))
	hash := hex.EncodeToString(sum[:])
	for _, c := range []struct {
		name    string
		in      string
		want    []arr.Caller // nil: an error
		err     string       // part of the error
		warning string
	}{
		{name: "plain", in: "alice:" + secret + "\n", want: []arr.Caller{{Principal: "alice", Tenant: "alice"}}},
		{name: "comments and blanks", in: "# keys\n\n  # indented\nalice:" + secret + "\n\n", want: []arr.Caller{{Principal: "alice", Tenant: "alice"}}},
		{name: "hash", in: "alice:sha256:" + hash, want: []arr.Caller{{Principal: "alice", Tenant: "alice"}}},
		{name: "upper-case hash", in: "alice:sha256:" + strings.ToUpper(hash), want: []arr.Caller{{Principal: "alice", Tenant: "alice"}}},
		{name: "attributes", in: "root:" + secret + " role=admin\tTenant=x\n", err: `keys:1: "root": unknown attribute "Tenant"`},
		{name: "admin and tenant", in: "root:" + secret + "  role=admin   tenant=ops\nbob:other-other-other role=user", want: []arr.Caller{{Principal: "root", Tenant: "ops", Admin: true}, {Principal: "bob", Tenant: "bob"}}},
		{name: "no colon", in: "# x\nalice " + secret, err: "keys:2: want name:key"},
		{name: "empty key", in: "alice:", err: "keys:1: want name:key"},
		{name: "empty name", in: ":" + secret, err: "keys:1: want name:key"},
		{name: "bad key chars", in: "alice:a,b", err: `keys:1: "alice": a key is letters`},
		{name: "short hash", in: "alice:sha256:abcd", err: "keys:1: \"alice\": a stored hash is sha256: and 64 hex digits"},
		{name: "non-hex hash", in: "alice:sha256:" + strings.Repeat("z", 64), err: "64 hex digits"},
		{name: "bad role", in: "alice:" + secret + " role=root", err: `unknown attribute "role"`},
		{name: "empty tenant", in: "alice:" + secret + " tenant=", err: `unknown attribute "tenant"`},
		{name: "duplicate name", in: "alice:" + secret + "\nalice:another-another-1", err: `keys:2: the name "alice" is also on line 1`},
		{name: "duplicate key", in: "alice:" + secret + "\nbob:sha256:" + hash, err: `keys:2: "bob" has the same key as "alice" on line 1`},
		{name: "empty file", in: "# nothing\n", err: "holds no key"},
		{name: "control in name", in: "al\x01ice:" + secret, err: "keys:1: the name is not a valid principal"},
		{name: "short key", in: "alice:short", want: []arr.Caller{{Principal: "alice", Tenant: "alice"}}, warning: `keys:1: the key of "alice" is shorter than 16`},
		{name: "every error", in: "a\nb:" + secret + "\nb:x-" + secret, err: "keys:1: want name:key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			set, warnings, err := ParseKeys("keys", strings.NewReader(c.in))
			if c.want == nil {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), hash) {
					t.Errorf("the error echoes a key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Entries) != len(c.want) {
				t.Fatalf("%d entries, want %d", len(set.Entries), len(c.want))
			}
			for i, e := range set.Entries {
				if e.Caller != c.want[i] {
					t.Errorf("entry %d: %+v, want %+v", i, e.Caller, c.want[i])
				}
			}
			if c.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], c.warning)) {
				t.Errorf("warnings %q, want %q", warnings, c.warning)
			}
			if c.warning == "" && len(warnings) > 0 {
				t.Errorf("warnings %q", warnings)
			}
		})
	}
	// Every error of a file is reported, each with its line.
	_, _, err := ParseKeys("keys", strings.NewReader("a\nb:"+secret+"\nb:x-"+secret))
	if err == nil || !strings.Contains(err.Error(), "keys:1:") || !strings.Contains(err.Error(), "keys:3:") {
		t.Errorf("every error: %v", err)
	}
}

// A stored hash authenticates the key it is the hash of, and HashKey
// writes that form.
func TestHashedKey(t *testing.T) {
	k := NewAPIKeys(mustParse(t, "alice:"+HashKey("alice-key-0123456789")))
	c, err := k.Authenticate(req("Bearer alice-key-0123456789"))
	if err != nil || c.Principal != "alice" {
		t.Fatalf("%v %v", c, err)
	}
}

func TestAPIKeysReloadAndPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte("alice:alice-key-0123456789\n"), 0o644)
	k, warnings, err := LoadAPIKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "readable by every user") {
		t.Errorf("warnings %q", warnings)
	}
	os.WriteFile(path, []byte("bob:bob-key-0123456789\n"), 0o600)
	if _, err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(req("Bearer alice-key-0123456789")); err == nil {
		t.Error("a removed key still authenticates")
	}
	if c, err := k.Authenticate(req("Bearer bob-key-0123456789")); err != nil || c.Principal != "bob" {
		t.Errorf("bob after reload: %v %v", c, err)
	}
	// A broken file keeps the keys served.
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := k.Reload(); err == nil {
		t.Error("reloading a broken file succeeded")
	}
	if c, err := k.Authenticate(req("Bearer bob-key-0123456789")); err != nil || c.Principal != "bob" {
		t.Errorf("bob after a failed reload: %v %v", c, err)
	}
}

// lookup compares digests with crypto/subtle: a key that shares every
// byte but the last with a real one, and a real key's digest sent as a
// key, are refused.
func TestAPIKeyLookupExact(t *testing.T) {
	set := mustParse(t, "alice:alice-key-0123456789\nbob:bob-key-0123456789")
	for _, k := range []string{"alice-key-0123456788", "alice-key-012345678", "", HashKey("alice-key-0123456789"), "bob-key-0123456789 "} {
		if c, ok := set.lookup(k); ok {
			t.Errorf("lookup(%q) = %v", k, c)
		}
	}
	if c, ok := set.lookup("bob-key-0123456789"); !ok || c.Principal != "bob" {
		t.Errorf("bob: %v %v", c, ok)
	}
}

func FuzzParseKeys(f *testing.F) {
	for _, s := range []string{
		"alice:alice-key-0123456789\n",
		"# c\n\nroot:sha256:" + strings.Repeat("ab", 32) + " role=admin tenant=ops\n",
		"a:b\na:b\n", "x", ":", "a:sha256:", "a:k tenant=\x00", "a:k\r\nb:k2\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		set, _, err := ParseKeys("keys", strings.NewReader(in))
		if err != nil {
			if set != nil {
				t.Fatal("a set with an error")
			}
			return
		}
		names := map[string]bool{}
		for _, e := range set.Entries {
			if e.Caller.Valid() != nil || e.Caller.Tenant == "" {
				t.Fatalf("invalid caller %+v", e.Caller)
			}
			if names[e.Caller.Principal] {
				t.Fatalf("duplicate %q", e.Caller.Principal)
			}
			names[e.Caller.Principal] = true
			if c, ok := set.byDigest[e.Digest]; !ok || set.Entries[c].Caller != e.Caller {
				t.Fatalf("entry %+v not indexed", e.Caller)
			}
		}
	})
}

func BenchmarkAPIKeyAuthenticate(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		sb.WriteString("user" + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i >> 8), byte(i)}) + ":key-" + hex.EncodeToString([]byte{byte(i >> 8), byte(i), 1, 2, 3, 4, 5, 6, 7}) + "\n")
	}
	sb.WriteString("alice:alice-key-0123456789\n")
	h := Middleware(http200, NewAPIKeys(mustParse(b, sb.String())), Options{})
	r := req("Bearer alice-key-0123456789")
	b.ReportAllocs()
	for b.Loop() {
		w := discardWriter{h: http.Header{}}
		h.ServeHTTP(&w, r)
		if w.code != 200 {
			b.Fatal(w.code)
		}
	}
}

var http200 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }
