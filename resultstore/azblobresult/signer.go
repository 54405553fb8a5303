package azblobresult

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
)

const (
	// MaxKeyLifetime is Azure's limit on a user delegation key's validity
	// (7 days from when it is requested), hence on the expiry of a URL.
	MaxKeyLifetime = 7 * 24 * time.Hour
	// DefaultKeyLifetime is how long the keys the signer requests are
	// valid, unless a URL's expiry needs longer.
	DefaultKeyLifetime = 2 * 24 * time.Hour
	// DefaultKeyRenewBefore: a key with less than this left is renewed.
	DefaultKeyRenewBefore = 24 * time.Hour
	// keyStartSkew: a key's validity starts this much before the signer's
	// now, so that a clock behind Azure's does not make a fresh key (and
	// the URLs it signs) not yet valid.
	keyStartSkew = 5 * time.Minute
)

// Signer is the urlsign.Driver of a Store (see OpenSigner): it signs
// user delegation SAS URLs of the store's blobs. It is not a
// urlsign.Verifier: its URLs point at Azure, which checks them. Its
// methods are safe for concurrent use.
//
// A user delegation key is fetched from Azure (Get User Delegation Key,
// with the store's Entra credential) when the signer opens, and cached.
// It is requested valid for Options.KeyLifetime (2 days), or until the
// expiry of the URL that needs it if later (at most MaxKeyLifetime ahead),
// and renewed by the first SignedURL that finds less than
// Options.KeyRenewBefore (1 day) left. A key is used only for URLs that
// expire no later than it does, since Azure refuses a SAS once its key
// has expired: a URL expiring later gets a key fetched that covers it.
// Concurrent SignedURL calls that need a new key share one fetch. When a
// renewal fails and the cached key still covers the URL, the URL is
// signed with it. Each process fetches its own keys; they are never
// stored nor configured, and a SAS signed by any process is valid
// everywhere.
type Signer struct {
	s   *Store
	sem chan struct{} // held by the one key fetch in flight

	mu  sync.Mutex
	key *udKey
}

// udKey is a user delegation key and the end of its validity.
type udKey struct {
	cred   *service.UserDelegationCredential
	expiry time.Time
}

var (
	_ urlsign.Driver      = (*Signer)(nil)
	_ urlsign.TypedDriver = (*Signer)(nil)
)

// OpenSigner opens the signer of results, whose driver is a Store: a
// urlsign.Signer over a Signer, without a Handler. It fetches the first
// user delegation key, so a wrong endpoint or a missing permission
// (generateUserDelegationKey) fails it.
func OpenSigner(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
	s, ok := results.Driver().(*Store)
	if !ok {
		return nil, errors.New("azblobresult: the results are not an Azure Blob Storage store's")
	}
	sg := &Signer{s: s, sem: make(chan struct{}, 1)}
	if _, err := sg.keyFor(ctx, s.opts.Now().UTC()); err != nil {
		return nil, err
	}
	return urlsign.New(sg, results), nil
}

// SignedURL returns the absolute URL of key's blob with a user delegation
// SAS: sv, se (expiry, whole seconds), sr=b, sp=r, spr=https when the
// endpoint is https, the key's skoid, sktid, skt, ske, sks and skv, rscd
// ("attachment" with urlsign.DownloadName of the key and the blob's
// current content type as file name) and sig. Azure serves it with the
// blob's own Content-Type. An expiry more than MaxKeyLifetime ahead is an
// error wrapping urlsign.ErrTooLong; one in the past gives a URL Azure
// refuses. It costs a Get Blob Properties (for the file name's
// extension; SignedURLTyped, which the core calls with the type it
// recorded, does not) and, when the cached key does not do, a key fetch.
func (sg *Signer) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	if err := sg.s.ValidateKey(key); err != nil {
		return "", err
	}
	exp, err := sg.expiry(key, expiry)
	if err != nil {
		return "", err
	}
	var contentType string
	props, err := sg.s.container.NewBlobClient(sg.s.blobName(key)).GetProperties(ctx, nil)
	switch {
	case err == nil:
		contentType = deref(props.ContentType)
	case !bloberror.HasCode(err, bloberror.BlobNotFound):
		return "", fmt.Errorf("azblobresult: signed URL for %q: reading the content type: %w", key, err)
	}
	return sg.sign(ctx, key, contentType, exp)
}

// SignedURLTyped is SignedURL for a blob stored with contentType, without
// reading it (urlsign.TypedDriver): a status read of a succeeded
// operation costs no request to Azure while the cached key does.
func (sg *Signer) SignedURLTyped(ctx context.Context, key, contentType string, expiry time.Time) (string, error) {
	if err := sg.s.ValidateKey(key); err != nil {
		return "", err
	}
	exp, err := sg.expiry(key, expiry)
	if err != nil {
		return "", err
	}
	return sg.sign(ctx, key, contentType, exp)
}

// expiry is a URL's expiry in whole seconds, refused with an error
// wrapping urlsign.ErrTooLong beyond MaxKeyLifetime.
func (sg *Signer) expiry(key string, expiry time.Time) (time.Time, error) {
	now := sg.s.opts.Now().UTC()
	exp := expiry.UTC().Truncate(time.Second)
	if exp.After(now.Add(MaxKeyLifetime)) {
		return exp, fmt.Errorf("azblobresult: signed URL for %q: expiry %s is more than %v ahead (Azure's limit on user delegation keys): %w",
			key, exp.Format(time.RFC3339), MaxKeyLifetime, urlsign.ErrTooLong)
	}
	return exp, nil
}

// sign signs key's URL, naming contentType in its download name.
func (sg *Signer) sign(ctx context.Context, key, contentType string, exp time.Time) (string, error) {
	k, err := sg.keyFor(ctx, exp)
	if err != nil {
		return "", err
	}
	h := http.Header{}
	urlsign.SetResultHeaders(h, key, contentType, false)
	v := sas.BlobSignatureValues{
		ExpiryTime:         exp,
		Permissions:        to.Ptr(sas.BlobPermissions{Read: true}).String(),
		ContainerName:      sg.s.containerName,
		BlobName:           sg.s.blobName(key),
		ContentDisposition: h.Get("Content-Disposition"),
	}
	if strings.HasPrefix(sg.s.endpoint, "https:") {
		v.Protocol = sas.ProtocolHTTPS
	}
	qp, err := v.SignWithUserDelegation(k.cred)
	if err != nil {
		return "", fmt.Errorf("azblobresult: signed URL for %q: %w", key, err)
	}
	return sg.s.BlobURL(key) + "?" + qp.Encode(), nil
}

// keyFor returns a user delegation key that is valid until exp and not
// due for renewal, fetching one if the cached key is not.
func (sg *Signer) keyFor(ctx context.Context, exp time.Time) (*udKey, error) {
	usable := func(k *udKey) bool {
		now := sg.s.opts.Now()
		return k != nil && now.Before(k.expiry.Add(-sg.s.opts.KeyRenewBefore)) && !exp.After(k.expiry)
	}
	if k := sg.cached(); usable(k) {
		return k, nil
	}
	select {
	case sg.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("azblobresult: waiting for a user delegation key: %w", ctx.Err())
	}
	defer func() { <-sg.sem }()
	old := sg.cached()
	if usable(old) { // fetched while this call waited
		return old, nil
	}
	now := sg.s.opts.Now().UTC().Truncate(time.Second)
	end := now.Add(sg.s.opts.KeyLifetime)
	if exp.After(end) {
		end = exp
	}
	if limit := now.Add(MaxKeyLifetime); end.After(limit) {
		end = limit
	}
	cred, err := sg.s.svc.GetUserDelegationCredential(ctx, service.KeyInfo{
		Start:  to.Ptr(now.Add(-keyStartSkew).Format(sas.TimeFormat)),
		Expiry: to.Ptr(end.Format(sas.TimeFormat)),
	}, nil)
	if err != nil {
		if old != nil && !exp.After(old.expiry) && sg.s.opts.Now().Before(old.expiry) {
			return old, nil // the renewal failed; the key still does
		}
		return nil, fmt.Errorf("azblobresult: fetching a user delegation key (the identity needs generateUserDelegationKey, e.g. Storage Blob Data Contributor): %w", err)
	}
	k := &udKey{cred: cred, expiry: end}
	sg.mu.Lock()
	sg.key = k
	sg.mu.Unlock()
	return k, nil
}

func (sg *Signer) cached() *udKey {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	return sg.key
}

// KeyExpiry returns the expiry of the cached user delegation key.
func (sg *Signer) KeyExpiry() time.Time {
	if k := sg.cached(); k != nil {
		return k.expiry
	}
	return time.Time{}
}

// Close releases nothing; the store stays open.
func (sg *Signer) Close() error { return nil }
