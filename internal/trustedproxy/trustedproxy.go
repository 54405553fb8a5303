// Package trustedproxy parses and matches the trusted-proxy setting: the
// CIDRs of the peers whose identity and X-Forwarded-* / Forwarded headers
// arr believes. A request from any other peer has those headers ignored.
package trustedproxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Parse reads a comma-separated list of CIDRs or bare IP addresses
// ("10.0.0.0/8, 127.0.0.1, ::1"); a bare address is its own /32 or /128.
// Blank entries are skipped; "" is an empty list. Prefixes are masked
// (10.1.2.3/8 becomes 10.0.0.0/8) and IPv4-mapped IPv6 addresses are
// unmapped, so Contains matches them against IPv4 peers.
func Parse(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := parseOne(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseOne(f string) (netip.Prefix, error) {
	if strings.Contains(f, "/") {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("trusted proxies: %q is not a CIDR (e.g. 10.0.0.0/8)", f)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(f)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("trusted proxies: %q is not an IP address or CIDR", f)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Contains reports whether remoteAddr (an http.Request's RemoteAddr,
// "ip:port", or a bare IP) is in one of prefixes. An address it cannot
// parse is in none.
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
	a = a.WithZone("").Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Flag is a flag.Value holding a parsed list of trusted proxies, e.g.
// fs.Var(&f, "trusted-proxies", "…").
type Flag []netip.Prefix

// String lists the prefixes, comma-separated.
func (f *Flag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(*f))
	for i, p := range *f {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Set parses v with Parse and replaces the list.
func (f *Flag) Set(v string) error {
	p, err := Parse(v)
	if err != nil {
		return err
	}
	*f = p
	return nil
}
