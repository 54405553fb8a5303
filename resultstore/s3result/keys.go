package s3result

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The keyring object (Options.KeyringKey) is JSON, the format of the file
// driver's keyring file:
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
	keyringVersion = 1
	secretLen      = 32
	maxKeyringLen  = 1 << 20
	macDomain      = "arr-s3result-url-v1"
	sigLen         = 43 // unpadded base64 of a SHA-256 HMAC

	// KeyRetentionSlack is how much longer than the maximum URL lifetime a
	// retired signing key is kept to verify the URLs it signed.
	KeyRetentionSlack = time.Hour
	// KeyringReloadInterval is how often a store re-reads the keyring
	// object (a conditional GET) to pick up a rotation made elsewhere.
	KeyringReloadInterval = time.Minute
	// forceReloadEvery bounds the re-reads caused by URLs naming a key id
	// the store does not know.
	forceReloadEvery = time.Second
	// createSettle is the pause between writing a new keyring and reading
	// back the one that is stored (see openKeyring).
	createSettle = 200 * time.Millisecond
	// rotateAttempts bounds the retries of a rotation that lost a race.
	rotateAttempts = 5
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

// keyring is a parsed keyring object and the ETag of the version it was
// read from.
type keyring struct {
	file   keyringFile
	active *signingKey
	byID   map[string]*signingKey
	etag   string
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

// parseKeyring checks and indexes a keyring object's bytes. Errors never
// carry key material.
func (s *Store) parseKeyring(data []byte, etag string) (*keyring, error) {
	bad := func(why string) error {
		return fmt.Errorf("s3result: keyring s3://%s/%s: %s", s.bucketName, s.keyringKey, why)
	}
	if len(data) > maxKeyringLen {
		return nil, bad("too large")
	}
	var kf keyringFile
	if err := json.Unmarshal(data, &kf); err != nil {
		// Do not wrap err: a syntax error quotes the offending character.
		return nil, bad("not a valid keyring (malformed JSON)")
	}
	if kf.Version != keyringVersion {
		return nil, bad(fmt.Sprintf("unsupported version %d", kf.Version))
	}
	kr := &keyring{file: kf, byID: make(map[string]*signingKey, len(kf.Keys)), etag: etag}
	for i := range kr.file.Keys {
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

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

var (
	errNoKeyring = errors.New("s3result: no keyring object")
	errUnchanged = errors.New("s3result: keyring unchanged")
)

// readKeyring reads the keyring object. With ifNoneMatch set it returns
// errUnchanged when the object still has that ETag; it returns errNoKeyring
// when there is no object.
func (s *Store) readKeyring(ctx context.Context, ifNoneMatch string) (*keyring, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucketName), Key: aws.String(s.keyringKey)}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(ifNoneMatch)
	}
	out, err := s.client.GetObject(ctx, in)
	switch st := httpStatus(err); {
	case err == nil:
	case st == http.StatusNotModified:
		return nil, errUnchanged
	case st == http.StatusNotFound:
		return nil, errNoKeyring
	default:
		return nil, fmt.Errorf("s3result: reading keyring s3://%s/%s: %w", s.bucketName, s.keyringKey, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxKeyringLen+1))
	if err != nil {
		return nil, fmt.Errorf("s3result: reading keyring s3://%s/%s: %w", s.bucketName, s.keyringKey, err)
	}
	return s.parseKeyring(data, aws.ToString(out.ETag))
}

// writeKeyring stores kf with a conditional PutObject: only if no object
// exists (create), or only if the object still has ETag ifMatch. It
// returns errConflict when the condition failed.
func (s *Store) writeKeyring(ctx context.Context, kf keyringFile, create bool, ifMatch string) error {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	in := &s3.PutObjectInput{
		Bucket:       aws.String(s.bucketName),
		Key:          aws.String(s.keyringKey),
		Body:         bytes.NewReader(append(data, '\n')),
		ContentType:  aws.String("application/json"),
		CacheControl: aws.String("no-store"),
	}
	if create {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	if s.sse != "" {
		in.ServerSideEncryption = s.sse
	}
	if s.kmsKeyID != "" {
		in.SSEKMSKeyId = aws.String(s.kmsKeyID)
	}
	_, err = s.client.PutObject(ctx, in)
	if st := httpStatus(err); st == http.StatusPreconditionFailed || st == http.StatusConflict {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("s3result: writing keyring s3://%s/%s: %w", s.bucketName, s.keyringKey, err)
	}
	return nil
}

var errConflict = errors.New("s3result: the keyring was changed concurrently")

// openKeyring reads the keyring object, creating it with a fresh key if it
// does not exist. The creation is conditional (If-None-Match: *), so of
// several processes creating it at once one wins and the others get 412;
// every one of them then pauses briefly and adopts what is stored, so that
// on a server that does not make the condition atomic (or ignores it) the
// last write, which is the one that stays, is adopted by every process
// that reads after it.
func (s *Store) openKeyring(ctx context.Context) (*keyring, error) {
	kr, err := s.readKeyring(ctx, "")
	if !errors.Is(err, errNoKeyring) {
		return kr, err
	}
	k := newSigningKey(s.now())
	kf := keyringFile{Version: keyringVersion, Active: k.ID, Keys: []signingKey{k}}
	if err := s.writeKeyring(ctx, kf, true, ""); err != nil && !errors.Is(err, errConflict) {
		return nil, err
	}
	select {
	case <-time.After(createSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	kr, err = s.readKeyring(ctx, "")
	if errors.Is(err, errNoKeyring) {
		return nil, fmt.Errorf("s3result: keyring s3://%s/%s was created but cannot be read back", s.bucketName, s.keyringKey)
	}
	return kr, err
}

// RotateKeys adds a new key to the keyring object that signs from now on,
// marks the previous active key retired (it keeps verifying the URLs it
// signed), and prunes keys retired more than MaxURLLifetime +
// KeyRetentionSlack ago, when every URL they signed has expired. The
// update is conditional on the version read (If-Match) and retried when
// another process changed the keyring in between, so a concurrent rotation
// is never lost (two concurrent rotations add two keys). This store signs
// with the new key at once; other stores on the same keyring pick it up at
// their next reload (KeyringReloadInterval), or as soon as they verify a
// URL signed with it. Every store sharing the keyring should use the same
// MaxURLLifetime.
func (s *Store) RotateKeys(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range rotateAttempts {
		kr, err := s.readKeyring(ctx, "")
		if errors.Is(err, errNoKeyring) {
			return fmt.Errorf("s3result: keyring s3://%s/%s is gone", s.bucketName, s.keyringKey)
		}
		if err != nil {
			return err
		}
		now := s.now()
		nk := newSigningKey(now)
		kf := keyringFile{Version: keyringVersion, Active: nk.ID}
		for _, k := range kr.file.Keys {
			if k.ID == kr.file.Active && k.Retired.IsZero() {
				k.Retired = now.UTC().Truncate(time.Second)
			}
			if !k.Retired.IsZero() && now.Sub(k.Retired) > s.maxLife+KeyRetentionSlack {
				continue // every URL it signed has expired
			}
			kf.Keys = append(kf.Keys, k)
		}
		kf.Keys = append(kf.Keys, nk)
		err = s.writeKeyring(ctx, kf, false, kr.etag)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return err
		}
		nkr, err := s.readKeyring(ctx, "")
		if err != nil {
			return err
		}
		s.ring.Store(nkr)
		s.lastCheck.Store(time.Now().UnixNano())
		return nil
	}
	return fmt.Errorf("s3result: rotating keyring s3://%s/%s: changed concurrently %d times", s.bucketName, s.keyringKey, rotateAttempts)
}

// ActiveKeyID returns the id of the key that signs new URLs.
func (s *Store) ActiveKeyID() string { return s.ring.Load().active.ID }

// keys returns the keyring, re-reading the keyring object (conditionally on
// its ETag) if the last check is older than KeyringReloadInterval, or, when
// force is set, if no forced re-read happened in the last second. Read
// errors keep the keys in memory.
func (s *Store) keys(ctx context.Context, force bool) *keyring {
	cur := s.ring.Load()
	now := time.Now().UnixNano()
	if force {
		last := s.lastForced.Load()
		if now-last < int64(forceReloadEvery) || !s.lastForced.CompareAndSwap(last, now) {
			return cur
		}
	} else {
		last := s.lastCheck.Load()
		if now-last < int64(s.reloadEvery) || !s.lastCheck.CompareAndSwap(last, now) {
			return cur
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur = s.ring.Load()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kr, err := s.readKeyring(ctx, cur.etag)
	if err != nil {
		return cur
	}
	s.lastCheck.Store(time.Now().UnixNano())
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

// verify checks the query parameters of a signed URL for key: exactly se,
// kid and sig, each once. It returns the expiry when the signature is
// valid and unexpired.
func (s *Store) verify(ctx context.Context, key string, q map[string][]string) (time.Time, error) {
	if len(q) != 3 {
		return time.Time{}, errBadSignature
	}
	one := func(name string) (string, bool) {
		v := q[name]
		if len(v) != 1 {
			return "", false
		}
		return v[0], true
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
	k := s.keys(ctx, false).byID[kid]
	if k == nil {
		if k = s.keys(ctx, true).byID[kid]; k == nil {
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
	if exp.After(now.Add(s.maxLife + time.Minute)) {
		return time.Time{}, errBadSignature
	}
	if !k.Retired.IsZero() && exp.After(k.Retired.Add(s.maxLife+time.Minute)) {
		return time.Time{}, errBadSignature
	}
	if !now.Before(exp) {
		return exp, errExpired
	}
	return exp, nil
}
