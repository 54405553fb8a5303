// Package s3result is the result store driver for Amazon S3 and
// S3-compatible servers (versitygw, MinIO, Ceph RGW, Garage, …). The bytes
// are kept with gocloud.dev/blob/s3blob (AWS SDK for Go v2). It registers
// the signer of URLs to results too (package urlsign, see OpenSigner): arr
// signs them itself (HMAC-SHA256, keys kept in the bucket), and the
// signer's handler checks the signature and answers with a redirect to a
// short-lived S3 presigned URL (Store.PresignedURL): clients fetch the
// bytes from S3 directly, never through arr.
//
// # URLs
//
// The package registers the scheme "s3" with resultstore.Register and
// urlsign.Register, which open the store and its signer from the same URL:
//
//	s3://my-results                                       AWS, region from the AWS config chain
//	s3://my-results?region=eu-west-1&prefix=arr/results/
//	s3://results?endpoint=http://127.0.0.1:7070&use_path_style=true&region=us-east-1&prefix=results/
//	s3://results?endpoint=http://minio:9000&use_path_style=true&public_endpoint=https://files.example.com
//
// The host is the bucket name; the URL has no path (use prefix). Query
// parameters, all optional, each given at most once; any other parameter is
// an error:
//
// Parameters of gocloud.dev/blob/s3blob and gocloud.dev/aws, with their
// meaning there:
//
//   - endpoint: the S3 endpoint URL, e.g. http://127.0.0.1:7070. Default:
//     AWS's endpoint for the region.
//   - region: the AWS region, also the SigV4 signing region. Default: the AWS
//     config chain (AWS_REGION, AWS_DEFAULT_REGION, the shared config file),
//     else "us-east-1".
//   - use_path_style (or its older name s3ForcePathStyle): "true" addresses
//     the bucket in the path (http://host/bucket/key) rather than in the host
//     name (http://bucket.host/key). Most S3-compatible servers need it.
//   - disable_https: "true" makes the endpoints AWS resolves use http.
//   - accelerate: "true" uses S3 Transfer Acceleration endpoints.
//   - dualstack, fips: "true" uses AWS's dual-stack or FIPS endpoints.
//   - hostname_immutable: "true" keeps the endpoint's host name as given.
//   - profile: the shared config profile to load (its name only; the
//     credentials stay in the AWS files).
//   - role: the ARN of a role to assume through STS with the chain's
//     credentials.
//   - rate_limiter_capacity: the SDK retryer's token bucket capacity;
//     default: no client-side retry rate limit.
//   - request_checksum_calculation, response_checksum_validation:
//     "when_supported" (SDK default) or "when_required"; some older
//     S3-compatible servers need "when_required".
//   - ssetype (AES256, aws:kms, aws:kms:dsse) and kmskeyid: server-side
//     encryption of stored results and of the keyring object.
//   - prefix: a prefix of every object key, e.g. "results/" (gocloud's
//     generic blob URL parameter). Default: none.
//   - awssdk: only "v2" is accepted (gocloud's SDK selector; this driver
//     uses v2).
//
// Parameters of this driver:
//
//   - url_prefix (the signer's; the store ignores it): the URL path under
//     which the signer's handler serves signed URLs
//     (SignerOptions.URLPrefix); it begins and ends with "/". Default:
//     "/blobs/", as the file driver.
//   - url_keyring: the object key (from the bucket's root, not under
//     prefix) of the keyring object holding the URL signing keys
//     (Options.KeyringKey), which the store reserves and the signer uses.
//     Default: prefix + ".arr/url-keys.json".
//   - max_url_lifetime (the signer's; the store ignores it): the longest
//     expiry the signer signs and honours, a Go duration such as "24h"
//     (at least "1s"). Default: 7 days.
//   - public_endpoint: the endpoint URL that the presigned URLs
//     PresignedURL returns name, when clients reach S3 through another address than
//     arr does (arr talks to http://minio:9000 on an internal network;
//     clients fetch from https://files.example.com through a proxy). The
//     SigV4 signature covers the host, so the proxy must pass the Host
//     header through unchanged. It is used with the same path style and
//     region. Default: endpoint.
//
// Refused: "anonymous" (arr needs credentials to presign with), user
// information in the URL (s3://key:secret@bucket), a path, and repeated
// parameters.
//
// Credentials never come from the URL: the AWS SDK's default chain
// supplies them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, optionally
// AWS_SESSION_TOKEN; AWS_PROFILE and the shared files; web identity; ECS
// and EC2 instance roles). The URL is therefore safe to log and to put in
// configuration files. Opening the store does no I/O; opening its signer
// reads the keyring object (creating it if missing), so a wrong bucket,
// endpoint or missing permission fails the engine's Signer.
// The credentials need s3:GetObject, s3:PutObject and s3:DeleteObject on
// the prefix and on the keyring object (and s3:AbortMultipartUpload for
// results of 16 MiB or more), and s3:ListBucket so that a missing result
// is told apart from a refusal (AWS answers 403 to HeadObject of a missing
// object without it; the signer's handler then answers 502 instead of 404).
//
// # Keys and objects
//
// A result is one object: prefix + key, with the content type as the
// object's Content-Type. A key is valid UTF-8 without control characters,
// made of "/"-separated non-empty segments other than "." and ".." (dot
// segments are rewritten by HTTP clients and proxies, which would break the
// URL's signature), and prefix + key is at most 1024 bytes (S3's limit).
// Keys whose first segment is ".arr" are reserved for the driver, and so
// is any key whose object would be, contain or lie inside the keyring
// object's path. Other keys are refused with ErrInvalidKey. Servers that
// map objects to files (versitygw's posix backend, MinIO in filesystem
// mode) cannot hold both "a" and "a/b"; S3 itself can.
//
// # Guarantees
//
//   - Put is one S3 PutObject, or for 16 MiB and more a multipart upload
//     that the driver aborts when it fails; S3 makes the object visible
//     only when the PUT or the upload's completion succeeds. A reader sees
//     the whole previous value or the whole new one. If the source reader
//     fails or ctx is canceled, nothing is stored and the previous value, if
//     any, stays.
//   - Attributes are the object's: Content-Type, Content-Length, the ETag
//     exactly as S3 sends it (quoted; the MD5 of the bytes for a simple PUT
//     without SSE-KMS, another opaque strong tag otherwise) and
//     Last-Modified (whole seconds). Put reads them back with a HEAD after
//     the upload; under a concurrent Put of the same key it may report the
//     other Put's value, which is then the current one.
//   - A Reader reads the version it opened: after a Seek it continues with
//     a ranged GET conditional on the ETag (If-Match), so an overwrite
//     between reads gives an error (ErrChanged), never a mix of versions.
//
// # Signed URLs
//
// The signer (OpenSigner) signs relative URLs in urlsign's format,
// under url_prefix, with the domain "arr-s3result-url-v1" (URLDomain);
// verification refuses any query but exactly se, kid and sig. Its handler
// answers a valid URL of an existing result with 307 to an S3 presigned
// URL for the same method that ends no later than the arr URL (and at most
// RedirectLifetime after the request), so the redirect cannot be used to
// extend the arr URL's life. Range and conditional requests are answered
// by S3 after the redirect.
//
// # Signing keys
//
// The keys live in the keyring object in the bucket (url_keyring), in
// urlsign's keyring format, kept by urlsign.BlobKeys: every arr process
// that opens the same bucket and keyring signs and verifies with the same
// keys, so a URL signed by one api process is served by any other. The
// keys are generated by arr (crypto/rand) when the first signer opens the
// bucket and finds no keyring; they are never configured. The creation is
// a conditional PutObject (If-None-Match: *, honoured by AWS S3 and by
// versitygw v1.8.0) and a rotation one conditional on the ETag read
// (If-Match); see urlsign.BlobKeys for how processes agree on one keyring.
// A signer re-reads the keyring at most every KeyringReloadInterval (1
// minute) when it signs or verifies, and at once (at most once a second)
// when a URL names a key id it does not know. Anyone who can read the
// keyring object can sign URLs for every result under the prefix: protect
// it as the results themselves (the same bucket policy does).
package s3result

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Scheme is the URL scheme the package registers with resultstore.
const Scheme = "s3"

const (
	// DefaultKeyringName is the keyring object's key under the prefix when
	// Options.KeyringKey is empty.
	DefaultKeyringName = reservedSegment + "/url-keys.json"
	// DefaultContentType is stored when Put is given no content type.
	DefaultContentType = "application/octet-stream"
	// DefaultRegion is the region used when neither the URL nor the AWS
	// config chain names one.
	DefaultRegion = "us-east-1"
	// maxObjectKey is S3's limit on the length of an object key, in bytes.
	maxObjectKey = 1024
	maxCTLen     = 1024
	// reservedSegment is the first key segment reserved for the driver.
	reservedSegment = ".arr"
)

// ErrInvalidKey is returned (wrapped) for keys the store refuses.
var ErrInvalidKey = errors.New("s3result: invalid key")

// ErrChanged is returned (wrapped) by a Reader's Read when the result was
// replaced or deleted after the Reader was opened and a Seek made the
// Reader fetch the rest of it again.
var ErrChanged = errors.New("s3result: result changed while being read")

func init() {
	engine.Register(Scheme, func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		return &engine.ResultsOnly{Name: Scheme,
			Results: func(ctx context.Context) (driver.Store, error) { return OpenURL(ctx, u) },
			Signer: func(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
				return openSignerURL(ctx, u, results)
			},
		}, nil
	})
}

// Options configure New.
type Options struct {
	// Prefix is prepended to every key to make the object key, e.g.
	// "results/". Default: none.
	Prefix string

	// KeyringKey is the object key (from the bucket's root; Prefix is not
	// prepended) of the keyring object with the URL signing keys of the
	// store's signer (see OpenSigner); keys whose object would be, contain
	// or lie inside it are refused. Every signer that must accept
	// another's URLs uses the same bucket and KeyringKey. Default: Prefix
	// + DefaultKeyringName.
	KeyringKey string

	// PresignClient, when set, is the client PresignedURL presigns with:
	// one for the same S3 service whose endpoint is the one clients reach
	// (see the public_endpoint URL parameter). Default: the store's
	// client.
	PresignClient *s3.Client

	// Blob configures the gocloud.dev/blob/s3blob bucket (server-side
	// encryption, checksums); its encryption settings apply to the keyring
	// object of OpenSigner too. Default: s3blob's defaults.
	Blob *s3blob.Options
}

// Store is the S3 result store. It implements driver.Store,
// driver.KeyValidator and driver.Presigner; its methods are safe for
// concurrent use.
type Store struct {
	client     *s3.Client
	presigner  *s3.PresignClient
	v4         *v4.Signer
	bucketName string
	bucket     *blob.Bucket // prefixed with prefix
	blobOpts   s3blob.Options
	prefix     string
	keyringKey string
	now        func() time.Time
}

var (
	_ driver.Store        = (*Store)(nil)
	_ driver.KeyValidator = (*Store)(nil)
	_ driver.Presigner    = (*Store)(nil)
)

// New returns a store over the bucket named bucket, reached with client.
// It does no I/O. Close releases the bucket; client is not closed (SDK
// clients need no closing).
func New(ctx context.Context, client *s3.Client, bucket string, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("s3result: nil client")
	}
	if bucket == "" {
		return nil, errors.New("s3result: empty bucket name")
	}
	if len(opts.Prefix) >= maxObjectKey || !utf8.ValidString(opts.Prefix) || hasControl(opts.Prefix) {
		return nil, fmt.Errorf("s3result: invalid prefix %q", opts.Prefix)
	}
	if opts.KeyringKey == "" {
		opts.KeyringKey = opts.Prefix + DefaultKeyringName
	}
	if err := validObjectPath(opts.KeyringKey); err != nil {
		return nil, fmt.Errorf("s3result: keyring key %q: %v", opts.KeyringKey, err)
	}
	var blobOpts s3blob.Options
	if opts.Blob != nil {
		blobOpts = *opts.Blob
	}
	b, err := s3blob.OpenBucket(ctx, client, bucket, &blobOpts)
	if err != nil {
		return nil, fmt.Errorf("s3result: %w", err)
	}
	pc := opts.PresignClient
	if pc == nil {
		pc = client
	}
	s := &Store{
		client:     client,
		presigner:  s3.NewPresignClient(pc),
		v4:         v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }), // as the S3 client's
		bucketName: bucket,
		bucket:     b,
		blobOpts:   blobOpts,
		prefix:     opts.Prefix,
		keyringKey: opts.KeyringKey,
		now:        time.Now,
	}
	if opts.Prefix != "" {
		s.bucket = blob.PrefixedBucket(b, opts.Prefix)
	}
	return s, nil
}

// validObjectPath checks an object key the driver writes itself.
func validObjectPath(k string) error {
	switch {
	case k == "" || len(k) > maxObjectKey:
		return errors.New("empty or longer than 1024 bytes")
	case !utf8.ValidString(k) || hasControl(k):
		return errors.New("not UTF-8 or has control characters")
	}
	for seg := range strings.SplitSeq(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New(`empty, "." or ".." segment`)
		}
	}
	return nil
}

// Open opens the store a URL of scheme "s3" names; see the package
// documentation for its form.
func Open(ctx context.Context, urlstr string) (*Store, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, fmt.Errorf("s3result: bad URL: %w", err)
	}
	return OpenURL(ctx, u)
}

// s3blob's own parameters, which OpenURL applies to the S3 client.
var s3blobParams = map[string]bool{
	"use_path_style": true, "s3ForcePathStyle": true, "disable_https": true,
	"accelerate": true, "ssetype": true, "kmskeyid": true,
}

// gocloud.dev/aws parameters, which gcaws.V2ConfigFromURLParams applies.
var awsParams = map[string]bool{
	"endpoint": true, "region": true, "hostname_immutable": true, "profile": true,
	"dualstack": true, "fips": true, "rate_limiter_capacity": true, "role": true,
	"request_checksum_calculation": true, "response_checksum_validation": true,
}

// OpenURL is Open with a parsed URL.
func OpenURL(ctx context.Context, u *url.URL) (*Store, error) {
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("s3result: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	if u.User != nil {
		return nil, errors.New("s3result: credentials in the URL are refused; use the AWS environment or config files")
	}
	bucketName := u.Host
	if bucketName == "" || u.Opaque != "" {
		return nil, fmt.Errorf("s3result: no bucket in URL %q (want s3://bucket?…)", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("s3result: URL %q has a path; give a key prefix with prefix=", u.Redacted())
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("s3result: URL %q has a fragment", u.Redacted())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("s3result: bad query in URL: %w", err)
	}
	awsQ := url.Values{}
	var opts Options
	var publicEndpoint string
	clientOpts := []func(*s3.Options){func(o *s3.Options) {
		// Multipart objects have no whole-object checksum to validate; the
		// SDK would log a warning for each read of one.
		o.DisableLogOutputChecksumValidationSkipped = true
	}}
	var blobOpts s3blob.Options
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("s3result: parameter %q given %d times", k, len(v))
		}
		val := v[0]
		boolVal := func() (bool, error) {
			b, err := strconv.ParseBool(val)
			if err != nil {
				return false, fmt.Errorf("s3result: parameter %s=%q is not a boolean", k, val)
			}
			return b, nil
		}
		switch {
		case awsParams[k]:
			awsQ.Set(k, val)
		case k == "use_path_style" || k == "s3ForcePathStyle":
			b, err := boolVal()
			if err != nil {
				return nil, err
			}
			clientOpts = append(clientOpts, func(o *s3.Options) { o.UsePathStyle = b })
		case k == "disable_https":
			b, err := boolVal()
			if err != nil {
				return nil, err
			}
			clientOpts = append(clientOpts, func(o *s3.Options) { o.EndpointOptions.DisableHTTPS = b })
		case k == "accelerate":
			b, err := boolVal()
			if err != nil {
				return nil, err
			}
			clientOpts = append(clientOpts, func(o *s3.Options) { o.UseAccelerate = b })
		case k == "ssetype":
			var sse types.ServerSideEncryption
			for _, t := range types.ServerSideEncryptionAes256.Values() {
				if strings.EqualFold(string(t), val) {
					sse = t
				}
			}
			if sse == "" {
				return nil, fmt.Errorf("s3result: ssetype=%q is not one of %v", val, types.ServerSideEncryptionAes256.Values())
			}
			blobOpts.EncryptionType = sse
		case k == "kmskeyid":
			blobOpts.KMSEncryptionID = val
		case k == "prefix":
			opts.Prefix = val
		case k == "public_endpoint":
			pu, err := url.Parse(val)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" {
				return nil, fmt.Errorf("s3result: public_endpoint=%q is not an http(s) URL", val)
			}
			publicEndpoint = val
		case signerParams[k]:
			// The signer's (see OpenSigner).
		case k == "url_keyring":
			opts.KeyringKey = val
		case k == "awssdk":
			if val != "v2" && val != "V2" {
				return nil, fmt.Errorf("s3result: awssdk=%q: only v2 is supported", val)
			}
		case k == "anonymous":
			return nil, errors.New("s3result: anonymous access is refused: presigned URLs need credentials to sign with")
		default:
			return nil, fmt.Errorf("s3result: unknown URL parameter %q", k)
		}
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, awsQ)
	if err != nil {
		return nil, fmt.Errorf("s3result: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	blobOpts.RequestChecksumCalculation = cfg.RequestChecksumCalculation
	opts.Blob = &blobOpts
	client := s3.NewFromConfig(cfg, clientOpts...)
	if publicEndpoint != "" {
		pcfg := cfg.Copy()
		hostnameImmutable, _ := strconv.ParseBool(awsQ.Get("hostname_immutable"))
		pcfg.EndpointResolverWithOptions = aws.EndpointResolverWithOptionsFunc(
			func(service, region string, _ ...any) (aws.Endpoint, error) {
				return aws.Endpoint{PartitionID: "aws", URL: publicEndpoint, SigningRegion: region, HostnameImmutable: hostnameImmutable}, nil
			})
		opts.PresignClient = s3.NewFromConfig(pcfg, clientOpts...)
	}
	return New(ctx, client, bucketName, opts)
}

// ValidateKey returns nil if key is a key the store accepts (see the
// package documentation), else an error wrapping ErrInvalidKey.
func (s *Store) ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(s.prefix)+len(key) > maxObjectKey:
		return fmt.Errorf("%w: prefix and key longer than %d bytes", ErrInvalidKey, maxObjectKey)
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	case hasControl(key):
		return bad("control character")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return bad("empty path segment (leading, trailing or double slash)")
		case ".", "..":
			return bad(`"." or ".." segment`)
		}
	}
	if first, _, _ := strings.Cut(key, "/"); first == reservedSegment {
		return bad(`the first segment ".arr" is reserved`)
	}
	if obj := s.prefix + key; obj == s.keyringKey || strings.HasPrefix(s.keyringKey, obj+"/") || strings.HasPrefix(obj, s.keyringKey+"/") {
		return bad("reserved for the URL signing keyring")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return true
		}
	}
	return false
}

func (s *Store) wrap(op, key string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("s3result: %s %q: %w", op, key, driver.ErrNotFound)
	}
	return fmt.Errorf("s3result: %s %q: %w", op, key, err)
}

// uploadPartSize and uploadConcurrency bound the memory of one Put: the
// SDK's transfer manager reads a result in parts of uploadPartSize (S3's
// smallest multipart part), uploads up to uploadConcurrency at once, and
// holds one more being filled.
const (
	uploadPartSize    = 5 << 20
	uploadConcurrency = 2
)

// Put stores the bytes of r under key; see driver.Store.Put and the
// package documentation. An empty contentType is stored as
// DefaultContentType.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (driver.Attributes, error) {
	if err := s.ValidateKey(key); err != nil {
		return driver.Attributes{}, err
	}
	if contentType == "" {
		contentType = DefaultContentType
	}
	if len(contentType) > maxCTLen || hasControl(contentType) {
		return driver.Attributes{}, fmt.Errorf("s3result: put %q: invalid content type", key)
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return driver.Attributes{}, fmt.Errorf("s3result: put %q: content type %q: %w", key, contentType, err)
	}
	if err := ctx.Err(); err != nil {
		return driver.Attributes{}, fmt.Errorf("s3result: put %q: %w", key, err)
	}
	// Upload hands the reader to the SDK's transfer manager as the body:
	// a read error fails the PutObject (or aborts the multipart upload)
	// before anything is committed, and is never taken for the end of the
	// value. Canceling ctx aborts it likewise.
	src := &driver.SourceReader{R: r}
	err := s.bucket.Upload(ctx, key, src, &blob.WriterOptions{
		ContentType:                 contentType,
		DisableContentTypeDetection: true,
		// The transfer manager holds (concurrency + 1) parts in memory per
		// upload: 15 MiB here, where its defaults (8 MiB × 5) hold 48 MiB.
		BufferSize:     uploadPartSize,
		MaxConcurrency: uploadConcurrency,
	})
	if err == nil && src.Err != nil { // not expected: the SDK returns read errors
		err = src.Err
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("s3result: put %q: %w", key, err)
	}
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return driver.Attributes{}, s.wrap("put (reading attributes)", key, err)
	}
	return driver.Attributes{ContentType: a.ContentType, Size: a.Size, ETag: a.ETag, ModTime: a.ModTime}, nil
}

// Open returns a reader of the stored bytes, or an error wrapping
// driver.ErrNotFound; see the package documentation for what it
// guarantees after a Seek.
func (s *Store) Open(ctx context.Context, key string) (driver.Reader, error) {
	if err := s.ValidateKey(key); err != nil {
		return nil, err
	}
	rd := &reader{}
	br, err := s.bucket.NewReader(ctx, key, &blob.ReaderOptions{
		BeforeRead: func(as func(any) bool) error {
			if rd.attrs.ETag == "" { // the first GET
				return nil
			}
			var in *s3.GetObjectInput
			if !as(&in) {
				return errors.New("s3result: s3blob did not expose its GetObjectInput")
			}
			in.IfMatch = aws.String(rd.attrs.ETag)
			return nil
		},
	})
	if err != nil {
		return nil, s.wrap("open", key, err)
	}
	var out s3.GetObjectOutput
	if !br.As(&out) {
		_ = br.Close()
		return nil, fmt.Errorf("s3result: open %q: s3blob did not expose its GetObjectOutput", key)
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		_ = br.Close()
		return nil, fmt.Errorf("s3result: open %q: the server sent no ETag", key)
	}
	rd.r, rd.key = br, key
	rd.attrs = driver.Attributes{ContentType: br.ContentType(), Size: br.Size(), ETag: etag, ModTime: br.ModTime()}
	return rd, nil
}

// reader is a driver.Reader over a blob.Reader. It answers reads at or
// after the end itself, so that no ranged GET starts past the end of the
// object (S3 answers those 416).
type reader struct {
	r     *blob.Reader
	key   string
	attrs driver.Attributes
	pos   int64
}

func (r *reader) Read(p []byte) (int, error) {
	if r.pos >= r.attrs.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.r.Read(p)
	r.pos += int64(n)
	if err != nil && err != io.EOF && gcerrors.Code(err) == gcerrors.FailedPrecondition {
		err = fmt.Errorf("%w: %q: %w", ErrChanged, r.key, err)
	}
	if err == nil && r.pos >= r.attrs.Size {
		err = io.EOF
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	pos, err := driver.SeekPosition(r.pos, r.attrs.Size, offset, whence)
	if err != nil {
		return r.pos, fmt.Errorf("s3result: %w", err)
	}
	if _, err := r.r.Seek(min(pos, r.attrs.Size), io.SeekStart); err != nil {
		return r.pos, err
	}
	r.pos = pos
	return pos, nil
}

func (r *reader) Close() error                  { return r.r.Close() }
func (r *reader) Attributes() driver.Attributes { return r.attrs }

// Delete removes the result; deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.ValidateKey(key); err != nil {
		return err
	}
	if err := s.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return s.wrap("delete", key, err)
	}
	return nil
}

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }
