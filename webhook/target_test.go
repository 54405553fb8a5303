package webhook

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestParseAllowList(t *testing.T) {
	l, err := ParseAllowList(" Example.COM., *.Example.org:08443,[2001:DB8::1]:8080 ,,", "127.0.0.1", "[::ffff:10.0.0.1]:443", "*:9000")
	if err != nil {
		t.Fatal(err)
	}
	const want = "example.com,*.example.org:8443,[2001:db8::1]:8080,127.0.0.1,10.0.0.1:443,*:9000"
	if l.String() != want || l.Len() != 6 {
		t.Fatalf("String = %q (%d entries), want %q", l, l.Len(), want)
	}
	again, err := ParseAllowList(l.String())
	if err != nil || again.String() != want {
		t.Fatalf("String does not read back: %q, %v", again, err)
	}
	if l, err := ParseAllowList("", " , "); err != nil || l.Len() != 0 {
		t.Fatalf("empty lists: %d entries, %v", l.Len(), err)
	}
}

func TestParseAllowListErrors(t *testing.T) {
	for entry, msg := range map[string]string{
		"https://a.example":                  "not a URL",
		"a.example/x":                        "no path",
		"user@a.example":                     "no path, user",
		"[::1":                               "no closing ]",
		"[::1]x":                             "only :PORT",
		"[::1]:":                             "empty port",
		"[10.0.0.1]":                         "brackets hold an IPv6",
		"[fe80::1%eth0]":                     "brackets hold an IPv6",
		"::1":                                "goes in brackets",
		"2001:db8::1:443":                    "goes in brackets",
		"a.example:":                         "empty port",
		"a.example:0":                        "from 1 to 65535",
		"a.example:65536":                    "from 1 to 65535",
		"a.example:-1":                       "from 1 to 65535",
		"a.example:http":                     "from 1 to 65535",
		"*.":                                 "empty host",
		"*.10.0.0.1":                         "not an IP address",
		"a*.example":                         "either * or *.DOMAIN",
		"*.*.example":                        "either * or *.DOMAIN",
		"a..example":                         "1 to 63",
		"-a.example":                         "begin or end with -",
		"a!.example":                         "not allowed",
		"bücher.example":                     "xn--",
		"127.1":                              "numeric label",
		"0x7f.1":                             "numeric label",
		strings.Repeat("a", 64) + ".example": "1 to 63",
	} {
		_, err := ParseAllowList("ok.example," + entry)
		if err == nil {
			t.Errorf("ParseAllowList(%q) = nil error", entry)
			continue
		}
		if !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), entry) {
			t.Errorf("ParseAllowList(%q) = %q, want it to name the entry and say %q", entry, err, msg)
		}
	}
}

func TestNames(t *testing.T) {
	l, err := ParseAllowList("hooks.example.com,*.corp.example:8443,10.1.2.3:8080,[2001:db8::5],*:9999")
	if err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]bool{
		"https://hooks.example.com/x":            true,
		"http://HOOKS.example.com.:1234/x":       true,
		"https://other.example.com/":             false,
		"https://sub.hooks.example.com/":         false,
		"https://a.corp.example:8443/":           true,
		"https://a.b.corp.example:08443/":        true,
		"https://corp.example:8443/":             false, // subdomains only
		"https://a.corp.example/":                false, // port 443
		"https://xcorp.example:8443/":            false,
		"http://10.1.2.3:8080/":                  true,
		"http://10.1.2.3/":                       false,
		"http://[::ffff:10.1.2.3]:8080/":         true,
		"http://[2001:db8::5]:1/":                true,
		"http://[2001:db8:0::5]/":                true,
		"http://anything.example:9999/":          true,
		"http://10.9.9.9:9999/":                  true,
		"ftp://hooks.example.com/":               false,
		"https://user:pw@hooks.example.com/":     false,
		"https://user@hooks.example.com/":        false,
		"hooks.example.com":                      false,
		"https://hooks.example.com:99999/":       false,
		"https://hooks.example.com%2fevil.test/": false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			if want {
				t.Errorf("%q: %v", raw, err)
			}
			continue
		}
		if got := l.Names(u); got != want {
			t.Errorf("Names(%q) = %v, want %v", raw, got, want)
		}
	}
	if (AllowList{}).Names(&url.URL{Scheme: "https", Host: "a.example"}) || l.Names(nil) {
		t.Error("the empty list names a target, or nil is named")
	}
}

func TestExempt(t *testing.T) {
	l, err := ParseAllowList("127.0.0.1:8080,internal.example,*.corp.example,[::1]:9000,*")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, port string
		want       bool
	}{
		{"127.0.0.1", "8080", true},
		{"127.0.0.1", "08080", true},
		{"127.0.0.1", "8081", false},
		{"127.0.0.1", "", false},
		{"::ffff:127.0.0.1", "8080", true},
		{"internal.example", "1", true},
		{"INTERNAL.example.", "", true},
		{"a.internal.example", "1", false},
		{"a.corp.example", "443", false}, // wildcards never exempt
		{"anything.example", "443", false},
		{"::1", "9000", true},
		{"[::1]", "9000", true},
		{"::1", "9001", false},
		{"", "80", false},
		{"127.0.0.1", "x", false},
	} {
		if got := l.Exempt(c.host, c.port); got != c.want {
			t.Errorf("Exempt(%q, %q) = %v, want %v", c.host, c.port, got, c.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, raw := range []string{
		"https://hooks.example.com/arr?x=1",
		"http://127.0.0.1:8080/cb",
		"https://[2001:db8::1]:8443/",
		"HTTPS://Hooks.Example.com",
	} {
		if _, err := CheckURL(raw); err != nil {
			t.Errorf("CheckURL(%q) = %v", raw, err)
		}
	}
	for raw, msg := range map[string]string{
		"":                                 "absolute",
		"/relative":                        "absolute",
		"hooks.example.com/x":              "absolute",
		"ftp://hooks.example.com/":         "absolute",
		"mailto:a@b.example":               "absolute",
		"https:hooks.example.com":          "absolute",
		"https://u:p@hooks.example.com/":   "user name",
		"https://hooks.example.com/#frag":  "fragment",
		"https://hooks.example.com/#":      "fragment",
		"https:///path":                    "no host",
		"https://hooks.example.com:0/":     "from 1 to 65535",
		"https://hooks.example.com:70000/": "from 1 to 65535",
		"https://[fe80::1%25eth0]/":        "zone",
		"https://127.1/":                   "numeric label",
		"https://bad_host!.example/":       "host",
		"https://hooks.example.com/\x00":   "control",
		"https://x.example/" + strings.Repeat("a", MaxURLLength): "longer than",
	} {
		_, err := CheckURL(raw)
		if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), msg) {
			t.Errorf("CheckURL(%q) = %v, want ErrInvalidURL saying %q", raw, err, msg)
		}
	}
}

func TestIsPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"93.184.216.34":                        true,
		"8.8.8.8":                              true,
		"2606:4700:4700::1111":                 true,
		"::ffff:93.184.216.34":                 true,
		"64:ff9b::5db8:d822":                   true, // NAT64 of 93.184.216.34
		"2002:5db8:d822::1":                    true, // 6to4 of 93.184.216.34
		"0.0.0.0":                              false,
		"0.1.2.3":                              false,
		"10.0.0.1":                             false,
		"100.64.0.1":                           false,
		"100.100.100.200":                      false, // Alibaba metadata
		"127.0.0.1":                            false,
		"127.255.255.254":                      false,
		"168.63.129.16":                        false, // Azure platform
		"169.254.169.254":                      false, // metadata
		"172.16.0.1":                           false,
		"172.31.255.255":                       false,
		"172.32.0.1":                           true,
		"192.0.0.192":                          false, // Oracle metadata
		"192.0.2.1":                            false,
		"192.168.1.1":                          false,
		"198.18.0.1":                           false,
		"224.0.0.1":                            false,
		"239.255.255.250":                      false,
		"240.0.0.1":                            false,
		"255.255.255.255":                      false,
		"::":                                   false,
		"::1":                                  false,
		"::127.0.0.1":                          false,
		"::ffff:127.0.0.1":                     false,
		"::ffff:169.254.169.254":               false,
		"::ffff:0:a00:1":                       false, // IPv4-translated 10.0.0.1
		"64:ff9b::a00:1":                       false, // NAT64 of 10.0.0.1
		"64:ff9b::7f00:1":                      false, // NAT64 of 127.0.0.1
		"64:ff9b:1::1":                         false,
		"2002:a00:1::1":                        false, // 6to4 of 10.0.0.1
		"2002:7f00:1::1":                       false, // 6to4 of 127.0.0.1
		"2001:0:4136:e378:8000:63bf:3fff:fdd2": false, // Teredo
		"2001:db8::1":                          false,
		"fc00::1":                              false,
		"fd00:ec2::254":                        false, // AWS metadata over IPv6
		"fe80::1":                              false,
		"fe80::1%eth0":                         false,
		"fec0::1":                              false,
		"ff02::1":                              false,
		"100::1":                               false,
		"5f00::1":                              false,
	} {
		a := netip.MustParseAddr(s)
		if got := IsPublic(a); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v (class %q)", s, got, want, addrClass(a))
		}
	}
	if IsPublic(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
}
