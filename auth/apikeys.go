package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	arr "github.com/arrhq/arr"
)

// KeyEntry is one API key of a key file: the caller it stands for and the
// SHA-256 digest of the key (the key itself is not kept).
type KeyEntry struct {
	Caller arr.Caller
	Digest [sha256.Size]byte
	Line   int // the line of the file it was read from
}

// KeySet is a parsed API key file.
type KeySet struct {
	Entries  []KeyEntry
	byDigest map[[sha256.Size]byte]int
}

// MinKeyLength is the length under which ParseKeys warns about a key.
const MinKeyLength = 16

// ParseKeys reads an API key file, named name in its messages. Each line
// is one key:
//
//	name:key [role=admin|user] [tenant=T]
//	name:sha256:<64 hex digits> [role=admin|user] [tenant=T]
//
// name is the principal (1 to 256 bytes, no ':' and no white space); key
// is what clients send as `Authorization: Bearer <key>`, made of letters,
// digits and -._~+/ (optionally followed by '='), so a key cannot start
// with "sha256:": that form is the hex SHA-256 digest of the key, for a
// file that should not hold the keys themselves. Attributes follow after
// white space: role=admin makes the caller an admin; tenant=T sets its
// tenant (default: its name). Blank lines and lines starting with '#'
// are skipped.
//
// A malformed line, a name or key used twice, or an unknown attribute is
// an error naming the line; no message holds a key. The warnings are
// for keys shorter than MinKeyLength.
func ParseKeys(name string, r io.Reader) (*KeySet, []string, error) {
	set := &KeySet{byDigest: map[[sha256.Size]byte]int{}}
	names := map[string]int{}
	var errs []error
	var warnings []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		fields := strings.Fields(line)
		who, secret, found := strings.Cut(fields[0], ":")
		if !found || who == "" || secret == "" {
			bad("want name:key or name:sha256:<64 hex digits>, then optional role=admin and tenant=T")
			continue
		}
		c := arr.Caller{Principal: who}
		if c.Valid() != nil {
			bad("the name is not a valid principal (1 to 256 bytes of UTF-8, no control characters)")
			continue
		}
		var digest [sha256.Size]byte
		if h, ok := strings.CutPrefix(secret, "sha256:"); ok {
			if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
				bad("%q: a stored hash is sha256: and 64 hex digits", who)
				continue
			} else {
				copy(digest[:], b)
			}
		} else {
			if !isB64Token(secret) {
				bad("%q: a key is letters, digits and -._~+/ (then optional '=')", who)
				continue
			}
			if len(secret) < MinKeyLength {
				warnings = append(warnings, fmt.Sprintf("%s:%d: the key of %q is shorter than %d characters: easy to guess", name, n, who, MinKeyLength))
			}
			digest = sha256.Sum256([]byte(secret))
		}
		ok := true
		for _, attr := range fields[1:] {
			k, v, _ := strings.Cut(attr, "=")
			switch {
			case k == "role" && v == "admin":
				c.Admin = true
			case k == "role" && v == "user":
			case k == "tenant" && v != "":
				c.Tenant = v
				if c.Valid() != nil {
					bad("%q: the tenant is not valid (1 to 256 bytes of UTF-8, no control characters)", who)
					ok = false
				}
			default:
				bad("%q: unknown attribute %q (want role=admin, role=user or tenant=T)", who, k)
				ok = false
			}
		}
		if !ok {
			continue
		}
		if l, dup := names[who]; dup {
			bad("the name %q is also on line %d", who, l)
			continue
		}
		if i, dup := set.byDigest[digest]; dup {
			bad("%q has the same key as %q on line %d", who, set.Entries[i].Caller.Principal, set.Entries[i].Line)
			continue
		}
		if c.Tenant == "" {
			c.Tenant = c.Principal
		}
		names[who] = n
		set.byDigest[digest] = len(set.Entries)
		set.Entries = append(set.Entries, KeyEntry{Caller: c, Digest: digest, Line: n})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("%s:%d: a line is longer than 64 KiB", name, n+1)
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	if len(set.Entries) == 0 {
		return nil, warnings, fmt.Errorf("%s: holds no key", name)
	}
	return set, warnings, nil
}

// lookup finds the entry of a presented key: the key's SHA-256 digest
// picks the entry, and the digests are compared again in constant time.
// Lookup by digest reveals nothing of the key's bytes through timing:
// the digest of a guess says nothing about the digest of the key.
func (s *KeySet) lookup(key string) (arr.Caller, bool) {
	d := sha256.Sum256([]byte(key))
	i, ok := s.byDigest[d]
	if !ok {
		return arr.Caller{}, false
	}
	e := &s.Entries[i]
	if subtle.ConstantTimeCompare(e.Digest[:], d[:]) != 1 {
		return arr.Caller{}, false
	}
	return e.Caller, true
}

// APIKeys authenticates requests by `Authorization: Bearer <key>` against
// a key file (see ParseKeys). A bearer token that is not a key of the
// file is refused with ErrInvalidToken, unless it has a JWT's shape: that
// is ErrNoCredentials, left to a JWT authenticator later in a Chain. The
// X-API-Key header is not read: keys travel only in Authorization, the
// header proxies and arr's own forwarding treat as a credential.
type APIKeys struct {
	path string
	set  atomic.Pointer[KeySet]
}

// LoadAPIKeys reads the key file at path. The warnings say which keys
// are short and whether the file is readable by every user of the
// machine.
func LoadAPIKeys(path string) (*APIKeys, []string, error) {
	a := &APIKeys{path: path}
	w, err := a.Reload()
	if err != nil {
		return nil, w, err
	}
	return a, w, nil
}

// NewAPIKeys returns an authenticator over a parsed key set (which it
// does not copy); Reload then fails.
func NewAPIKeys(set *KeySet) *APIKeys {
	a := &APIKeys{}
	a.set.Store(set)
	return a
}

// Reload reads the key file again and, when it parses, serves its keys
// from then on; on an error the keys served stay as they were.
func (a *APIKeys) Reload() (warnings []string, err error) {
	if a.path == "" {
		return nil, errors.New("auth: these API keys were not read from a file")
	}
	data, err := os.ReadFile(a.path)
	if err != nil {
		return nil, fmt.Errorf("API keys: %w", err)
	}
	if fi, err := os.Stat(a.path); err == nil && fi.Mode().Perm()&0o004 != 0 {
		warnings = append(warnings, fmt.Sprintf("%s is readable by every user of this machine (mode %s); chmod 600 it", a.path, fi.Mode().Perm()))
	}
	set, w, err := ParseKeys(a.path, bytes.NewReader(data))
	warnings = append(warnings, w...)
	if err != nil {
		return warnings, err
	}
	a.set.Store(set)
	return warnings, nil
}

// Len is the number of keys served.
func (a *APIKeys) Len() int { return len(a.set.Load().Entries) }

// Authenticate implements Authenticator.
func (a *APIKeys) Authenticate(r *http.Request) (arr.Caller, error) {
	tok, ok, bad := BearerToken(r)
	switch {
	case bad:
		return arr.Caller{}, fmt.Errorf("%w: the Authorization header is not a b64token", ErrInvalidToken)
	case !ok:
		return arr.Caller{}, ErrNoCredentials
	}
	if c, ok := a.set.Load().lookup(tok); ok {
		return c, nil
	}
	if looksLikeJWT(tok) {
		return arr.Caller{}, ErrNoCredentials
	}
	return arr.Caller{}, fmt.Errorf("%w: not a known API key (%d bytes)", ErrInvalidToken, len(tok))
}

// HashKey returns the stored form of key for a key file:
// "sha256:<64 hex digits>".
func HashKey(key string) string {
	d := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(d[:])
}
