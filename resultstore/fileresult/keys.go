package fileresult

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

// The keyring file (Options.KeyFile) is JSON:
//
//	{
//	  "version": 1,
//	  "active": "<id of the key that signs new URLs>",
//	  "keys": [
//	    {"id": "3f9a0c1e5b7d2a64", "secret": "<base64 of 32 random bytes>",
//	     "created": "2025-11-21T07:23:00Z", "retired": "2025-11-28T07:23:00Z"},
//	    ...
//	  ]
//	}
//
// Every listed key verifies URLs; only the active one signs. "retired" is
// set when a rotation replaced the key as active. It is written atomically
// (temporary file, fsync, rename, fsync of the directory) with mode 0600.

const (
	keyringVersion = 1
	secretLen      = 32
	maxKeyfileLen  = 1 << 20
	macDomain      = "arr-fileresult-url-v1"
	sigLen         = 43 // unpadded base64 of a SHA-256 HMAC
)

// secret is key material. It prints as "[redacted]" with any fmt verb, so
// it cannot leak through logs or errors by accident; encoding/json still
// stores it as base64.
type secret []byte

func (secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "[redacted]") }

type signingKey struct {
	ID      string    `json:"id"`
	Secret  secret    `json:"secret"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

type keyringFile struct {
	Version int          `json:"version"`
	Active  string       `json:"active"`
	Keys    []signingKey `json:"keys"`
}

type keyring struct {
	file   keyringFile
	active *signingKey
	byID   map[string]*signingKey
	info   os.FileInfo // of the file it was read from
}

func validKID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newSigningKey(now time.Time) signingKey {
	var id [8]byte
	sec := make([]byte, secretLen)
	_, _ = rand.Read(id[:]) // crypto/rand.Read does not fail (Go ≥ 1.24)
	_, _ = rand.Read(sec)
	return signingKey{ID: hex.EncodeToString(id[:]), Secret: sec, Created: now.UTC().Truncate(time.Second)}
}

func buildKeyring(kf keyringFile, path string) (*keyring, error) {
	bad := func(why string) error { return fmt.Errorf("fileresult: keyfile %s: %s", path, why) }
	if kf.Version != keyringVersion {
		return nil, bad(fmt.Sprintf("unsupported version %d", kf.Version))
	}
	kr := &keyring{file: kf, byID: make(map[string]*signingKey, len(kf.Keys))}
	for i := range kf.Keys {
		k := &kr.file.Keys[i]
		if !validKID(k.ID) {
			return nil, bad(fmt.Sprintf("key %d has an invalid id", i))
		}
		if len(k.Secret) < secretLen {
			return nil, bad(fmt.Sprintf("key %s is shorter than %d bytes", k.ID, secretLen))
		}
		if _, dup := kr.byID[k.ID]; dup {
			return nil, bad(fmt.Sprintf("key id %s listed twice", k.ID))
		}
		kr.byID[k.ID] = k
	}
	kr.active = kr.byID[kf.Active]
	if kr.active == nil {
		return nil, bad("the active key is not in the keyring")
	}
	return kr, nil
}

// loadKeyring reads the keyring at path. Errors never carry key material.
func loadKeyring(path string) (*keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("fileresult: keyfile %s has mode %04o; it must not be accessible by group or others (chmod 600 it)", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyfileLen+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyfileLen {
		return nil, fmt.Errorf("fileresult: keyfile %s is too large", path)
	}
	var kf keyringFile
	if err := json.Unmarshal(data, &kf); err != nil {
		// Do not wrap err: a syntax error quotes the offending character.
		return nil, fmt.Errorf("fileresult: keyfile %s is not a valid keyring (malformed JSON)", path)
	}
	kr, err := buildKeyring(kf, path)
	if err != nil {
		return nil, err
	}
	kr.info = fi
	return kr, nil
}

// openKeyring loads the keyring at path, creating it with a fresh key if it
// does not exist. Concurrent first opens agree on one keyring: the new file
// is linked into place only if none exists.
func openKeyring(path string, now time.Time) (*keyring, error) {
	kr, err := loadKeyring(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return kr, err
	}
	k := newSigningKey(now)
	kf := keyringFile{Version: keyringVersion, Active: k.ID, Keys: []signingKey{k}}
	tmp, err := writeTemp(filepath.Dir(path), kf)
	if err != nil {
		return nil, err
	}
	err = os.Link(tmp, path)
	_ = os.Remove(tmp)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("fileresult: create keyfile: %w", err)
	}
	if err == nil {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("fileresult: create keyfile: %w", err)
		}
	}
	return loadKeyring(path)
}

// writeTemp writes kf to a new mode-0600 temporary file in dir, fsynced,
// and returns its name.
func writeTemp(dir string, kf keyringFile) (string, error) {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".signing-keys-*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("fileresult: write keyfile: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("fileresult: write keyfile: %w", err)
	}
	return f.Name(), nil
}

// rotateKeyring adds a new active key to the keyring at path, marks the
// previous active key retired at now, and prunes keys retired more than
// retain ago.
func rotateKeyring(path string, now time.Time, retain time.Duration) (*keyring, error) {
	kr, err := loadKeyring(path)
	if err != nil {
		return nil, err
	}
	nk := newSigningKey(now)
	kf := keyringFile{Version: keyringVersion, Active: nk.ID}
	for _, k := range kr.file.Keys {
		if k.ID == kr.file.Active && k.Retired.IsZero() {
			k.Retired = now.UTC().Truncate(time.Second)
		}
		if !k.Retired.IsZero() && now.Sub(k.Retired) > retain {
			continue // every URL it signed has expired
		}
		kf.Keys = append(kf.Keys, k)
	}
	kf.Keys = append(kf.Keys, nk)
	tmp, err := writeTemp(filepath.Dir(path), kf)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("fileresult: rotate keyfile: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("fileresult: rotate keyfile: %w", err)
	}
	return loadKeyring(path)
}

// RotateKeys rotates the keyring at keyfile: a new key becomes the one that
// signs, the previous one keeps verifying the URLs it signed, and keys
// retired more than DefaultMaxURLLifetime + KeyRetentionSlack ago are
// pruned. A running Store notices the change within seconds (it stats the
// file at most every 5 s when signing, and at once, at most every second,
// when it meets an unknown key id). Rotate from one place at a time.
//
// Use (*Store).RotateKeys for a store opened with a MaxURLLifetime other
// than the default.
func RotateKeys(keyfile string) error {
	_, err := rotateKeyring(keyfile, time.Now(), DefaultMaxURLLifetime+KeyRetentionSlack)
	return err
}

// RotateKeys rotates the store's keyring (see the package function
// RotateKeys), pruning keys retired more than Options.MaxURLLifetime +
// KeyRetentionSlack ago, and signs with the new key from now on.
func (s *Store) RotateKeys() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	kr, err := rotateKeyring(s.keyfile, s.now(), s.opts.MaxURLLifetime+KeyRetentionSlack)
	if err != nil {
		return err
	}
	s.ring.Store(kr)
	return nil
}

// ActiveKeyID returns the id of the key that signs new URLs.
func (s *Store) ActiveKeyID() string { return s.keys(false).active.ID }

const (
	reloadEvery      = 5 * time.Second
	forceReloadEvery = time.Second
)

// keys returns the keyring, re-reading the keyfile if it changed and the
// last check is old enough. Read errors keep the keys in memory.
func (s *Store) keys(force bool) *keyring {
	cur := s.ring.Load()
	every := reloadEvery
	if force {
		every = forceReloadEvery
	}
	now := time.Now().UnixNano()
	last := s.lastCheck.Load()
	if now-last < int64(every) || !s.lastCheck.CompareAndSwap(last, now) {
		return cur
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur = s.ring.Load()
	fi, err := os.Stat(s.keyfile)
	if err != nil || (os.SameFile(fi, cur.info) && fi.ModTime().Equal(cur.info.ModTime()) && fi.Size() == cur.info.Size()) {
		return cur
	}
	kr, err := loadKeyring(s.keyfile)
	if err != nil {
		return cur
	}
	s.ring.Store(kr)
	return kr
}

func mac(k *signingKey, key, se string) []byte {
	m := hmac.New(sha256.New, k.Secret)
	for i, part := range []string{macDomain, "GET", k.ID, se, key} {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(part))
	}
	return m.Sum(nil)
}

// signedQuery returns the query of a signed URL for key expiring at se.
func signedQuery(k *signingKey, key string, se int64) string {
	ses := strconv.FormatInt(se, 10)
	return "se=" + ses + "&kid=" + k.ID + "&sig=" + base64.RawURLEncoding.EncodeToString(mac(k, key, ses))
}

// Reasons a signed URL is refused.
var (
	errBadSignature = errors.New("the URL's signature is missing, malformed or not valid")
	errExpired      = errors.New("the URL has expired")
)

// verify checks the query parameters of a signed URL for key. It returns
// the expiry when the signature is valid and unexpired.
func (s *Store) verify(key string, q map[string][]string) (time.Time, error) {
	one := func(name string) (string, bool) {
		v := q[name]
		return firstOf(v), len(v) == 1
	}
	ses, ok1 := one("se")
	kid, ok2 := one("kid")
	sig, ok3 := one("sig")
	if !ok1 || !ok2 || !ok3 || len(sig) != sigLen || !validKID(kid) {
		return time.Time{}, errBadSignature
	}
	se, err := strconv.ParseInt(ses, 10, 64)
	if err != nil || se <= 0 || strconv.FormatInt(se, 10) != ses {
		return time.Time{}, errBadSignature
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return time.Time{}, errBadSignature
	}
	kr := s.ring.Load()
	k := kr.byID[kid]
	if k == nil {
		if k = s.keys(true).byID[kid]; k == nil {
			return time.Time{}, errBadSignature
		}
	}
	if !hmac.Equal(got, mac(k, key, ses)) {
		return time.Time{}, errBadSignature
	}
	exp := time.Unix(se, 0)
	now := s.now()
	// No URL outlives MaxURLLifetime: not from now, and not from the time
	// its key stopped signing.
	if exp.After(now.Add(s.opts.MaxURLLifetime + time.Minute)) {
		return time.Time{}, errBadSignature
	}
	if !k.Retired.IsZero() && exp.After(k.Retired.Add(s.opts.MaxURLLifetime+time.Minute)) {
		return time.Time{}, errBadSignature
	}
	if !now.Before(exp) {
		return exp, errExpired
	}
	return exp, nil
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
