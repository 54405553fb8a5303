package urlsign

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// A keyring is JSON:
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
// set when a rotation replaced the key as active.

const (
	// Version is the keyring format version.
	Version = 1
	// SecretLen is the length in bytes of a new key's secret, and the
	// least a keyring's keys may have.
	SecretLen = 32
	// MaxLen is the largest keyring, in bytes, that Parse accepts.
	MaxLen = 1 << 20
)

// Secret is key material. It prints as "[redacted]" with any fmt verb, so
// it cannot leak through logs or errors by accident; encoding/json still
// stores it as base64.
type Secret []byte

// Format prints "[redacted]".
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "[redacted]") }

// Key is a signing key of a keyring.
type Key struct {
	ID      string    `json:"id"`
	Secret  Secret    `json:"secret"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"` // zero while it is the active key
}

// keyringJSON is the stored form of a keyring.
type keyringJSON struct {
	Version int    `json:"version"`
	Active  string `json:"active"`
	Keys    []Key  `json:"keys"`
}

// Keyring is a valid keyring: every key has a valid id and a secret of at
// least SecretLen bytes, no id is listed twice, and the active key is one
// of them. A Keyring is not modified once built, so it may be shared
// between goroutines.
type Keyring struct {
	file   keyringJSON
	active *Key
	byID   map[string]*Key
}

// ValidKID reports whether id is a valid key id: 1 to 64 ASCII letters,
// digits, '-', '_' or '.'.
func ValidKID(id string) bool {
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

// NewKey returns a key with a random 16 hex digit id and a random secret
// of SecretLen bytes, created at now (to the second).
func NewKey(now time.Time) Key {
	var id [8]byte
	sec := make([]byte, SecretLen)
	_, _ = rand.Read(id[:]) // crypto/rand.Read does not fail (Go ≥ 1.24)
	_, _ = rand.Read(sec)
	return Key{ID: hex.EncodeToString(id[:]), Secret: sec, Created: now.UTC().Truncate(time.Second)}
}

// NewKeyring returns a keyring holding one new key (see NewKey), active.
func NewKeyring(now time.Time) *Keyring {
	k := NewKey(now)
	kr, err := build(keyringJSON{Version: Version, Active: k.ID, Keys: []Key{k}})
	if err != nil {
		panic(err) // a new key is valid
	}
	return kr
}

// Parse checks and indexes a stored keyring. Its errors say what is wrong
// without the driver's prefix or location, and never carry key material.
func Parse(data []byte) (*Keyring, error) {
	if len(data) > MaxLen {
		return nil, fmt.Errorf("too large")
	}
	var kf keyringJSON
	if err := json.Unmarshal(data, &kf); err != nil {
		// Do not wrap err: a syntax error quotes the offending character.
		return nil, fmt.Errorf("not a valid keyring (malformed JSON)")
	}
	return build(kf)
}

func build(kf keyringJSON) (*Keyring, error) {
	if kf.Version != Version {
		return nil, fmt.Errorf("unsupported version %d", kf.Version)
	}
	kr := &Keyring{file: kf, byID: make(map[string]*Key, len(kf.Keys))}
	for i := range kr.file.Keys {
		k := &kr.file.Keys[i]
		if !ValidKID(k.ID) {
			return nil, fmt.Errorf("key %d has an invalid id", i)
		}
		if len(k.Secret) < SecretLen {
			return nil, fmt.Errorf("key %s is shorter than %d bytes", k.ID, SecretLen)
		}
		if _, dup := kr.byID[k.ID]; dup {
			return nil, fmt.Errorf("key id %s listed twice", k.ID)
		}
		kr.byID[k.ID] = k
	}
	kr.active = kr.byID[kf.Active]
	if kr.active == nil {
		return nil, fmt.Errorf("the active key is not in the keyring")
	}
	return kr, nil
}

// Marshal returns the keyring's stored form: indented JSON and a newline.
func (kr *Keyring) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(kr.file, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Active returns the key that signs new URLs.
func (kr *Keyring) Active() *Key { return kr.active }

// Key returns the key with id, or nil if the keyring has none.
func (kr *Keyring) Key(id string) *Key { return kr.byID[id] }

// Keys returns a copy of the keyring's keys, in stored order.
func (kr *Keyring) Keys() []Key { return slices.Clone(kr.file.Keys) }

// Rotate returns the keyring rotated at now: a new key (see NewKey) is
// added, last, and becomes the active one; the previous active key is
// marked retired at now (to the second) and keeps verifying the URLs it
// signed; keys retired more than retain ago, when every URL they signed
// has expired, are dropped. retain should be the longest URL lifetime
// plus a margin. kr itself is unchanged.
func (kr *Keyring) Rotate(now time.Time, retain time.Duration) *Keyring {
	nk := NewKey(now)
	for kr.byID[nk.ID] != nil {
		nk = NewKey(now)
	}
	kf := keyringJSON{Version: Version, Active: nk.ID}
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
	out, err := build(kf)
	if err != nil {
		panic(err) // a rotation of a valid keyring is valid
	}
	return out
}

// ErrUnknownKey is wrapped by the error of a revocation of a key id the
// keyring does not hold.
var ErrUnknownKey = errors.New("urlsign: no such key in the keyring")

// Revoke returns the keyring without the key id: the URLs it signed no
// longer verify. The active key cannot be revoked (rotate first), and an
// id the keyring does not hold is an error wrapping ErrUnknownKey. kr
// itself is unchanged.
func (kr *Keyring) Revoke(id string) (*Keyring, error) {
	if kr.byID[id] == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
	}
	if id == kr.file.Active {
		return nil, fmt.Errorf("urlsign: key %s signs new URLs and cannot be revoked: rotate first", id)
	}
	kf := keyringJSON{Version: Version, Active: kr.file.Active}
	for _, k := range kr.file.Keys {
		if k.ID != id {
			kf.Keys = append(kf.Keys, k)
		}
	}
	return build(kf)
}
