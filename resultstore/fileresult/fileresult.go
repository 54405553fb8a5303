// Package fileresult is the result store driver for a local directory. The
// bytes are kept with gocloud.dev/blob/fileblob. It registers the signer of
// URLs to them too (package urlsign): arr signs them itself (HMAC-SHA256
// with rotating keys in a keyring file) and serves them.
//
// # URLs
//
// The package registers the engine scheme "file" with engine.Register; the
// engine hands out the result store and its signer:
//
//	file:./arr-data/results              relative directory
//	file:///var/lib/arr/results          absolute directory
//	file:///srv/results?keyfile=/etc/arr/keys.json&prefix=/results/&max_url_lifetime=24h
//
// Query options (all optional, each at most once) are the signer's:
// keyfile, prefix, max_url_lifetime (see urlsign.FileOptions: KeyFile,
// Prefix, MaxURLLifetime; max_url_lifetime is a positive Go duration). The
// result store accepts and ignores them; any other option is an error.
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
// Keys are resultstore's path keys (resultstore.ValidatePathKey): a
// "/"-separated path of non-empty segments; "." and "..", backslashes,
// control characters, leading, trailing or doubled slashes are refused
// (ErrInvalidKey), as are final segments ending in ".attrs" or looking
// like fileblob's temporary files (".<hex>.tmp"). A key cannot be both a
// result and a directory of other results ("a" and "a/b"), and on a
// case-insensitive file system keys differing only in case collide.
// Deleting a result leaves its (possibly empty) directories in place.
//
// # Signed URLs
//
// The signer the scheme opens is urlsign.OpenFile's: relative URLs under
// the prefix (default /blobs/), signed with the domain urlsign.FileDomain
// by the keys of the keyring file (default: signing-keys.json in the parent
// of the results directory, never inside it), served from the files.
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
	"runtime"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/fsync"
	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// DefaultContentType is stored when Put is given no content type.
const DefaultContentType = resultstore.DefaultContentType

// ErrInvalidKey is returned (wrapped) for keys the store refuses.
var ErrInvalidKey = resultstore.ErrInvalidKey

// Scheme is the URL scheme the package registers with package engine.
const Scheme = "file"

func init() {
	engine.Register(Scheme, func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		if _, err := parseURL(u); err != nil {
			return nil, err
		}
		return &engine.ResultsOnly{Name: Scheme,
			Results: func(context.Context) (driver.Store, error) {
				dir, _ := parseURL(u)
				return Open(dir, Options{})
			},
			Signer: func(ctx context.Context, results *resultstore.Store) (*urlsign.Signer, error) {
				return signerFor(ctx, u, results)
			},
		}, nil
	})
}

// Options configure a Store. The zero value of every field means its
// default.
type Options struct {
	// DirMode is the mode of the directories the store creates (the results
	// directory and the directories of keys with slashes). Default 0700.
	DirMode fs.FileMode

	// FileMode is the mode of result files. Default 0600.
	FileMode fs.FileMode
}

// Store is the file result store. It implements driver.Store and
// driver.KeyValidator.
type Store struct {
	dir    string // absolute, cleaned
	opts   Options
	bucket *blob.Bucket

	durableDirs dirSet
}

var (
	_ driver.Store        = (*Store)(nil)
	_ driver.KeyValidator = (*Store)(nil)
)

// Open opens (creating if missing) the results directory dir.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fileresult: empty directory")
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
	if err := os.MkdirAll(abs, opts.DirMode); err != nil {
		return nil, fmt.Errorf("fileresult: create results directory: %w", err)
	}
	if err := fsync.Dir(filepath.Dir(abs)); err != nil { // the directory's entry, if just created
		return nil, fmt.Errorf("fileresult: sync results directory: %w", err)
	}
	bucket, err := fileblob.OpenBucket(abs, &fileblob.Options{
		DirFileMode: opts.DirMode,
		NoTempDir:   true, // temp files next to the result: same file system, so the rename is atomic
		Metadata:    fileblob.MetadataDontWrite,
	})
	if err != nil {
		return nil, fmt.Errorf("fileresult: %w", err)
	}
	return &Store{dir: abs, opts: opts, bucket: bucket}, nil
}

// signerOptions are the URL options of the signer, which the result
// store ignores.
var signerOptions = map[string]bool{"keyfile": true, "prefix": true, "max_url_lifetime": true}

// parseURL checks u's options and returns its directory.
func parseURL(u *url.URL) (string, error) {
	dir := urlmux.Path(u)
	if dir == "" {
		return "", fmt.Errorf("fileresult: no directory in URL %q", u.Redacted())
	}
	for k, v := range u.Query() {
		if len(v) != 1 {
			return "", fmt.Errorf("fileresult: option %q given %d times", k, len(v))
		}
		if !signerOptions[k] {
			return "", fmt.Errorf("fileresult: unknown option %q (known: keyfile, prefix, max_url_lifetime)", k)
		}
	}
	return dir, nil
}

// signerFor opens the signer of the file store results, opened from
// u: see urlsign.OpenFile, with the options keyfile, prefix and
// max_url_lifetime of u.
func signerFor(ctx context.Context, u *url.URL, results *resultstore.Store) (*urlsign.Signer, error) {
	s, ok := results.Driver().(*Store)
	if !ok {
		return nil, fmt.Errorf("fileresult: the results of %q are not a file store's", u.Redacted())
	}
	opts := urlsign.FileOptions{Dir: s.dir}
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
		}
	}
	return urlsign.OpenFile(ctx, results, opts)
}

// Dir returns the absolute results directory.
func (s *Store) Dir() string { return s.dir }

// ValidateKey returns nil if key is a key the store accepts (a path key,
// see resultstore.ValidatePathKey), else an error wrapping ErrInvalidKey.
func ValidateKey(key string) error { return resultstore.ValidatePathKey(key) }

// ValidateKey implements driver.KeyValidator: see the package function
// ValidateKey.
func (s *Store) ValidateKey(key string) error { return ValidateKey(key) }

// --- trailer ------------------------------------------------------------

const (
	trailerMagic  = "ARRRSLT1"
	footerLen     = 4 + len(trailerMagic)
	maxTrailerLen = 16 << 10
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

// Put stores the bytes of r under key; see driver.Store.Put. An empty
// contentType is stored as DefaultContentType.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (driver.Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return driver.Attributes{}, err
	}
	contentType, err := resultstore.CheckContentType(contentType)
	if err != nil {
		return driver.Attributes{}, fmt.Errorf("fileresult: put %q: %w", key, err)
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
	if err := fsync.Dir(dir); err != nil {
		return err
	}
	for dir != s.dir && strings.HasPrefix(dir, s.dir+string(filepath.Separator)) {
		if s.durableDirs.has(dir) {
			return nil
		}
		parent := filepath.Dir(dir)
		if err := fsync.Dir(parent); err != nil {
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
	if err := fsync.Dir(filepath.Dir(filepath.Join(s.dir, filepath.FromSlash(key)))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fileresult: delete %q: sync directory: %w", key, err)
	}
	return nil
}

// Close closes the store.
func (s *Store) Close() error { return s.bucket.Close() }
