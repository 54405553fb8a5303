package callback

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/arrhq/arr/urlsign"
	"github.com/arrhq/arr/webhook"
)

// DefaultSecretGrace is how long after a rotation callbacks are also
// signed with the secret the rotation retired (Secrets.Grace): the time a
// receiver has to switch to the new one.
const DefaultSecretGrace = 7 * 24 * time.Hour

// Secrets derives the signing secrets of callback scopes
// (arr.RouteSecretScope, arr.PrincipalSecretScope) from a keyring of
// master keys (urlsign.Keys: a file, a blob, an engine's own): each scope's
// secret is webhook.DeriveSecret of a master key, so each route and each
// principal has a secret of its own, and a receiver holding one can
// neither forge another's callbacks nor learn a master key. Every process
// over the same keyring derives the same secrets. Rotating the keyring
// (urlsign.RotateKeys; `arr keys rotate -callbacks`) rotates every
// scope's secret; for Grace after it, callbacks carry a signature by the
// retired secret too, as Standard Webhooks allows.
type Secrets struct {
	keys urlsign.Keys
	// Grace: see DefaultSecretGrace. Set before use.
	Grace time.Duration

	mu      sync.Mutex
	ring    *urlsign.Keyring
	version string
	loaded  time.Time
}

// NewSecrets returns the Secrets of keys' keyring, which it loads (and
// creates when there is none).
func NewSecrets(ctx context.Context, keys urlsign.Keys) (*Secrets, error) {
	kr, v, err := urlsign.LoadOrCreate(ctx, keys, time.Now())
	if err != nil {
		return nil, fmt.Errorf("callback secrets: %w", err)
	}
	return &Secrets{keys: keys, Grace: DefaultSecretGrace, ring: kr, version: v, loaded: time.Now()}, nil
}

// reloadEvery is how often the keyring is read again, for rotations made
// by another process.
const reloadEvery = 30 * time.Second

func (s *Secrets) keyring(ctx context.Context) *urlsign.Keyring {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.loaded) >= reloadEvery {
		s.loaded = time.Now()
		if kr, v, err := s.keys.Load(ctx, s.version); err == nil && kr != nil {
			s.ring, s.version = kr, v
		}
	}
	return s.ring
}

// Reload reads the keyring again now (after a rotation by this process).
func (s *Secrets) Reload(ctx context.Context) error {
	kr, v, err := s.keys.Load(ctx, "")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring, s.version, s.loaded = kr, v, time.Now()
	return nil
}

// Secret is a scope's secret under one master key.
type Secret struct {
	// KeyID is the master key's id.
	KeyID string `json:"keyId"`
	// Value is the secret in Standard Webhooks form (whsec_…).
	Value   string    `json:"secret"`
	Created time.Time `json:"created"`
	// Retired is when a rotation replaced it (zero: it is the current
	// one).
	Retired time.Time `json:"retired,omitzero"`
	raw     []byte
}

// For returns the secrets that sign scope's callbacks now: the current
// one first, then those retired within Grace, newest first.
func (s *Secrets) For(ctx context.Context, scope string) []Secret {
	kr := s.keyring(ctx)
	now := time.Now()
	var out []Secret
	for _, k := range kr.Keys() {
		if !k.Retired.IsZero() && now.Sub(k.Retired) > s.Grace {
			continue
		}
		raw := webhook.DeriveSecret(k.Secret, scope)
		out = append(out, Secret{KeyID: k.ID, Value: webhook.FormatSecret(raw), Created: k.Created, Retired: k.Retired, raw: raw})
	}
	slices.SortStableFunc(out, func(a, b Secret) int {
		switch {
		case a.Retired.IsZero() != b.Retired.IsZero():
			if a.Retired.IsZero() {
				return -1
			}
			return 1
		default:
			return b.Created.Compare(a.Created)
		}
	})
	return out
}

// signing returns the raw secrets of For(scope).
func (s *Secrets) signing(ctx context.Context, scope string) [][]byte {
	var out [][]byte
	for _, sec := range s.For(ctx, scope) {
		out = append(out, sec.raw)
	}
	return out
}
