package s3result

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"gocloud.dev/blob/s3blob"

	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/urlsign"
)

const (
	// URLDomain is the signature domain of the store's URLs (see
	// urlsign.Scheme.Domain). Changing it invalidates every URL signed
	// before.
	URLDomain = "arr-s3result-url-v1"
	// KeyringReloadInterval is how often a signer re-reads the keyring
	// object (a HEAD, then a GET if it changed) to pick up a rotation made
	// elsewhere.
	KeyringReloadInterval = time.Minute
)

// signerParams are the URL parameters of the signer, which OpenURL
// accepts and ignores.
var signerParams = map[string]bool{"url_prefix": true, "max_url_lifetime": true}

// SignerOptions configure OpenSigner.
type SignerOptions struct {
	// URLPrefix is the URL path under which the signer's Handler serves
	// signed URLs; it begins and ends with "/". Default:
	// urlsign.DefaultPrefix ("/blobs/"), as the file store's.
	URLPrefix string
	// MaxURLLifetime: see urlsign.HMACOptions.MaxURLLifetime. At least a
	// second. Default: urlsign.DefaultMaxURLLifetime (7 days).
	MaxURLLifetime time.Duration
	// Now is the signer's clock. Default: time.Now.
	Now func() time.Time
}

// OpenSigner opens the signer of results, whose driver is a Store: an
// urlsign.HMAC driver with the domain URLDomain that refuses any query
// but exactly se, kid and sig, and whose keyring is the object
// Options.KeyringKey of the store's bucket (urlsign.BlobKeys, conditional
// writes with If-None-Match and If-Match), re-read every
// KeyringReloadInterval. It reads the keyring object, creating it with a
// fresh random key if it does not exist, so a wrong bucket, endpoint or
// missing permission fails it. Its Handler redirects valid URLs to S3
// presigned URLs (see Store.PresignedURL).
func OpenSigner(ctx context.Context, results *resultstore.Store, opts SignerOptions) (*urlsign.Signer, error) {
	s, ok := results.Driver().(*Store)
	if !ok {
		return nil, errors.New("s3result: the results are not an S3 store's")
	}
	if opts.MaxURLLifetime != 0 && opts.MaxURLLifetime < time.Second {
		return nil, fmt.Errorf("s3result: max URL lifetime %v is shorter than a second", opts.MaxURLLifetime)
	}
	if opts.URLPrefix != "" {
		if err := urlsign.ValidatePrefix(opts.URLPrefix); err != nil {
			return nil, fmt.Errorf("s3result: URL prefix: %w", err)
		}
	}
	blobOpts := s.blobOpts
	b, err := s3blob.OpenBucket(ctx, s.client, s.bucketName, &blobOpts)
	if err != nil {
		return nil, fmt.Errorf("s3result: %w", err)
	}
	keys := urlsign.NewBlobKeys(b, s.keyringKey, urlsign.BlobOptions{
		Name: "s3://" + s.bucketName + "/" + s.keyringKey,
		IfMatch: func(as func(any) bool, etag string) error {
			var in *transfermanager.UploadObjectInput
			if !as(&in) {
				return errors.New("s3result: s3blob did not expose its UploadObjectInput")
			}
			in.IfMatch = aws.String(etag)
			return nil
		},
		IsConflict: func(err error) bool {
			st := httpStatus(err)
			return st == http.StatusPreconditionFailed || st == http.StatusConflict
		},
	})
	h, err := urlsign.NewHMAC(ctx, keys, urlsign.HMACOptions{
		Domain:         URLDomain,
		ExactQuery:     true,
		Prefix:         opts.URLPrefix,
		MaxURLLifetime: opts.MaxURLLifetime,
		ReloadInterval: KeyringReloadInterval,
		Now:            opts.Now,
	})
	if err != nil {
		return nil, err
	}
	return urlsign.New(h, results), nil
}

// openSignerURL opens the signer of results, opened from u: OpenSigner
// with u's url_prefix and max_url_lifetime.
func openSignerURL(ctx context.Context, u *url.URL, results *resultstore.Store) (*urlsign.Signer, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("s3result: bad query in URL: %w", err)
	}
	var opts SignerOptions
	for k, v := range q {
		if !signerParams[k] {
			continue // the store's
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("s3result: parameter %q given %d times", k, len(v))
		}
		switch k {
		case "url_prefix":
			opts.URLPrefix = v[0]
		case "max_url_lifetime":
			d, err := time.ParseDuration(v[0])
			if err != nil || d < time.Second {
				return nil, fmt.Errorf("s3result: max_url_lifetime=%q is not a duration of at least 1s", v[0])
			}
			opts.MaxURLLifetime = d
		}
	}
	return OpenSigner(ctx, results, opts)
}
