// Package azblobresult is the result store driver for Azure Blob Storage,
// keyless: it authenticates with a Microsoft Entra token
// (internal/azclient: DefaultAzureCredential, so a managed identity on
// Azure Container Apps or App Service, workload identity, the AZURE_*
// environment or the Azure CLI) and never with an account key. The bytes
// are kept with the Azure SDK's azblob module. It registers the signer of
// URLs to results too (package urlsign, see OpenSigner), whose URLs are
// user delegation SAS URLs of the blobs themselves: clients fetch the
// bytes from Azure directly, never through arr.
//
// # URLs
//
// The package registers the scheme "azblob" with package engine, which
// opens the store and its signer from the same URL:
//
//	azblob://results?account=myaccount
//	azblob://results?account=myaccount&prefix=arr/results/
//	azblob://results?endpoint=https://myaccount.blob.core.windows.net
//	azblob://results?endpoint=https://devstoreaccount1.blob.localhost:10000   (Azurite)
//
// The host is the container's name (3 to 63 lowercase letters, digits and
// single hyphens, as Azure requires); the URL has no path, user
// information nor fragment. Query parameters, each given at most once;
// any other parameter is an error:
//
//   - account: the storage account name; the blob endpoint is then
//     https://<account>.blob.core.windows.net.
//   - endpoint: the blob service's URL instead (a sovereign cloud, a
//     private endpoint, an emulator). Its host name must begin with the
//     account name (Azure's host style, <account>.blob.…): the Azure SDK
//     reads the account name that user delegation SAS signatures cover
//     from it.
//   - prefix: a prefix of every blob name, e.g. "results/". Default: none.
//
// Exactly one of account and endpoint is required. The container must
// exist (arr does not create it). Opening the store does no I/O; opening
// its signer fetches a user delegation key, so a wrong endpoint or a
// missing permission fails the engine's Signer.
//
// # Permissions
//
// The identity needs, on the container (or the account), a role with
// the data actions to read, write and delete blobs (Storage Blob Data
// Contributor), and, on the account, the action
// Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action
// to sign URLs (Storage Blob Data Contributor includes it, as do Storage
// Blob Data Owner, Storage Blob Data Reader and Storage Blob Delegator).
//
// # Keys and blobs
//
// A result is one block blob: prefix + key, with the content type as the
// blob's Content-Type. A key is valid UTF-8 without control characters
// (C0, DEL, C1), noncharacters U+FFFE and U+FFFF, or backslashes (which
// Azure and its SDKs may take for "/"); it is made of "/"-separated
// non-empty segments none of which ends with "." (Azure refuses or
// rewrites such names, and HTTP clients rewrite "." and ".." segments);
// prefix + key has at most 254 segments and 1024 characters (UTF-16 code
// units), Azure's limits. Other keys are refused with ErrInvalidKey.
//
// # Guarantees
//
//   - Put streams the bytes as blocks of BlockSize (two in flight) and
//     commits them with one Put Block List, or sends a small result as
//     one Put Blob: Azure makes the blob's new value visible only when
//     that last request succeeds, so a reader sees the whole previous
//     value or the whole new one. If the source reader fails or ctx is
//     canceled, nothing is committed and the previous value, if any, stays
//     (uncommitted blocks are discarded by Azure after a week).
//   - Attributes are the blob's: Content-Type, size, the ETag exactly as
//     Azure sends it (quoted, strong) and Last-Modified (whole seconds);
//     Put returns those of the blob it committed.
//   - A Reader reads the version it opened, lazily: Open starts one
//     download of the whole blob and reads its body as it is asked to;
//     after a Seek it continues with a ranged download from the new
//     position, conditional on the ETag (If-Match), so an overwrite or
//     delete between reads gives an error (ErrChanged), never a mix of
//     versions. A result is never held in memory whole.
//   - Delete removes the blob and its snapshots; a missing one is not an
//     error.
//
// # Signed URLs
//
// The signer (OpenSigner) is an urlsign driver whose URLs point at Azure,
// not a Verifier: Signer.Handler is nil and the api hands clients the
// absolute blob URL with a user delegation SAS (see Signer.SignedURL for
// its exact parameters): read only (sp=r), for that blob only (sr=b),
// https only when the endpoint is https (spr=https), until the expiry
// (se), answered as a download (rscd: "attachment" with
// urlsign.DownloadName as file name) with the blob's own Content-Type.
// The SAS is signed with a user delegation key that the process fetches
// from Azure with its Entra identity; the key is never stored nor
// configured: every api process fetches and caches its own, and a SAS
// signed by one process is valid everywhere until it expires. See
// Signer for how keys are renewed and why a URL never outlives its key.
//
// Azure, not arr, serves the URLs, so they differ from arr's own signed
// URLs (the file and S3 drivers): a refused URL gets a 403 with Azure's
// XML error (on Azure AuthenticationFailed for a bad, tampered or expired
// signature and AuthorizationPermissionMismatch for a method the SAS does
// not allow; Azurite answers AuthorizationFailure to both), and a valid
// URL of a missing result 404 BlobNotFound, never
// application/problem+json. HEAD is answered by Get Blob Properties (200,
// no body); Range and conditional requests are Azure's. Query parameters
// Azure does not know (x=1) are ignored rather than refused; SAS
// parameters added, repeated or changed are refused, since every one is
// covered by the signature. Azure cannot add the headers arr sets on the
// bytes it serves itself (Content-Security-Policy, nosniff): the result is
// on the storage account's origin and downloaded as an attachment.
// Signer.SetMaxTTL bounds the URLs signed from then on; a SAS signed
// before cannot be revoked by arr (only by revoking the account's user
// delegation keys, or the identity's role).
package azblobresult

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/azclient"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// Scheme is the URL scheme the package registers with package engine.
const Scheme = "azblob"

const (
	// DefaultContentType is stored when Put is given no content type.
	DefaultContentType = "application/octet-stream"
	// BlockSize is the size of the blocks Put stages; a Put holds up to
	// uploadConcurrency+1 of them in memory.
	BlockSize = 4 << 20
	// maxBlobName and maxSegments are Azure's limits on a blob name: 1024
	// characters and 254 path segments.
	maxBlobName       = 1024
	maxSegments       = 254
	maxCTLen          = 1024
	uploadConcurrency = 2
)

// ErrInvalidKey is returned (wrapped) for keys the store refuses.
var ErrInvalidKey = errors.New("azblobresult: invalid key")

// ErrChanged is returned (wrapped) by a Reader's Read when the result was
// replaced or deleted after the Reader was opened and a Seek made the
// Reader download the rest of it again.
var ErrChanged = errors.New("azblobresult: result changed while being read")

func init() {
	engine.Register(Scheme, func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		return &engine.ResultsOnly{Name: Scheme,
			Results: func(ctx context.Context) (driver.Store, error) { return OpenURL(ctx, u, Options{}) },
			Signer: func(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
				return OpenSigner(ctx, results)
			},
		}, nil
	})
}

// Options configure New and OpenURL.
type Options struct {
	// Prefix is prepended to every key to make the blob name, e.g.
	// "results/". Default: none. OpenURL takes it from the URL's prefix
	// parameter; giving both is an error.
	Prefix string

	// Credential authenticates every request, and the fetches of user
	// delegation keys. Default: azclient.Credential()
	// (DefaultAzureCredential).
	Credential azcore.TokenCredential

	// ClientOptions are the Azure clients' options (transport, retries).
	// Default: azclient.ClientOptions().
	ClientOptions *azcore.ClientOptions

	// Now is the signer's clock, which decides when user delegation keys
	// are renewed. Default: time.Now.
	Now func() time.Time

	// KeyLifetime is how long the user delegation keys the signer
	// requests are valid (longer when a URL's expiry needs it); at most
	// MaxKeyLifetime. Default: DefaultKeyLifetime (2 days).
	KeyLifetime time.Duration

	// KeyRenewBefore: the signer fetches a new key once the current one
	// has less than this left. Less than KeyLifetime. Default:
	// DefaultKeyRenewBefore (1 day).
	KeyRenewBefore time.Duration
}

// Store is the Azure Blob Storage result store. It implements
// driver.Store and driver.KeyValidator; its methods are safe for
// concurrent use.
type Store struct {
	svc           *service.Client
	container     *container.Client
	endpoint      string // the blob service's URL, without a trailing /
	containerName string
	prefix        string
	opts          Options
}

var (
	_ driver.Store        = (*Store)(nil)
	_ driver.KeyValidator = (*Store)(nil)
)

// New returns a store over the container named containerName of the blob
// service svc names. It does no I/O.
func New(svc *service.Client, containerName string, opts Options) (*Store, error) {
	if svc == nil {
		return nil, errors.New("azblobresult: nil service client")
	}
	if !validContainer(containerName) {
		return nil, fmt.Errorf("azblobresult: %q is not a container name (3 to 63 lowercase letters, digits and single hyphens, beginning and ending with a letter or digit)", containerName)
	}
	if opts.Prefix != "" {
		if !utf8.ValidString(opts.Prefix) || badRunes(opts.Prefix) != "" || utf16Len(opts.Prefix) >= maxBlobName {
			return nil, fmt.Errorf("azblobresult: invalid prefix %q", opts.Prefix)
		}
		// Its whole segments (those a "/" ends) follow the keys' rules.
		segs := strings.Split(opts.Prefix, "/")
		for _, seg := range segs[:len(segs)-1] {
			if seg == "" || strings.HasSuffix(seg, ".") {
				return nil, fmt.Errorf(`azblobresult: invalid prefix %q: an empty segment or one ending with "."`, opts.Prefix)
			}
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.KeyLifetime == 0 {
		opts.KeyLifetime = DefaultKeyLifetime
	}
	if opts.KeyRenewBefore == 0 {
		opts.KeyRenewBefore = DefaultKeyRenewBefore
	}
	if opts.KeyLifetime < time.Minute || opts.KeyLifetime > MaxKeyLifetime {
		return nil, fmt.Errorf("azblobresult: key lifetime %v is not between a minute and %v", opts.KeyLifetime, MaxKeyLifetime)
	}
	if opts.KeyRenewBefore < 0 || opts.KeyRenewBefore >= opts.KeyLifetime {
		return nil, fmt.Errorf("azblobresult: key renewal %v before expiry is not shorter than the key lifetime %v", opts.KeyRenewBefore, opts.KeyLifetime)
	}
	return &Store{
		svc:           svc,
		container:     svc.NewContainerClient(containerName),
		endpoint:      strings.TrimSuffix(svc.URL(), "/"),
		containerName: containerName,
		prefix:        opts.Prefix,
		opts:          opts,
	}, nil
}

// validContainer reports whether s is a valid container name.
func validContainer(s string) bool {
	if len(s) < 3 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Open opens the store a URL of scheme "azblob" names; see the package
// documentation for its form. opts supplies what a URL does not
// (credential, client options, clock).
func Open(ctx context.Context, urlstr string, opts Options) (*Store, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, fmt.Errorf("azblobresult: bad URL: %w", err)
	}
	return OpenURL(ctx, u, opts)
}

// OpenURL is Open with a parsed URL.
func OpenURL(ctx context.Context, u *url.URL, opts Options) (*Store, error) {
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("azblobresult: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	if u.User != nil {
		return nil, errors.New("azblobresult: credentials in the URL are refused; arr authenticates with DefaultAzureCredential")
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("azblobresult: no container in URL %q (want azblob://CONTAINER?account=NAME)", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("azblobresult: URL %q has a path; give a blob name prefix with prefix=", u.Redacted())
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("azblobresult: URL %q has a fragment", u.Redacted())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("azblobresult: bad query in URL: %w", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("azblobresult: parameter %q given %d times", k, len(v))
		}
		switch k {
		case "account", "endpoint":
		case "prefix":
			if opts.Prefix != "" && opts.Prefix != v[0] {
				return nil, fmt.Errorf("azblobresult: prefix given both in the URL (%q) and in Options (%q)", v[0], opts.Prefix)
			}
			opts.Prefix = v[0]
		default:
			return nil, fmt.Errorf("azblobresult: unknown URL parameter %q (known: account, endpoint, prefix)", k)
		}
	}
	endpoint, err := azclient.Endpoint(q, "blob")
	if err != nil {
		return nil, fmt.Errorf("azblobresult: %w", err)
	}
	cred := opts.Credential
	if cred == nil {
		if cred, err = azclient.Credential(); err != nil {
			return nil, fmt.Errorf("azblobresult: %w", err)
		}
	}
	co := azclient.ClientOptions()
	if opts.ClientOptions != nil {
		co = *opts.ClientOptions
	}
	svc, err := service.NewClient(endpoint+"/", cred, &service.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("azblobresult: %w", err)
	}
	return New(svc, u.Host, opts)
}

// ValidateKey returns nil if key is a key the store accepts (see the
// package documentation), else an error wrapping ErrInvalidKey.
func (s *Store) ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	case utf16Len(s.prefix)+utf16Len(key) > maxBlobName:
		return fmt.Errorf("%w: prefix and key longer than %d characters", ErrInvalidKey, maxBlobName)
	}
	if why := badRunes(key); why != "" {
		return bad(why)
	}
	n := strings.Count(s.prefix, "/")
	for seg := range strings.SplitSeq(key, "/") {
		n++
		switch {
		case seg == "":
			return bad("empty path segment (leading, trailing or double slash)")
		case strings.HasSuffix(seg, "."):
			return bad(`a path segment ends with "."`)
		}
	}
	if n > maxSegments {
		return bad(fmt.Sprintf("more than %d path segments with the prefix", maxSegments))
	}
	return nil
}

// badRunes says why s has a character no blob name may hold, or "".
func badRunes(s string) string {
	for _, r := range s {
		switch {
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			return "control character"
		case r == 0xfffe || r == 0xffff:
			return "noncharacter"
		case r == '\\':
			return "backslash"
		}
	}
	return ""
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// blobName is the name of key's blob.
func (s *Store) blobName(key string) string { return s.prefix + key }

func (s *Store) wrap(op, key string, err error) error {
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("azblobresult: %s %q: %w", op, key, driver.ErrNotFound)
	}
	return fmt.Errorf("azblobresult: %s %q: %w", op, key, err)
}

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
	if len(contentType) > maxCTLen || strings.ContainsFunc(contentType, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		return driver.Attributes{}, fmt.Errorf("azblobresult: put %q: invalid content type", key)
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return driver.Attributes{}, fmt.Errorf("azblobresult: put %q: content type %q: %w", key, contentType, err)
	}
	if err := ctx.Err(); err != nil {
		return driver.Attributes{}, fmt.Errorf("azblobresult: put %q: %w", key, err)
	}
	src := &driver.SourceReader{R: r}
	// UploadStream stages the blocks and commits them last (or sends one
	// Put Blob for a single short block): a read error or a canceled ctx
	// returns before the commit.
	res, err := s.container.NewBlockBlobClient(s.blobName(key)).UploadStream(ctx, src, &blockblob.UploadStreamOptions{
		BlockSize:   BlockSize,
		Concurrency: uploadConcurrency,
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr(contentType)},
	})
	if err == nil && src.Err != nil { // not expected: UploadStream returns read errors
		err = src.Err
	}
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("azblobresult: put %q: %w", key, err)
	}
	if res.ETag == nil || res.LastModified == nil {
		return driver.Attributes{}, fmt.Errorf("azblobresult: put %q: Azure answered without ETag or Last-Modified", key)
	}
	return driver.Attributes{ContentType: contentType, Size: src.N, ETag: string(*res.ETag), ModTime: *res.LastModified}, nil
}

// Open returns a reader of the stored bytes, or an error wrapping
// driver.ErrNotFound; see the package documentation for what it
// guarantees after a Seek. ctx bounds the reader's downloads, the first
// and those after a Seek.
func (s *Store) Open(ctx context.Context, key string) (driver.Reader, error) {
	if err := s.ValidateKey(key); err != nil {
		return nil, err
	}
	bc := s.container.NewBlobClient(s.blobName(key))
	res, err := bc.DownloadStream(ctx, nil)
	if err != nil {
		return nil, s.wrap("open", key, err)
	}
	if res.ETag == nil || res.ContentLength == nil || res.LastModified == nil {
		res.Body.Close()
		return nil, fmt.Errorf("azblobresult: open %q: Azure answered without ETag, Content-Length or Last-Modified", key)
	}
	return &reader{
		ctx: ctx, client: bc, key: key, body: res.Body,
		attrs: driver.Attributes{
			ContentType: deref(res.ContentType), Size: *res.ContentLength,
			ETag: string(*res.ETag), ModTime: *res.LastModified,
		},
	}, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// reader is a driver.Reader of one version of a blob. body is the
// download in progress, from pos; nil after a Seek, when the next Read
// starts a ranged one conditional on the ETag.
type reader struct {
	ctx    context.Context
	client *blob.Client
	key    string
	attrs  driver.Attributes
	body   io.ReadCloser
	pos    int64
}

func (r *reader) Read(p []byte) (int, error) {
	if r.pos >= r.attrs.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.body == nil {
		etag := azcore.ETag(r.attrs.ETag)
		res, err := r.client.DownloadStream(r.ctx, &blob.DownloadStreamOptions{
			Range:            blob.HTTPRange{Offset: r.pos},
			AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}},
		})
		if err != nil {
			if bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobNotFound) {
				return 0, fmt.Errorf("%w: %q: %w", ErrChanged, r.key, err)
			}
			return 0, fmt.Errorf("azblobresult: read %q at %d: %w", r.key, r.pos, err)
		}
		r.body = res.Body
	}
	n, err := r.body.Read(p)
	r.pos += int64(n)
	switch {
	case err == io.EOF && r.pos < r.attrs.Size:
		err = fmt.Errorf("azblobresult: read %q: %w after %d of %d bytes", r.key, io.ErrUnexpectedEOF, r.pos, r.attrs.Size)
	case err == nil && r.pos >= r.attrs.Size:
		err = io.EOF
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	pos, err := driver.SeekPosition(r.pos, r.attrs.Size, offset, whence)
	if err != nil {
		return r.pos, fmt.Errorf("azblobresult: %w", err)
	}
	if pos != r.pos && r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
	r.pos = pos
	return pos, nil
}

func (r *reader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

func (r *reader) Attributes() driver.Attributes { return r.attrs }

// Delete removes the result and its snapshots; deleting a missing key is
// not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.ValidateKey(key); err != nil {
		return err
	}
	_, err := s.container.NewBlobClient(s.blobName(key)).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude)})
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return s.wrap("delete", key, err)
	}
	return nil
}

// Close releases nothing: Azure clients hold no resources but idle
// connections of their HTTP client.
func (s *Store) Close() error { return nil }

// BlobURL returns the URL of key's blob (without a SAS): the service
// endpoint, the container and the blob name, each segment path-escaped.
func (s *Store) BlobURL(key string) string {
	var b strings.Builder
	b.WriteString(s.endpoint)
	b.WriteString("/")
	b.WriteString(s.containerName)
	for seg := range strings.SplitSeq(s.blobName(key), "/") {
		b.WriteString("/")
		b.WriteString(url.PathEscape(seg))
	}
	return b.String()
}

// ContainerName returns the name of the store's container.
func (s *Store) ContainerName() string { return s.containerName }
