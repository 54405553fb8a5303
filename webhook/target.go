package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength bounds the length of a callback URL (CheckURL).
const MaxURLLength = 2048

// ErrInvalidURL is what CheckURL's errors wrap.
var ErrInvalidURL = errors.New("invalid callback URL")

// CheckURL parses raw as a callback URL and returns it, or an error
// wrapping ErrInvalidURL that says what is wrong. A callback URL is absolute,
// http or https, at most MaxURLLength bytes, with a host that is a DNS name
// in its ASCII form or an IP literal (IPv6 in brackets, without a zone), an
// optional port from 1 to 65535, and no user information or fragment.
//
// CheckURL says nothing of where the host resolves: that is checked when a
// Sender dials it, on the address it dials.
func CheckURL(raw string) (*url.URL, error) {
	bad := func(format string, a ...any) (*url.URL, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidURL, fmt.Sprintf(format, a...))
	}
	if len(raw) > MaxURLLength {
		return bad("longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which the caller has
		}
		return bad("%v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" {
		return bad("not an absolute http or https URL")
	}
	if u.User != nil {
		return bad("it carries a user name or password")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("it has a fragment")
	}
	if u.Host == "" {
		return bad("it has no host")
	}
	if _, _, err := canonHost(u.Hostname()); err != nil {
		return bad("host %q: %v", u.Hostname(), err)
	}
	if p := u.Port(); p != "" {
		if _, err := canonPort(p); err != nil {
			return bad("%v", err)
		}
	}
	return u, nil
}

// AllowList is the list of callback targets an administrator allows. Its
// entries are
//
//	HOST[:PORT]      an exact host: a DNS name or an IP literal, IPv6 in
//	                 brackets ([::1]:8080)
//	*.DOMAIN[:PORT]  any subdomain of DOMAIN (not DOMAIN itself)
//	*[:PORT]         any host
//
// An entry without a port allows every port. The zero AllowList is empty:
// it names no target and exempts none.
//
// It serves two rules, deliberately different: Names (may a request name
// this target as its callback) accepts every kind of entry, and Exempt (may
// arr call this target although it is not a public address) accepts exact
// entries only, so that no wildcard can open the private network.
type AllowList struct {
	entries []allowEntry
}

type entryKind uint8

const (
	exactHost entryKind = iota
	subdomains
	anyHost
)

type allowEntry struct {
	kind entryKind
	host string // exact: the canonical host; subdomains: the domain
	port string // canonical port, "" for any
}

// ParseAllowList parses allow-list entries. Each argument is one entry or a
// comma-separated list of them (so both a flag value "a,b:8443" and a list
// from a configuration file work); spaces around entries and empty entries
// are ignored. The error names the first bad entry and what is wrong with it.
func ParseAllowList(lists ...string) (AllowList, error) {
	var l AllowList
	for _, list := range lists {
		for s := range strings.SplitSeq(list, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			e, err := parseEntry(s)
			if err != nil {
				return AllowList{}, fmt.Errorf("callback allow-list entry %q: %w", s, err)
			}
			l.entries = append(l.entries, e)
		}
	}
	return l, nil
}

func parseEntry(s string) (allowEntry, error) {
	if strings.Contains(s, "://") {
		return allowEntry{}, errors.New("give HOST[:PORT], not a URL")
	}
	if strings.ContainsAny(s, "/@?# \t") {
		return allowEntry{}, errors.New("HOST[:PORT] has no path, user, query or spaces")
	}
	var host, port string
	bracketed := strings.HasPrefix(s, "[")
	switch {
	case bracketed:
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return allowEntry{}, errors.New("no closing ] after the IPv6 address")
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return allowEntry{}, errors.New("only :PORT may follow ]")
			}
			port = port[1:]
			if port == "" {
				return allowEntry{}, errors.New("empty port")
			}
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return allowEntry{}, errors.New("brackets hold an IPv6 address (without a zone)")
		}
	case strings.Count(s, ":") > 1:
		return allowEntry{}, errors.New("an IPv6 address goes in brackets, as [2001:db8::1]:8443")
	default:
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if hasPort && port == "" {
			return allowEntry{}, errors.New("empty port")
		}
	}
	e := allowEntry{}
	if port != "" {
		p, err := canonPort(port)
		if err != nil {
			return allowEntry{}, err
		}
		e.port = p
	}
	switch {
	case host == "*" && !bracketed:
		e.kind = anyHost
	case strings.HasPrefix(host, "*.") && !bracketed && !strings.Contains(host[2:], "*"):
		domain, isIP, err := canonHost(host[2:])
		if err != nil {
			return allowEntry{}, err
		}
		if isIP {
			return allowEntry{}, errors.New("*. goes before a domain name, not an IP address")
		}
		e.kind, e.host = subdomains, domain
	case strings.Contains(host, "*"):
		return allowEntry{}, errors.New("a wildcard is either * or *.DOMAIN")
	default:
		h, _, err := canonHost(host)
		if err != nil {
			return allowEntry{}, err
		}
		e.kind, e.host = exactHost, h
	}
	return e, nil
}

// String renders the list in the form ParseAllowList reads, canonically
// (lower case, IP addresses in their shortest form, ports without leading
// zeros), entries separated by commas.
func (l AllowList) String() string {
	var b strings.Builder
	for i, e := range l.entries {
		if i > 0 {
			b.WriteByte(',')
		}
		switch e.kind {
		case anyHost:
			b.WriteString("*")
		case subdomains:
			b.WriteString("*." + e.host)
		default:
			if strings.Contains(e.host, ":") {
				b.WriteString("[" + e.host + "]")
			} else {
				b.WriteString(e.host)
			}
		}
		if e.port != "" {
			b.WriteString(":" + e.port)
		}
	}
	return b.String()
}

// Len is the number of entries.
func (l AllowList) Len() int { return len(l.entries) }

// Names reports whether a request may name u as its callback target: u is
// http or https, has a host and no user information, and some entry (of any
// kind) matches its host and its port (the scheme's default when u has
// none). Names does not check where the host resolves (see Exempt and
// Sender) nor the rest of the URL (see CheckURL).
func (l AllowList) Names(u *url.URL) bool {
	if u == nil || u.User != nil || u.Host == "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return false
	}
	host, isIP, err := canonHost(u.Hostname())
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(scheme)
	} else if port, err = canonPort(port); err != nil {
		return false
	}
	for _, e := range l.entries {
		if e.port != "" && e.port != port {
			continue
		}
		switch e.kind {
		case anyHost:
			return true
		case subdomains:
			if !isIP && strings.HasSuffix(host, "."+e.host) {
				return true
			}
		default:
			if host == e.host {
				return true
			}
		}
	}
	return false
}

// Exempt reports whether an exact entry names host (a DNS name or an IP
// address, IPv6 with or without brackets) and port (decimal; "" matches
// only entries without a port): such a target may be called although it
// resolves to a loopback, private or link-local address. Wildcard entries
// never exempt.
func (l AllowList) Exempt(host, port string) bool {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	h, _, err := canonHost(host)
	if err != nil {
		return false
	}
	if port != "" {
		if port, err = canonPort(port); err != nil {
			return false
		}
	}
	for _, e := range l.entries {
		if e.kind == exactHost && e.host == h && (e.port == "" || e.port == port) {
			return true
		}
	}
	return false
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// canonPort checks a decimal port from 1 to 65535 and returns it without
// leading zeros.
func canonPort(p string) (string, error) {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	n, _ := strconv.Atoi(p)
	if n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return strconv.Itoa(n), nil
}

// canonHost checks a host (without brackets or port) and returns it in
// canonical form: an IP address in its shortest form (an IPv4-mapped IPv6
// address as IPv4), or a DNS name in lower case without a trailing dot.
func canonHost(h string) (string, bool, error) {
	if h == "" {
		return "", false, errors.New("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", false, errors.New("an IPv6 zone is not allowed")
		}
		return a.Unmap().String(), true, nil
	}
	if strings.Contains(h, ":") {
		return "", false, errors.New("not an IP address nor a DNS name")
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if len(name) == 0 || len(name) > 253 {
		return "", false, errors.New("a DNS name has 1 to 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return "", false, errors.New("a DNS name's labels have 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", false, errors.New("a DNS label does not begin or end with -")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				if c >= 0x80 {
					return "", false, errors.New("give an internationalized name in its ASCII (xn--) form")
				}
				return "", false, fmt.Errorf("%q is not allowed in a DNS name", c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		// 127.1, 0x7f.1 and the like: not an IP address Go reads, and a
		// resolver might read it as one.
		return "", false, errors.New("not an IP address, and a DNS name does not end with a numeric label")
	}
	return name, false, nil
}

// IsPublic reports whether a is a public unicast address: one a callback
// may reach without an exemption. It is false for
//
//   - unspecified and "this network" (0.0.0.0/8, ::), loopback (127/8, ::1),
//     private (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10), link-local
//     (169.254/16, fe80::/10), shared/CGNAT (100.64/10), multicast
//     (224/4, ff00::/8), broadcast and reserved (240/4), documentation and
//     benchmarking ranges, and the IETF protocol blocks 192.0.0.0/24 and
//     2001::/23;
//   - the cloud metadata endpoints, which all fall in those ranges
//     (169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192), and
//     Azure's platform address 168.63.129.16, which does not;
//   - every IPv6 address outside the global unicast block 2000::/3;
//   - an IPv4 address wrapped in IPv6 (IPv4-mapped, IPv4-compatible,
//     IPv4-translated, NAT64 64:ff9b::/96, 6to4 2002::/16) whose IPv4
//     address is not public, and all of Teredo (2001::/32).
func IsPublic(a netip.Addr) bool {
	return addrClass(a) == ""
}

type classed struct {
	prefix netip.Prefix
	class  string
}

func prefixes(list ...string) []classed {
	out := make([]classed, 0, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		out = append(out, classed{netip.MustParsePrefix(list[i]), list[i+1]})
	}
	return out
}

var (
	refused4 = prefixes(
		"0.0.0.0/8", "unspecified",
		"10.0.0.0/8", "private",
		"100.64.0.0/10", "shared (CGNAT)",
		"127.0.0.0/8", "loopback",
		"168.63.129.16/32", "metadata",
		"169.254.0.0/16", "link-local",
		"172.16.0.0/12", "private",
		"192.0.0.0/24", "reserved",
		"192.0.2.0/24", "documentation",
		"192.88.99.0/24", "reserved",
		"192.168.0.0/16", "private",
		"198.18.0.0/15", "reserved",
		"198.51.100.0/24", "documentation",
		"203.0.113.0/24", "documentation",
		"224.0.0.0/4", "multicast",
		"255.255.255.255/32", "broadcast",
		"240.0.0.0/4", "reserved",
	)
	refused6 = prefixes(
		"fc00::/7", "private",
		"fec0::/10", "private",
		"fe80::/10", "link-local",
		"ff00::/8", "multicast",
		"2001::/23", "reserved", // Teredo, ORCHID and other IETF protocol assignments
		"2001:db8::/32", "documentation",
		"3fff::/20", "documentation",
	)
	global6   = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	siit      = netip.MustParsePrefix("::ffff:0:0:0/96")
	compat    = netip.MustParsePrefix("::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// addrClass is "" for a public address and else the class that refuses it.
func addrClass(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		for _, c := range refused4 {
			if c.prefix.Contains(a) {
				return c.class
			}
		}
		return ""
	}
	b := a.As16()
	switch {
	case a == netip.IPv6Unspecified():
		return "unspecified"
	case a == netip.IPv6Loopback():
		return "loopback"
	case compat.Contains(a):
		return "reserved" // IPv4-compatible: deprecated
	case nat64.Contains(a), siit.Contains(a):
		return addrClass(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		return addrClass(netip.AddrFrom4([4]byte(b[2:6])))
	}
	for _, c := range refused6 {
		if c.prefix.Contains(a) {
			return c.class
		}
	}
	if !global6.Contains(a) {
		return "reserved"
	}
	return ""
}
