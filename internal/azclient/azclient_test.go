package azclient

import (
	"net/url"
	"strings"
	"testing"
)

func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"devstoreaccount1.blob.localhost:10000": "127.0.0.1:10000",
		"LOCALHOST:80":                          "127.0.0.1:80",
		"a.localhost.:443":                      "127.0.0.1:443",
		"example.com:443":                       "example.com:443",
		"localhost.example.com:443":             "localhost.example.com:443",
		"notlocalhost:1":                        "notlocalhost:1",
		"no-port":                               "no-port",
	} {
		if got := Loopback(in); got != want {
			t.Errorf("Loopback(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct{ query, want, err string }{
		{"account=myacct", "https://myacct.blob.core.windows.net", ""},
		{"endpoint=https://devstoreaccount1.blob.localhost:10000/", "https://devstoreaccount1.blob.localhost:10000", ""},
		{"account=a&endpoint=https://x", "", "not both"},
		{"", "", "names no account"},
		{"account=My_Acct", "", "not a storage account name"},
		{"endpoint=ftp://x", "", "not an absolute"},
		{"endpoint=/relative", "", "not an absolute"},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := Endpoint(q, "blob")
		if tc.err != "" {
			if err == nil || !contains(err.Error(), tc.err) {
				t.Errorf("Endpoint(%q) = %q, %v; want an error with %q", tc.query, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", tc.query, got, err, tc.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
