package postgres

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sslModeOf is the sslmode a connection URL uses: its sslmode parameter,
// else $PGSSLMODE (as libpq and pgx), else libpq's default, "prefer".
func sslModeOf(connString string) string {
	if u, err := url.Parse(connString); err == nil {
		if m := u.Query().Get("sslmode"); m != "" {
			return m
		}
	}
	if m := os.Getenv("PGSSLMODE"); m != "" {
		return m
	}
	return "prefer"
}

// isLocalHost reports whether a PostgreSQL host is this machine: a Unix
// socket directory, localhost, or a loopback IP address.
func isLocalHost(h string) bool {
	if strings.HasPrefix(h, "/") || strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// sslModeWarning returns the warning arr logs when a connection to one of
// hosts uses an sslmode weaker than verify-full (which alone both
// encrypts and checks that the certificate names the host), unless every
// host is local; else "".
func sslModeWarning(hosts []string, sslmode string) string {
	if sslmode == "verify-full" {
		return ""
	}
	var remote []string
	for _, h := range hosts {
		if !isLocalHost(h) && !slices.Contains(remote, h) { // pgx lists a host per fallback
			remote = append(remote, h)
		}
	}
	if len(remote) == 0 {
		return ""
	}
	risk := "is not encrypted"
	switch sslmode {
	case "prefer", "allow":
		risk = "may fall back to no encryption, and does not check the server's certificate"
	case "require":
		risk = "is encrypted but does not check the server's certificate (a man in the middle can read it)"
	case "verify-ca":
		risk = "does not check that the server's certificate names the host"
	}
	return fmt.Sprintf("postgres: the connection to %s with sslmode=%s %s: add sslmode=verify-full to the URL (with sslrootcert=FILE when the server's CA is not in the system's roots)",
		strings.Join(remote, ", "), sslmode, risk)
}

// warnSSLMode logs sslModeWarning for a pool's hosts, at open.
func warnSSLMode(connString string, pcfg *pgxpool.Config) {
	hosts := []string{pcfg.ConnConfig.Host}
	for _, f := range pcfg.ConnConfig.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	if msg := sslModeWarning(hosts, sslModeOf(connString)); msg != "" {
		slog.Default().Warn(msg)
	}
}
