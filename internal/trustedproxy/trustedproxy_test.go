package trustedproxy

import (
	"flag"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		err  bool
	}{
		{"", "", false},
		{" , ", "", false},
		{"10.0.0.0/8,127.0.0.1/32", "10.0.0.0/8,127.0.0.1/32", false},
		{"10.1.2.3/8", "10.0.0.0/8", false},
		{"127.0.0.1, ::1", "127.0.0.1/32,::1/128", false},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", false},
		{"::ffff:10.0.0.1", "10.0.0.1/32", false},
		{"10.0.0.0/33", "", true},
		{"example.com", "", true},
		{"fe80::1%eth0", "", true},
		{"10.0.0.0/8,,bogus", "", true},
	} {
		var f Flag
		err := f.Set(c.in)
		if (err != nil) != c.err {
			t.Errorf("Parse(%q) error = %v, want error %v", c.in, err, c.err)
			continue
		}
		if err == nil && f.String() != c.want {
			t.Errorf("Parse(%q) = %q, want %q", c.in, f.String(), c.want)
		}
	}
}

func TestContains(t *testing.T) {
	ps, err := Parse("10.0.0.0/8,127.0.0.1/32,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3:5555":         true,
		"127.0.0.1:80":          true,
		"127.0.0.2:80":          false,
		"[::ffff:10.9.9.9]:443": true,
		"[2001:db8::1]:443":     true,
		"[2001:db9::1]:443":     false,
		"[fe80::1%eth0]:1":      false,
		"192.168.1.1:80":        false,
		"10.0.0.1":              true,
		"":                      false,
		"garbage":               false,
		"@":                     false,
	} {
		if got := Contains(ps, addr); got != want {
			t.Errorf("Contains(%q) = %v, want %v", addr, got, want)
		}
	}
	if Contains(nil, "127.0.0.1:1") {
		t.Error("an empty list contains nothing")
	}
	var _ flag.Value = (*Flag)(nil)
}
