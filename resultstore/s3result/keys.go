package s3result

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/arrhq/arr/internal/urlsign"
)

// The keyring object (Options.KeyringKey) is JSON in the format of
// internal/urlsign, the format of the file driver's keyring file: every
// listed key verifies URLs; only the active one signs.

const (
	// macDomain separates this driver's signatures from other drivers'.
	// Changing it invalidates every URL signed before.
	macDomain = "arr-s3result-url-v1"

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

// keyring is a parsed keyring object and the ETag of the version it was
// read from.
type keyring struct {
	*urlsign.Keyring
	etag string
}

// parseKeyring checks and indexes a keyring object's bytes. Errors never
// carry key material.
func (s *Store) parseKeyring(data []byte, etag string) (*keyring, error) {
	kr, err := urlsign.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("s3result: keyring s3://%s/%s: %v", s.bucketName, s.keyringKey, err)
	}
	return &keyring{Keyring: kr, etag: etag}, nil
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
	data, err := io.ReadAll(io.LimitReader(out.Body, urlsign.MaxLen+1))
	if err != nil {
		return nil, fmt.Errorf("s3result: reading keyring s3://%s/%s: %w", s.bucketName, s.keyringKey, err)
	}
	return s.parseKeyring(data, aws.ToString(out.ETag))
}

// writeKeyring stores kr with a conditional PutObject: only if no object
// exists (create), or only if the object still has ETag ifMatch. It
// returns errConflict when the condition failed.
func (s *Store) writeKeyring(ctx context.Context, kr *urlsign.Keyring, create bool, ifMatch string) error {
	data, err := kr.Marshal()
	if err != nil {
		return err
	}
	in := &s3.PutObjectInput{
		Bucket:       aws.String(s.bucketName),
		Key:          aws.String(s.keyringKey),
		Body:         bytes.NewReader(data),
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
	if err := s.writeKeyring(ctx, urlsign.New(s.now()), true, ""); err != nil && !errors.Is(err, errConflict) {
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
		rotated := kr.Rotate(s.now(), s.maxLife+KeyRetentionSlack)
		err = s.writeKeyring(ctx, rotated, false, kr.etag)
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
func (s *Store) ActiveKeyID() string { return s.ring.Load().Active().ID }

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

// signedQuery returns the query of a signed URL for key expiring at se.
func signedQuery(k *urlsign.Key, key string, se int64) string {
	return urlsign.Scheme{Domain: macDomain}.Sign(k, key, se)
}

// scheme is how the store signs and verifies URLs: a URL's query must be
// exactly se, kid and sig, each once, as name=value, and nothing else.
func (s *Store) scheme() urlsign.Scheme {
	return urlsign.Scheme{Domain: macDomain, MaxLifetime: s.maxLife, ExactQuery: true}
}

// lookupKey returns a function that returns the key with an id, or nil. A
// key id the keyring in memory lacks makes it re-read the keyring (at most
// once a second).
func (s *Store) lookupKey(ctx context.Context) func(kid string) *urlsign.Key {
	return func(kid string) *urlsign.Key {
		if k := s.keys(ctx, false).Key(kid); k != nil {
			return k
		}
		return s.keys(ctx, true).Key(kid)
	}
}
