package fileresult

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/arrhq/arr/internal/urlsign"
)

// The keyring file (Options.KeyFile) is JSON in the format of
// internal/urlsign: every listed key verifies URLs; only the active one
// signs. It is written atomically (temporary file, fsync, rename, fsync of
// the directory) with mode 0600.

const (
	// macDomain separates this driver's signatures from other drivers'.
	// Changing it invalidates every URL signed before.
	macDomain = "arr-fileresult-url-v1"
)

// keyring is a parsed keyring file and the file it was read from.
type keyring struct {
	*urlsign.Keyring
	info os.FileInfo // of the file it was read from
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
	data, err := io.ReadAll(io.LimitReader(f, urlsign.MaxLen+1))
	if err != nil {
		return nil, err
	}
	kr, err := urlsign.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("fileresult: keyfile %s: %v", path, err)
	}
	return &keyring{Keyring: kr, info: fi}, nil
}

// openKeyring loads the keyring at path, creating it with a fresh key if it
// does not exist. Concurrent first opens agree on one keyring: the new file
// is linked into place only if none exists.
func openKeyring(path string, now time.Time) (*keyring, error) {
	kr, err := loadKeyring(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return kr, err
	}
	tmp, err := writeTemp(filepath.Dir(path), urlsign.New(now))
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

// writeTemp writes kr to a new mode-0600 temporary file in dir, fsynced,
// and returns its name.
func writeTemp(dir string, kr *urlsign.Keyring) (string, error) {
	data, err := kr.Marshal()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".signing-keys-*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("fileresult: write keyfile: %w", err)
	}
	_, err = f.Write(data)
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

// rotateKeyring rotates the keyring at path (see urlsign.Keyring.Rotate):
// adds a new active key, marks the previous active key retired at now, and
// prunes keys retired more than retain ago.
func rotateKeyring(path string, now time.Time, retain time.Duration) (*keyring, error) {
	kr, err := loadKeyring(path)
	if err != nil {
		return nil, err
	}
	tmp, err := writeTemp(filepath.Dir(path), kr.Rotate(now, retain))
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
func (s *Store) ActiveKeyID() string { return s.keys(false).Active().ID }

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

// scheme is how the store signs and verifies URLs.
func (s *Store) scheme() urlsign.Scheme {
	return urlsign.Scheme{Domain: macDomain, MaxLifetime: s.opts.MaxURLLifetime}
}

// signedQuery returns the query of a signed URL for key expiring at se.
func signedQuery(k *urlsign.Key, key string, se int64) string {
	return urlsign.Scheme{Domain: macDomain}.Sign(k, key, se)
}

// lookupKey returns the key with id kid, or nil. A key id the keyring in
// memory lacks makes it re-read the keyfile (at most once a second).
func (s *Store) lookupKey(kid string) *urlsign.Key {
	if k := s.ring.Load().Key(kid); k != nil {
		return k
	}
	return s.keys(true).Key(kid)
}
