package trustedproxy

import "testing"

func TestParseAndContains(t *testing.T) {
	ps, err := Parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("got %d prefixes, want 3", len(ps))
	}
	for addr, want := range map[string]bool{
		"10.1.2.3:4000":          true,
		"[::ffff:10.9.9.9]:1":    true,
		"192.168.1.7:80":         true,
		"192.168.1.8:80":         false,
		"[fd12::1]:443":          true,
		"[fe80::1%eth0]:443":     false,
		"127.0.0.1:1":            false,
		"10.0.0.1":               true,
		"@":                      false,
		"":                       false,
		"not-an-ip.example:8080": false,
	} {
		if got := Contains(ps, addr); got != want {
			t.Errorf("Contains(%q) = %v, want %v", addr, got, want)
		}
	}
	if Contains(nil, "10.0.0.1:1") {
		t.Error("no prefixes contain an address")
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0", "::1/200"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
