package urlsign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/arrhq/arr/internal/fsync"
)

// DefaultKeyFileName is the name of the keyring file of the file and
// embedded result stores' signers, in the parent of their directory.
const DefaultKeyFileName = "signing-keys.json"

// FileKeys keeps a keyring in a file, JSON, mode 0600, written atomically
// (a temporary file in the same directory, fsynced, then linked or renamed
// into place, and the directory fsynced). A file accessible by group or
// others is refused. A keyring's version is the SHA-256 of the file.
//
// Store's compare-and-swap is atomic between the users of one FileKeys;
// processes sharing the file create it atomically (the first creation
// wins), but two processes rotating at the same instant may lose one of
// the rotations: rotate from one place at a time.
type FileKeys struct {
	path string
	mu   sync.Mutex // serializes Store
}

var _ Keys = (*FileKeys)(nil)

// OpenFileKeys returns the FileKeys of the file at path, creating its
// directory (mode 0700) if missing. When outside is not empty, a path in
// the directory outside or below it, also after resolving symbolic links,
// is refused: the keys of a signer must never lie in the tree of the
// results it serves. The file itself is created by the first Store.
func OpenFileKeys(path, outside string) (*FileKeys, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("urlsign: %w", err)
	}
	var insideErr error
	if outside != "" {
		if outside, err = filepath.Abs(outside); err != nil {
			return nil, fmt.Errorf("urlsign: %w", err)
		}
		insideErr = fmt.Errorf("urlsign: keyfile %s is inside the results directory %s; keep it outside the served tree", abs, outside)
		if inside(outside, abs) {
			return nil, insideErr
		}
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("urlsign: create keyfile directory: %w", err)
	}
	if outside != "" && inside(outside, abs) { // again, now that symbolic links can be resolved
		return nil, insideErr
	}
	return &FileKeys{path: abs}, nil
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

// Path returns the absolute path of the keyring file.
func (f *FileKeys) Path() string { return f.path }

func (f *FileKeys) String() string { return f.path }

// read returns the file's bytes, checking its mode.
func (f *FileKeys) read() ([]byte, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKeyring, f.path)
	}
	if err != nil {
		return nil, fmt.Errorf("urlsign: keyfile: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("urlsign: keyfile: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("urlsign: keyfile %s has mode %04o; it must not be accessible by group or others (chmod 600 it)", f.path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxLen+1))
	if err != nil {
		return nil, fmt.Errorf("urlsign: keyfile: %w", err)
	}
	return data, nil
}

func fileVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Load implements Keys. It reads the file every time (it is small).
func (f *FileKeys) Load(ctx context.Context, ifChanged string) (*Keyring, string, error) {
	data, err := f.read()
	if err != nil {
		return nil, "", err
	}
	ver := fileVersion(data)
	if ifChanged != "" && ver == ifChanged {
		return nil, "", ErrUnchanged
	}
	kr, err := Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("urlsign: keyfile %s: %v", f.path, err)
	}
	return kr, ver, nil
}

// Store implements Keys: a creation links a new file into place only if
// none exists; a replacement renames a new file over the old one if the
// old one still has version.
func (f *FileKeys) Store(ctx context.Context, kr *Keyring, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := filepath.Dir(f.path)
	if version != "" {
		data, err := f.read()
		if errors.Is(err, ErrNoKeyring) || err == nil && fileVersion(data) != version {
			return ErrConflict
		}
		if err != nil {
			return err
		}
	}
	tmp, err := writeTemp(dir, kr)
	if err != nil {
		return err
	}
	if version == "" {
		err = os.Link(tmp, f.path)
		_ = os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return ErrConflict
		}
	} else if err = os.Rename(tmp, f.path); err != nil {
		_ = os.Remove(tmp)
	}
	if err != nil {
		return fmt.Errorf("urlsign: write keyfile: %w", err)
	}
	if err := fsync.Dir(dir); err != nil {
		return fmt.Errorf("urlsign: write keyfile: %w", err)
	}
	return nil
}

// Close implements Keys; the file stays.
func (f *FileKeys) Close() error { return nil }

// writeTemp writes kr to a new mode-0600 temporary file in dir, fsynced,
// and returns its name.
func writeTemp(dir string, kr *Keyring) (string, error) {
	data, err := kr.Marshal()
	if err != nil {
		return "", err
	}
	fh, err := os.CreateTemp(dir, ".signing-keys-*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("urlsign: write keyfile: %w", err)
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Chmod(0o600)
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(fh.Name())
		return "", fmt.Errorf("urlsign: write keyfile: %w", err)
	}
	return fh.Name(), nil
}
