package urlsign

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/arrhq/arr/resultstore"
)

// FileOptions configure OpenFile. The zero value of every field but Dir
// means its default.
type FileOptions struct {
	// Dir is the directory of the results (the file store's directory,
	// the embedded DB's). Required.
	Dir string
	// KeyFile is the path of the keyring file (see FileKeys). If it does
	// not exist it is created with a fresh random key, and its directory
	// with mode 0700 if missing. Default: DefaultKeyFileName
	// ("signing-keys.json") in the parent of Dir, so that the keys are
	// never inside the tree the store serves; a KeyFile inside Dir is
	// refused.
	KeyFile string
	// Prefix: see HMACOptions.Prefix.
	Prefix string
	// MaxURLLifetime: see HMACOptions.MaxURLLifetime.
	MaxURLLifetime time.Duration
}

// OpenFileKeysOf opens the keyring file of the signer of the results in
// dir, as OpenFile does: keyFile, or by default DefaultKeyFileName in the
// parent of dir; a keyring inside dir is refused. It opens the keys
// without the store, e.g. to rotate them while a server runs.
func OpenFileKeysOf(dir, keyFile string) (*FileKeys, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("urlsign: %w", err)
	}
	if keyFile == "" {
		keyFile = filepath.Join(filepath.Dir(abs), DefaultKeyFileName)
	}
	return OpenFileKeys(keyFile, abs)
}

// OpenFile opens the signer of the file and embedded result stores: an
// HMAC driver with the domain FileDomain, its keyring in a file, re-read
// every DefaultReloadInterval (5 s) when it signs or verifies and at once
// when a URL names a key id it does not know.
func OpenFile(ctx context.Context, results *resultstore.Store, opts FileOptions) (*Signer, error) {
	if opts.Dir == "" {
		return nil, errors.New("urlsign: FileOptions.Dir is empty")
	}
	keys, err := OpenFileKeysOf(opts.Dir, opts.KeyFile)
	if err != nil {
		return nil, err
	}
	h, err := NewHMAC(ctx, keys, HMACOptions{Domain: FileDomain, Prefix: opts.Prefix, MaxURLLifetime: opts.MaxURLLifetime})
	if err != nil {
		return nil, err
	}
	return New(h, results), nil
}
