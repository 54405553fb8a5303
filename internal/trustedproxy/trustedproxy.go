// Package trustedproxy says whether a request's direct peer is one of the
// proxies an operator trusts (as Caddy's trusted_proxies): only then are
// headers such as X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto and
// Forwarded believed.
package trustedproxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Parse reads a comma-separated list of CIDR prefixes (10.0.0.0/8,
// fd00::/8) or single IP addresses (a /32 or /128). Spaces around entries
// and empty entries are ignored; an empty list is no prefix. Prefixes are
// returned masked (10.1.2.3/8 becomes 10.0.0.0/8).
func Parse(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an IP address or CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Contains reports whether the IP of remoteAddr (host:port as in
// http.Request.RemoteAddr, or a bare IP) is in one of prefixes. An
// IPv4-mapped IPv6 address counts as its IPv4 address. A remoteAddr that
// is not an IP (a Unix socket's, say) is in none.
func Contains(prefixes []netip.Prefix, remoteAddr string) bool {
	if len(prefixes) == 0 {
		return false
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
