package urlsign

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Keys is where a keyring is stored: a file (FileKeys), a blob object
// shared by every process (BlobKeys), memory (MemKeys). Its methods are
// safe for concurrent use.
type Keys interface {
	// Load returns the stored keyring and its version, an opaque token
	// that changes whenever a Store replaces it. It returns an error
	// wrapping ErrNoKeyring when none is stored and, when ifChanged is a
	// version and the stored keyring still has it, ErrUnchanged (without
	// reading it, where the store allows). Errors never carry key
	// material.
	Load(ctx context.Context, ifChanged string) (kr *Keyring, version string, err error)
	// Store replaces the keyring if its stored version is still version,
	// or, with version "", creates it if none is stored; otherwise it
	// returns an error wrapping ErrConflict and changes nothing.
	Store(ctx context.Context, kr *Keyring, version string) error
	// Close releases the Keys.
	Close() error
	// String names the keyring's location in errors.
	String() string
}

// Errors of Keys.
var (
	ErrNoKeyring = errors.New("urlsign: no keyring")
	ErrUnchanged = errors.New("urlsign: keyring unchanged")
	ErrConflict  = errors.New("urlsign: the keyring was changed concurrently")
)

// KeyRetentionSlack is how much longer than the maximum URL lifetime a
// retired key is kept to verify the URLs it signed.
const KeyRetentionSlack = time.Hour

// rotateAttempts bounds the retries of a rotation that lost a race.
const rotateAttempts = 5

// LoadOrCreate loads the keyring of keys, creating it with one new key
// (see New), made at now, if none is stored. Of several processes creating
// it at once one wins (Store is conditional), and every one of them
// returns the keyring that is stored, read back after the creation.
func LoadOrCreate(ctx context.Context, keys Keys, now time.Time) (*Keyring, string, error) {
	kr, ver, err := keys.Load(ctx, "")
	if !errors.Is(err, ErrNoKeyring) {
		return kr, ver, err
	}
	if err := keys.Store(ctx, NewKeyring(now), ""); err != nil && !errors.Is(err, ErrConflict) {
		return nil, "", err
	}
	kr, ver, err = keys.Load(ctx, "")
	if errors.Is(err, ErrNoKeyring) {
		return nil, "", fmt.Errorf("urlsign: keyring %s was created but cannot be read back", keys)
	}
	return kr, ver, err
}

// RotateKeys rotates the keyring of keys at now (see Keyring.Rotate): a
// new key signs from now on, the previous active key is retired and keeps
// verifying the URLs it signed, and keys retired more than maxURLLifetime
// + KeyRetentionSlack ago are pruned. The update is conditional on the
// version read and retried when another process changed the keyring in
// between, so a concurrent rotation is never lost (two concurrent
// rotations add two keys), as far as keys' Store is atomic. Running
// signers on the keyring pick the new key up at their next reload, or as
// soon as they verify a URL signed with it. It returns the stored keyring
// and its version.
func RotateKeys(ctx context.Context, keys Keys, now time.Time, maxURLLifetime time.Duration) (*Keyring, string, error) {
	return updateKeys(ctx, keys, "rotating", func(kr *Keyring) (*Keyring, error) {
		return kr.Rotate(now, maxURLLifetime+KeyRetentionSlack), nil
	})
}

// RevokeKey removes the key kid from the keyring of keys (see
// Keyring.Revoke), conditionally and with retries as RotateKeys: the URLs
// it signed stop verifying in every signer on the keyring at its next
// reload (HMACOptions.ReloadInterval, 5 s by default). The active key
// cannot be revoked: rotate first. It returns the stored keyring and its
// version.
func RevokeKey(ctx context.Context, keys Keys, kid string) (*Keyring, string, error) {
	return updateKeys(ctx, keys, "revoking a key of", func(kr *Keyring) (*Keyring, error) { return kr.Revoke(kid) })
}

// updateKeys replaces the keyring of keys with f of it, conditionally on
// the version read, retrying when another process changed it in between.
func updateKeys(ctx context.Context, keys Keys, doing string, f func(*Keyring) (*Keyring, error)) (*Keyring, string, error) {
	for range rotateAttempts {
		kr, ver, err := keys.Load(ctx, "")
		if errors.Is(err, ErrNoKeyring) {
			return nil, "", fmt.Errorf("urlsign: keyring %s is gone", keys)
		}
		if err != nil {
			return nil, "", err
		}
		next, err := f(kr)
		if err != nil {
			return nil, "", err
		}
		err = keys.Store(ctx, next, ver)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return keys.Load(ctx, "")
	}
	return nil, "", fmt.Errorf("urlsign: %s keyring %s: changed concurrently %d times", doing, keys, rotateAttempts)
}

// MemKeys keeps a keyring in memory, for tests: signers sharing one
// MemKeys share the keyring, as processes share a file or an object.
type MemKeys struct {
	mu   sync.Mutex
	data []byte // the keyring's stored form; nil when none
	ver  int
}

// NewMemKeys returns an empty MemKeys.
func NewMemKeys() *MemKeys { return &MemKeys{} }

var _ Keys = (*MemKeys)(nil)

// Load implements Keys.
func (m *MemKeys) Load(ctx context.Context, ifChanged string) (*Keyring, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil, "", ErrNoKeyring
	}
	ver := strconv.Itoa(m.ver)
	if ifChanged == ver {
		return nil, "", ErrUnchanged
	}
	kr, err := Parse(m.data)
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: keyring %s: %v", m, err)
	}
	return kr, ver, nil
}

// Store implements Keys, atomically.
func (m *MemKeys) Store(ctx context.Context, kr *Keyring, version string) error {
	data, err := kr.Marshal()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if (version == "") != (m.data == nil) || version != "" && version != strconv.Itoa(m.ver) {
		return ErrConflict
	}
	m.data = data
	m.ver++
	return nil
}

// Close implements Keys; the keyring stays.
func (m *MemKeys) Close() error { return nil }

func (m *MemKeys) String() string { return "in memory" }
