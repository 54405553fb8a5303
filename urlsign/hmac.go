package urlsign

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of HMACOptions.
const (
	// DefaultPrefix is the URL path signed URLs lie under.
	DefaultPrefix = "/blobs/"
	// DefaultMaxURLLifetime bounds the expiry of signed URLs (7 days).
	DefaultMaxURLLifetime = 7 * 24 * time.Hour
	// DefaultReloadInterval is how often a signer re-reads its keyring to
	// pick up a rotation made elsewhere.
	DefaultReloadInterval = 5 * time.Second
	// forceReloadEvery bounds the re-reads caused by URLs naming a key id
	// the signer does not know.
	forceReloadEvery = time.Second
)

// FileDomain is the signature domain of the URLs of the file and embedded
// result stores (see Scheme.Domain).
const FileDomain = "arr-fileresult-url-v1"

// HMACOptions configure an HMAC driver. The zero value of every field but
// Domain means its default.
type HMACOptions struct {
	// Domain separates these URLs' signatures from other signers' (see
	// Scheme.Domain). Required; it must never change for a kind of store.
	Domain string
	// ExactQuery makes verification refuse any query but exactly se, kid
	// and sig (see Scheme.ExactQuery).
	ExactQuery bool
	// Prefix is the URL path under which the URLs lie and Handler serves
	// them; it begins and ends with "/" and is a plain path. Default:
	// DefaultPrefix ("/blobs/").
	Prefix string
	// MaxURLLifetime is how far in the future a signed URL may expire:
	// SignedURL refuses a later expiry and verification refuses a URL
	// whose expiry is later than now + MaxURLLifetime (+1 minute for clock
	// skew), or than its key's retirement + MaxURLLifetime (+1 minute). A
	// retired key verifies URLs for MaxURLLifetime + KeyRetentionSlack
	// after its retirement and is pruned by the first rotation after
	// that. Every signer sharing a keyring should use the same. Default:
	// DefaultMaxURLLifetime (7 days).
	MaxURLLifetime time.Duration
	// ReloadInterval is how often the signer re-reads the keyring (a
	// Load conditional on its version) when it signs or verifies. A URL
	// naming a key id it does not know makes it re-read at once, at most
	// once a second. Default: DefaultReloadInterval (5 s).
	ReloadInterval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// HMAC is the driver of URLs that arr signs itself with the keys of a
// keyring (see the package documentation for their format) and serves
// through Signer.Handler. It implements Driver, Verifier and Rotator.
type HMAC struct {
	keys  Keys
	opts  HMACOptions
	sc    Scheme
	mu    sync.Mutex // serializes keyring reloads and rotations
	ring  atomic.Pointer[loadedRing]
	life  atomic.Int64 // the URL lifetime in force: MaxURLLifetime or a lower limit
	check atomic.Int64 // unix nanoseconds of the last keyring check
	force atomic.Int64 // … and of the last one an unknown key id caused
}

type loadedRing struct {
	*Keyring
	version string
}

var (
	_ Driver   = (*HMAC)(nil)
	_ Verifier = (*HMAC)(nil)
	_ Rotator  = (*HMAC)(nil)
)

// NewHMAC returns an HMAC driver over keys: it loads the keyring, creating
// it with a fresh random key if none is stored (see LoadOrCreate), and
// fails if that fails. It owns keys: Close closes them, also when NewHMAC
// fails.
func NewHMAC(ctx context.Context, keys Keys, opts HMACOptions) (*HMAC, error) {
	h, err := newHMAC(ctx, keys, opts)
	if err != nil {
		_ = keys.Close()
		return nil, err
	}
	return h, nil
}

func newHMAC(ctx context.Context, keys Keys, opts HMACOptions) (*HMAC, error) {
	if opts.Domain == "" {
		return nil, errors.New("urlsign: HMACOptions.Domain is empty")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return nil, err
	}
	switch {
	case opts.MaxURLLifetime == 0:
		opts.MaxURLLifetime = DefaultMaxURLLifetime
	case opts.MaxURLLifetime < 0:
		return nil, errors.New("urlsign: negative MaxURLLifetime")
	}
	if opts.ReloadInterval <= 0 {
		opts.ReloadInterval = DefaultReloadInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &HMAC{keys: keys, opts: opts, sc: Scheme{Domain: opts.Domain, MaxLifetime: opts.MaxURLLifetime, ExactQuery: opts.ExactQuery}}
	h.life.Store(int64(opts.MaxURLLifetime))
	kr, ver, err := LoadOrCreate(ctx, keys, opts.Now())
	if err != nil {
		return nil, err
	}
	h.ring.Store(&loadedRing{kr, ver})
	h.check.Store(time.Now().UnixNano())
	return h, nil
}

// ValidatePrefix returns nil if p is a valid URL prefix: a plain URL path
// that begins and ends with "/", without "//".
func ValidatePrefix(p string) error {
	if len(p) < 1 || p[0] != '/' || p[len(p)-1] != '/' {
		return fmt.Errorf("urlsign: prefix %q must begin and end with /", p)
	}
	u, err := url.Parse(p)
	if err != nil || u.Path != p || u.RawQuery != "" || u.Fragment != "" || strings.Contains(p, "//") {
		return fmt.Errorf("urlsign: prefix %q is not a plain URL path", p)
	}
	return nil
}

// Prefix implements Verifier.
func (h *HMAC) Prefix() string { return h.opts.Prefix }

// MaxURLLifetime returns the URL lifetime in force: HMACOptions.MaxURLLifetime,
// defaulted, or the lower limit LimitURLLifetime set.
func (h *HMAC) MaxURLLifetime() time.Duration { return time.Duration(h.life.Load()) }

// LimitURLLifetime lowers the URL lifetime in force to d, from now on:
// SignedURL refuses an expiry more than d ahead, Verify refuses a URL that
// expires more than d (+1 minute for clock skew) after now, even when
// validly signed, and RotateKeys prunes keys retired more than d +
// KeyRetentionSlack ago. A d of zero or less, or above
// HMACOptions.MaxURLLifetime, restores MaxURLLifetime. Signer.SetMaxTTL
// calls it.
func (h *HMAC) LimitURLLifetime(d time.Duration) {
	if d <= 0 || d > h.opts.MaxURLLifetime {
		d = h.opts.MaxURLLifetime
	}
	h.life.Store(int64(d))
}

// Keys returns the keyring's location.
func (h *HMAC) Keys() Keys { return h.keys }

// SignedURL returns the relative URL (the prefix, the escaped key and the
// query se, kid, sig) that lets its holder GET or HEAD the result of key
// until expiry (rounded down to the second), signed with the active key.
// An expiry later than now + MaxURLLifetime is refused, and so is a zero
// one; one in the past gives a URL that is refused when used. It does I/O
// only when the keyring is due for a reload.
func (h *HMAC) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	if expiry.IsZero() || expiry.Unix() <= 0 {
		return "", errors.New("urlsign: signed URL needs an expiry")
	}
	if life := h.MaxURLLifetime(); expiry.After(h.opts.Now().Add(life)) {
		return "", fmt.Errorf("urlsign: signed URL for %q: expiry %s is more than %v ahead: %w", key, expiry.UTC().Format(time.RFC3339), life, ErrTooLong)
	}
	k := h.keyring(ctx, false).Active()
	return h.opts.Prefix + EscapeKey(key) + "?" + h.sc.Sign(k, key, expiry.Unix()), nil
}

// Verify implements Verifier: see Scheme.VerifyRequest.
func (h *HMAC) Verify(r *http.Request, validKey func(string) error) (string, time.Time, error) {
	ctx := r.Context()
	lookup := func(kid string) *Key {
		if k := h.keyring(ctx, false).Key(kid); k != nil {
			return k
		}
		return h.keyring(ctx, true).Key(kid)
	}
	sc := h.sc
	sc.MaxLifetime = h.MaxURLLifetime()
	return sc.VerifyRequest(r, h.opts.Prefix, validKey, h.opts.Now(), lookup)
}

// RotateKeys rotates the keyring (see the package function RotateKeys)
// with this driver's MaxURLLifetime, and signs with the new key from now
// on. Other signers on the keyring verify the new key's URLs at once and
// sign with it after their next reload.
func (h *HMAC) RotateKeys(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	kr, ver, err := RotateKeys(ctx, h.keys, h.opts.Now(), h.MaxURLLifetime())
	if err != nil {
		return err
	}
	h.ring.Store(&loadedRing{kr, ver})
	h.check.Store(time.Now().UnixNano())
	return nil
}

// ActiveKeyID returns the id of the key that signs new URLs.
func (h *HMAC) ActiveKeyID() string { return h.ring.Load().Active().ID }

// Keyring returns the keyring in memory (not reloaded).
func (h *HMAC) Keyring() *Keyring { return h.ring.Load().Keyring }

// Close closes the keys.
func (h *HMAC) Close() error { return h.keys.Close() }

// keyring returns the keyring, re-reading it (conditionally on its
// version) if the last check is older than ReloadInterval or, when force
// is set, if no forced re-read happened in the last second. Read errors
// keep the keys in memory.
func (h *HMAC) keyring(ctx context.Context, force bool) *Keyring {
	cur := h.ring.Load()
	now := time.Now().UnixNano()
	if force {
		last := h.force.Load()
		if now-last < int64(forceReloadEvery) || !h.force.CompareAndSwap(last, now) {
			return cur.Keyring
		}
	} else {
		last := h.check.Load()
		if now-last < int64(h.opts.ReloadInterval) || !h.check.CompareAndSwap(last, now) {
			return cur.Keyring
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur = h.ring.Load()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kr, ver, err := h.keys.Load(ctx, cur.version)
	if err != nil {
		return cur.Keyring
	}
	h.check.Store(time.Now().UnixNano())
	h.ring.Store(&loadedRing{kr, ver})
	return kr
}
