package server

import (
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/arrhq/arr/auth"
)

// withAuth puts h behind a (auth.Middleware), except for the probes
// (/healthz, /readyz, exactly) and the signed result URLs under
// resultsPrefix: those are capabilities, readable by whoever holds one.
// A path under the prefix only once cleaned (/blobs/../v1/…) or only
// before (/blobs/..) is authenticated.
func withAuth(h http.Handler, a auth.Authenticator, resultsPrefix string, log *slog.Logger) http.Handler {
	authed := auth.Middleware(h, a, auth.Options{Logger: log})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/healthz" || p == "/readyz" ||
			resultsPrefix != "" && strings.HasPrefix(p, resultsPrefix) && strings.HasPrefix(path.Clean(p)+"/", resultsPrefix) {
			h.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
}
