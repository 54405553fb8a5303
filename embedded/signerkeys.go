package embedded

import (
	"fmt"
	"net/url"

	"github.com/arrhq/arr/internal/urlmux"
	"github.com/arrhq/arr/urlsign"
)

// SignerKeys opens the keyring of the signer of the results an embedded:
// URL names, where the engine's signer keeps it (the URL's keyFile, else
// urlsign.DefaultKeyFileName beside the DB's directory), without opening
// the DB, which a running arr holds: `arr keys` rotates the keys of a
// running server this way, and the server picks the change up at its
// next keyring reload.
func SignerKeys(u *url.URL) (*urlsign.FileKeys, error) {
	dir := urlmux.Path(u)
	if dir == "" {
		return nil, fmt.Errorf("embedded: URL %q names no directory (want embedded:./dir or embedded:///abs/dir)", u.Redacted())
	}
	return urlsign.OpenFileKeysOf(dir, u.Query().Get("keyFile"))
}
