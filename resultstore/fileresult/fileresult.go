// Package fileresult is the result store driver for a local directory. The
// bytes are kept with gocloud.dev/blob/fileblob; arr signs the URLs to them
// itself (HMAC-SHA256 with rotating keys) and serves them through Handler.
//
// # URLs
//
// The package registers the scheme "file" with resultstore.Register:
//
//	file:./arr-data/results              relative directory
//	file:///var/lib/arr/results          absolute directory
//	file:///srv/results?keyfile=/etc/arr/keys.json&prefix=/results/&max_url_lifetime=24h
//
// Query options (all optional): keyfile, prefix, max_url_lifetime; see
// Options for their defaults. Unknown options are an error.
//
// # Layout and durability
//
// A result is one file under the directory, at the key's path (a key
// "a/b" is the file "a/b"). The file holds the bytes followed by a trailer:
// a JSON object with the content type, size and SHA-256 of the bytes, then
// the trailer's length (4 bytes, big-endian) and the magic "ARRRSLT1".
// Keeping the attributes in the same file as the bytes means one rename
// replaces both at once: fileblob's own ".attrs" sidecar is written in place
// before the data file is renamed, so a reader could see new attributes
// with old bytes, or a torn sidecar, and a crash between the two could pair
// them for good. The sidecar is therefore turned off.
//
// Put writes through fileblob, which writes a temporary file next to the
// final one ("<name>.<hex>.tmp") and renames it on Close. Before the rename,
// Put fsyncs the temporary file; after it, Put fsyncs the file's directory,
// and the parent of every directory on the way up to the results directory
// whose entry it has not made durable before (so the rename and any
// directories created for the key are durable too). A reader sees the whole
// old value or the whole new one, never a mix, and a Put that returned nil
// survives a crash. A crash during a Put can leave its temporary file
// behind; such names are never valid keys, so they are never served, and
// they may be deleted.
//
// A key is a "/"-separated path of non-empty segments; "." and "..",
// backslashes, control characters, leading, trailing or doubled slashes
// are refused (ErrInvalidKey), as are final segments ending in ".attrs"
// or looking like fileblob's temporary files (".<hex>.tmp"). A key cannot
// be both a result and a directory of other results ("a" and "a/b"), and on
// a case-insensitive file system keys differing only in case collide.
// Deleting a result leaves its (possibly empty) directories in place.
//
// # Signed URLs
//
// SignedURL returns a relative URL
//
//	<prefix><key, each segment path-escaped>?se=<expiry, unix seconds>&kid=<key id>&sig=<signature>
//
// where sig is the unpadded base64url (RFC 4648 §5) HMAC-SHA256, under the
// secret of the key named kid, of
//
//	"arr-fileresult-url-v1" 0x00 "GET" 0x00 kid 0x00 se 0x00 key
//
// with the key unescaped. "GET" is the read-only method class (GET and
// HEAD). Handler verifies in constant time, refuses unknown key ids,
// non-canonical or duplicated parameters, expired URLs and URLs whose
// expiry lies further ahead than Options.MaxURLLifetime allows.
//
// # Keys
//
// The signing keys live in a keyring file (Options.KeyFile), JSON, mode
// 0600, written atomically:
//
//	{"version": 1, "active": "<kid>", "keys": [
//	  {"id": "<16 hex digits>", "secret": "<base64 of 32 random bytes>",
//	   "created": "<RFC 3339>", "retired": "<RFC 3339, once rotated out>"}]}
//
// It is generated from crypto/rand on first open and reused afterwards. The
// active key signs; every listed key verifies. RotateKeys adds a new active
// key, marks the previous one retired, and prunes keys retired more than
// MaxURLLifetime + KeyRetentionSlack ago, when every URL they signed has
// expired. Key material is never logged nor put in errors.
package fileresult

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"

	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/internal/urlsign"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
)

// Defaults of Options.
const (
	// DefaultKeyFileName is the keyring's file name, in the parent of the
	// results directory, when Options.KeyFile is empty.
	DefaultKeyFileName = "signing-keys.json"
	// DefaultPrefix is the URL path Handler serves when Options.Prefix is
	// empty.
	DefaultPrefix = "/blobs/"
	// DefaultMaxURLLifetime bounds the expiry of signed URLs when
	// Options.MaxURLLifetime is zero.
	DefaultMaxURLLifetime = 7 * 24 * time.Hour
	// KeyRetentionSlack is how much longer than the maximum URL lifetime a
	// retired signing key is kept for verification.
	KeyRetentionSlack = time.Hour
	// DefaultContentType is stored when Put is given no content type.
	DefaultContentType = "application/octet-stream"
)

// ErrInvalidKey is returned (wrapped) for keys the store refuses.
var ErrInvalidKey = errors.New("fileresult: invalid key")

// Scheme is the URL scheme the package registers with resultstore.
const Scheme = "file"

func init() {
	resultstore.Register(Scheme, openURL)
}

// Options configure a Store. The zero value of every field means its
// default.
type Options struct {
	// KeyFile is the path of the signing keyring (JSON). If it does not
	// exist it is created with fresh random keys, mode 0600, and its
	// directory with mode 0700 if missing. A file accessible by group or
	// others is refused. Default: DefaultKeyFileName ("signing-keys.json")
	// in the parent of the results directory, so the keys are never inside
	// the tree the store serves; a KeyFile inside the results directory is
	// refused.
	KeyFile string

	// Prefix is the URL path under which Handler serves signed URLs; it
	// must begin and end with "/". Default: DefaultPrefix ("/blobs/").
	Prefix string

	// MaxURLLifetime is how far in the future a signed URL may expire:
	// SignedURL refuses a later expiry and Handler refuses a URL whose
	// expiry is later than now + MaxURLLifetime (+1 minute for clock
	// skew). A retired signing key verifies URLs for MaxURLLifetime +
	// KeyRetentionSlack after its retirement and is pruned by the first
	// rotation after that. Default: DefaultMaxURLLifetime (7 days).
	MaxURLLifetime time.Duration

	// DirMode is the mode of the directories the store creates (the results
	// directory and the directories of keys with slashes). Default 0700.
	DirMode fs.FileMode

	// FileMode is the mode of result files. Default 0600.
	FileMode fs.FileMode

	// Blobs, when set, keeps the bytes of results instead of files in the
	// results directory: Put, Open and Delete go to it, and the Store adds
	// what it always adds (key and content type validation, the ETag,
	// signed URLs and the Handler that serves them). The results directory
	// is then only where the default KeyFile is found, and is not created.
	// The embedded driver uses it to keep results in its database, where
	// their writes are group-committed with the operations'. Default nil:
	// files.
	Blobs Blobs
}

// LazyBlobs are Blobs that can Put without waiting for durability when
// durable writes through another port's driver make it durable; see
// driver.LazyPutter.
type LazyBlobs interface {
	Blobs
	PutLazy(ctx context.Context, key string, data []byte, attrs driver.Attributes) error
	SyncedBy(other any) bool
}

// Blobs keeps the bytes of results for a Store; see Options.Blobs. Keys
// and content types reaching it are valid; its methods are safe for
// concurrent use.
type Blobs interface {
	// Put stores data and its attributes under key, replacing any earlier
	// value, and is durable when it returns nil.
	Put(ctx context.Context, key string, data []byte, attrs driver.Attributes) error
	// Open returns a reader of the value under key, or driver.ErrNotFound.
	Open(ctx context.Context, key string) (driver.Reader, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases the Blobs; Store.Close calls it.
	Close() error
}

// Store is the file result store. It implements driver.Store and
// driver.Server.
type Store struct {
	dir     string // absolute, cleaned
	keyfile string // absolute
	opts    Options
	bucket  *blob.Bucket

	ring      atomic.Pointer[keyring]
	lastCheck atomic.Int64 // unix nanos of the last keyfile stat
	mu        sync.Mutex   // serializes keyring reloads and rotations

	durableDirs dirSet

	now func() time.Time
}

var (
	_ driver.Store  = (*Store)(nil)
	_ driver.Server = (*Store)(nil)
)

// Open opens (creating if missing) the results directory dir and its
// keyring.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fileresult: empty directory")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := validatePrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if opts.MaxURLLifetime == 0 {
		opts.MaxURLLifetime = DefaultMaxURLLifetime
	}
	if opts.MaxURLLifetime < 0 {
		return nil, errors.New("fileresult: negative MaxURLLifetime")
	}
	if opts.DirMode == 0 {
		opts.DirMode = 0o700
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o600
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fileresult: %w", err)
	}
	if opts.Blobs == nil {
		if err := os.MkdirAll(abs, opts.DirMode); err != nil {
			return nil, fmt.Errorf("fileresult: create results directory: %w", err)
		}
		if err := syncDir(filepath.Dir(abs)); err != nil { // the directory's entry, if just created
			return nil, fmt.Errorf("fileresult: sync results directory: %w", err)
		}
	}
	if opts.KeyFile == "" {
		opts.KeyFile = filepath.Join(filepath.Dir(abs), DefaultKeyFileName)
	}
	keyfile, err := filepath.Abs(opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("fileresult: %w", err)
	}
	insideErr := fmt.Errorf("fileresult: keyfile %s is inside the results directory %s; keep it outside the served tree", keyfile, abs)
	if inside(abs, keyfile) {
		return nil, insideErr
	}
	if err := os.MkdirAll(filepath.Dir(keyfile), 0o700); err != nil {
		return nil, fmt.Errorf("fileresult: create keyfile directory: %w", err)
	}
	if inside(abs, keyfile) { // again, now that symbolic links can be resolved
		return nil, insideErr
	}
	var bucket *blob.Bucket
	if opts.Blobs == nil {
		bucket, err = fileblob.OpenBucket(abs, &fileblob.Options{
			DirFileMode: opts.DirMode,
			NoTempDir:   true, // temp files next to the result: same file system, so the rename is atomic
			Metadata:    fileblob.MetadataDontWrite,
		})
		if err != nil {
			return nil, fmt.Errorf("fileresult: %w", err)
		}
	}
	s := &Store{dir: abs, keyfile: keyfile, opts: opts, bucket: bucket, now: time.Now}
	kr, err := openKeyring(keyfile, s.now())
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	s.ring.Store(kr)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// inside reports whether path is dir or below it, also after resolving
// symbolic links of the existing directories.
func inside(dir, path string) bool {
	check := func(d, p string) bool {
		rel, err := filepath.Rel(d, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
	}
	if check(dir, path) {
		return true
	}
	rd, err1 := filepath.EvalSymlinks(dir)
	rp, err2 := filepath.EvalSymlinks(filepath.Dir(path))
	if err1 != nil || err2 != nil {
		return false
	}
	return check(rd, filepath.Join(rp, filepath.Base(path)))
}

func validatePrefix(p string) error {
	if len(p) < 1 || p[0] != '/' || p[len(p)-1] != '/' {
		return fmt.Errorf("fileresult: prefix %q must begin and end with /", p)
	}
	u, err := url.Parse(p)
	if err != nil || u.Path != p || u.RawQuery != "" || u.Fragment != "" || strings.Contains(p, "//") {
		return fmt.Errorf("fileresult: prefix %q is not a plain URL path", p)
	}
	return nil
}

func openURL(ctx context.Context, u *url.URL) (*resultstore.Store, error) {
	dir := urlmux.Path(u)
	if dir == "" {
		return nil, fmt.Errorf("fileresult: no directory in URL %q", u.Redacted())
	}
	var opts Options
	for k, v := range u.Query() {
		if len(v) != 1 {
			return nil, fmt.Errorf("fileresult: option %q given %d times", k, len(v))
		}
		switch k {
		case "keyfile":
			opts.KeyFile = v[0]
		case "prefix":
			opts.Prefix = v[0]
		case "max_url_lifetime":
			d, err := time.ParseDuration(v[0])
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("fileresult: bad max_url_lifetime %q", v[0])
			}
			opts.MaxURLLifetime = d
		default:
			return nil, fmt.Errorf("fileresult: unknown option %q (known: keyfile, prefix, max_url_lifetime)", k)
		}
	}
	s, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return resultstore.New(s), nil
}

// Dir returns the absolute results directory.
func (s *Store) Dir() string { return s.dir }

// KeyFile returns the absolute path of the keyring.
func (s *Store) KeyFile() string { return s.keyfile }

// --- keys ---------------------------------------------------------------

const (
	maxKeyLen     = 1024
	maxSegmentLen = 200 // leaves room in a 255-byte file name for fileblob's temp suffix
)

var tempName = regexp.MustCompile(`\.[0-9a-f]+\.tmp$`)

// ValidateKey returns nil if key is a key the store accepts, else an error
// wrapping ErrInvalidKey.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, maxKeyLen)
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\\' {
			return bad("control character or backslash")
		}
	}
	segs := strings.Split(key, "/")
	for _, seg := range segs {
		switch {
		case seg == "":
			return bad("empty path segment (leading, trailing or double slash)")
		case seg == "." || seg == "..":
			return bad(`"." or ".." segment`)
		case len(seg) > maxSegmentLen:
			return bad(fmt.Sprintf("segment longer than %d bytes", maxSegmentLen))
		}
	}
	last := segs[len(segs)-1]
	if strings.HasSuffix(last, ".attrs") || tempName.MatchString(last) {
		return bad("name reserved by the storage layout")
	}
	return nil
}

// --- trailer ------------------------------------------------------------

const (
	trailerMagic  = "ARRRSLT1"
	footerLen     = 4 + len(trailerMagic)
	maxTrailerLen = 16 << 10
	maxCTLen      = 1024
)

type trailer struct {
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

func encodeTrailer(t trailer) ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if len(b) > maxTrailerLen {
		return nil, errors.New("fileresult: attributes too large")
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(b)))
	return append(b, trailerMagic...), nil
}

var errCorrupt = errors.New("fileresult: stored result is corrupt")

func readTrailer(f io.ReaderAt, fileSize int64) (trailer, error) {
	var t trailer
	if fileSize < int64(footerLen) {
		return t, errCorrupt
	}
	var foot [footerLen]byte
	if _, err := f.ReadAt(foot[:], fileSize-int64(footerLen)); err != nil {
		return t, err
	}
	if string(foot[4:]) != trailerMagic {
		return t, errCorrupt
	}
	n := int64(binary.BigEndian.Uint32(foot[:4]))
	if n > maxTrailerLen || n > fileSize-int64(footerLen) {
		return t, errCorrupt
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fileSize-int64(footerLen)-n); err != nil {
		return t, err
	}
	if err := json.Unmarshal(buf, &t); err != nil {
		return t, errCorrupt
	}
	if t.Size != fileSize-int64(footerLen)-n || len(t.SHA256) != 64 {
		return t, errCorrupt
	}
	return t, nil
}

func etagOf(sha string) string { return `"` + sha + `"` }

// --- driver.Store -------------------------------------------------------

func validateContentType(ct string) error {
	if len(ct) > maxCTLen {
		return errors.New("fileresult: content type too long")
	}
	for _, r := range ct {
		if r < 0x20 || r == 0x7f {
			return errors.New("fileresult: control character in content type")
		}
	}
	return nil
}

// Put stores the bytes of r under key; see driver.Store.Put. An empty
// contentType is stored as DefaultContentType.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (driver.Attributes, error) {
	contentType, err := checkPut(key, contentType)
	if err != nil {
		return driver.Attributes{}, err
	}
	if s.opts.Blobs != nil {
		return s.putBlob(ctx, key, r, contentType, s.opts.Blobs.Put)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var f *os.File
	w, err := s.bucket.NewWriter(ctx, key, &blob.WriterOptions{
		DisableContentTypeDetection: true,
		BeforeWrite: func(as func(any) bool) error {
			if !as(&f) {
				return errors.New("fileresult: fileblob did not expose its temporary file")
			}
			return f.Chmod(s.opts.FileMode)
		},
	})
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
	}
	abort := func(err error) (driver.Attributes, error) {
		cancel() // a canceled writer is discarded, not renamed
		_ = w.Close()
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
	}
	h := sha256.New()
	bufp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(w, h), onlyReader{r}, *bufp)
	copyBufs.Put(bufp)
	if err != nil {
		return abort(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	tr, err := encodeTrailer(trailer{ContentType: contentType, Size: n, SHA256: sum})
	if err != nil {
		return abort(err)
	}
	if _, err := w.Write(tr); err != nil {
		return abort(err)
	}
	if err := f.Sync(); err != nil {
		return abort(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return abort(err)
	}
	tmp := f.Name()
	if err := w.Close(); err != nil { // renames the temporary file to the result's path
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
	}
	if err := s.syncDirs(filepath.Dir(tmp)); err != nil {
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: sync directory: %w", key, err)
	}
	return driver.Attributes{ContentType: contentType, Size: n, ETag: etagOf(sum), ModTime: fi.ModTime()}, nil
}

// SyncedBy reports whether durable writes through other make this store's
// PutLazy durable: only with Options.Blobs that say so.
func (s *Store) SyncedBy(other any) bool {
	lb, ok := s.opts.Blobs.(LazyBlobs)
	return ok && lb.SyncedBy(other)
}

// PutLazy is Put into LazyBlobs without waiting for durability; see
// driver.LazyPutter. On other stores it is Put.
func (s *Store) PutLazy(ctx context.Context, key string, r io.Reader, contentType string) (driver.Attributes, error) {
	lb, ok := s.opts.Blobs.(LazyBlobs)
	if !ok {
		return s.Put(ctx, key, r, contentType)
	}
	contentType, err := checkPut(key, contentType)
	if err != nil {
		return driver.Attributes{}, err
	}
	return s.putBlob(ctx, key, r, contentType, lb.PutLazy)
}

// putBlob is Put into Options.Blobs, with put.
func (s *Store) putBlob(ctx context.Context, key string, r io.Reader, contentType string,
	put func(context.Context, string, []byte, driver.Attributes) error) (driver.Attributes, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
	}
	sum := sha256.Sum256(data)
	a := driver.Attributes{ContentType: contentType, Size: int64(len(data)), ETag: etagOf(hex.EncodeToString(sum[:])),
		ModTime: s.now().UTC().Truncate(time.Microsecond)}
	if err := put(ctx, key, data, a); err != nil {
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
	}
	return a, nil
}

// checkPut validates a Put's key and content type, defaulting the latter.
func checkPut(key, contentType string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if contentType == "" {
		contentType = DefaultContentType
	}
	return contentType, validateContentType(contentType)
}

// onlyReader hides any WriterTo of the source so that io.CopyBuffer streams
// through the buffer.
type onlyReader struct{ io.Reader }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// syncDirs makes a rename into dir durable: it fsyncs dir, then, for dir
// and each directory above it up to the results directory, fsyncs its
// parent so that the directory's own entry is durable (fileblob may just
// have created it). A directory whose entry this store already made durable
// ends the walk, so a Put into an existing directory costs one directory
// fsync.
func (s *Store) syncDirs(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	for dir != s.dir && strings.HasPrefix(dir, s.dir+string(filepath.Separator)) {
		if s.durableDirs.has(dir) {
			return nil
		}
		parent := filepath.Dir(dir)
		if err := syncDir(parent); err != nil {
			return err
		}
		s.durableDirs.add(dir)
		dir = parent
	}
	return nil
}

// dirSet is a bounded set of directories whose entries are known durable.
type dirSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const maxDurableDirs = 4096

func (d *dirSet) has(dir string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.m[dir]
	return ok
}

func (d *dirSet) add(dir string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDurableDirs {
		d.m = make(map[string]struct{})
	}
	d.m[dir] = struct{}{}
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// reader is a stored result open for reading.
type reader struct {
	*io.SectionReader
	br    *blob.Reader
	attrs driver.Attributes
}

func (r *reader) Attributes() driver.Attributes { return r.attrs }
func (r *reader) Close() error                  { return r.br.Close() }

// Open returns a reader of the result under key, or driver.ErrNotFound.
// The reader reads one snapshot of the result even if it is overwritten or
// deleted meanwhile.
func (s *Store) Open(ctx context.Context, key string) (driver.Reader, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if s.opts.Blobs != nil {
		return s.opts.Blobs.Open(ctx, key)
	}
	var f *os.File
	br, err := s.bucket.NewRangeReader(ctx, key, 0, -1, &blob.ReaderOptions{
		BeforeRead: func(as func(any) bool) error {
			if !as(&f) {
				return errors.New("fileresult: fileblob did not expose its file")
			}
			return nil
		},
	})
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("%w: %q", driver.ErrNotFound, key)
		}
		return nil, fmt.Errorf("fileresult: open %q: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("fileresult: open %q: %w", key, err)
	}
	t, err := readTrailer(f, fi.Size())
	if err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("fileresult: open %q: %w", key, err)
	}
	return &reader{
		SectionReader: io.NewSectionReader(f, 0, t.Size),
		br:            br,
		attrs:         driver.Attributes{ContentType: t.ContentType, Size: t.Size, ETag: etagOf(t.SHA256), ModTime: fi.ModTime()},
	}, nil
}

// Delete removes the result under key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if s.opts.Blobs != nil {
		return s.opts.Blobs.Delete(ctx, key)
	}
	// A directory of other results is not a result: nothing to delete.
	if ok, err := s.bucket.Exists(ctx, key); err != nil {
		return fmt.Errorf("fileresult: delete %q: %w", key, err)
	} else if !ok {
		return nil
	}
	if err := s.bucket.Delete(ctx, key); err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil
		}
		return fmt.Errorf("fileresult: delete %q: %w", key, err)
	}
	if err := syncDir(filepath.Dir(filepath.Join(s.dir, filepath.FromSlash(key)))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fileresult: delete %q: sync directory: %w", key, err)
	}
	return nil
}

// SignedURL returns a relative URL (Prefix, the escaped key and the query)
// that lets its holder GET or HEAD the result through Handler until expiry.
// An expiry later than now + Options.MaxURLLifetime is refused; one in the
// past gives a URL that is refused when used.
func (s *Store) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if expiry.IsZero() || expiry.Unix() <= 0 {
		return "", errors.New("fileresult: signed URL needs an expiry")
	}
	if expiry.After(s.now().Add(s.opts.MaxURLLifetime)) {
		return "", fmt.Errorf("fileresult: expiry %s is more than %s away", expiry.UTC().Format(time.RFC3339), s.opts.MaxURLLifetime)
	}
	k := s.keys(false).Active()
	se := expiry.Unix()
	return s.opts.Prefix + urlsign.EscapeKey(key) + "?" + signedQuery(k, key, se), nil
}

// Blobs returns Options.Blobs, nil for a store of files.
func (s *Store) Blobs() Blobs { return s.opts.Blobs }

// Close closes the store.
func (s *Store) Close() error {
	if s.opts.Blobs != nil {
		return s.opts.Blobs.Close()
	}
	return s.bucket.Close()
}

// Prefix returns the URL path Handler serves; see driver.Server.
func (s *Store) Prefix() string { return s.opts.Prefix }
