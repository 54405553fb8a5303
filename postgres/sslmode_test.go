package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestSSLModeWarning(t *testing.T) {
	for _, c := range []struct {
		hosts []string
		mode  string
		warn  string // a part of the warning; "" for none
	}{
		{[]string{"127.0.0.1"}, "disable", ""},
		{[]string{"localhost"}, "prefer", ""},
		{[]string{"::1"}, "prefer", ""},
		{[]string{"/var/run/postgresql"}, "disable", ""},
		{[]string{"db.example.com"}, "verify-full", ""},
		{[]string{"db.example.com"}, "prefer", "may fall back to no encryption"},
		{[]string{"10.0.0.5"}, "disable", "is not encrypted"},
		{[]string{"db.example.com"}, "require", "does not check the server's certificate"},
		{[]string{"db.example.com"}, "verify-ca", "names the host"},
		{[]string{"127.0.0.1", "db2.example.com", "db2.example.com"}, "prefer", "connection to db2.example.com with sslmode=prefer"},
	} {
		got := sslModeWarning(c.hosts, c.mode)
		if c.warn == "" && got != "" || c.warn != "" && (!strings.Contains(got, c.warn) || !strings.Contains(got, "sslmode=verify-full")) {
			t.Errorf("sslModeWarning(%q, %s) = %q, want %q", c.hosts, c.mode, got, c.warn)
		}
	}
}

func TestSSLModeOf(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	if m := sslModeOf("postgres://h/db"); m != "prefer" {
		t.Errorf("no sslmode: %s, want prefer (libpq's default)", m)
	}
	if m := sslModeOf("postgres://h/db?sslmode=require"); m != "require" {
		t.Errorf("sslmode=require: %s", m)
	}
	t.Setenv("PGSSLMODE", "verify-full")
	if m := sslModeOf("postgres://h/db"); m != "verify-full" {
		t.Errorf("PGSSLMODE=verify-full: %s", m)
	}
	// The hosts come from pgx's parse, fallbacks included.
	pcfg, err := pgxpool.ParseConfig("postgres://u@db.example.com:5432,127.0.0.1:5433/x?sslmode=prefer")
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{pcfg.ConnConfig.Host}
	for _, f := range pcfg.ConnConfig.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	if w := sslModeWarning(hosts, "prefer"); !strings.Contains(w, "db.example.com") || strings.Contains(w, "127.0.0.1") {
		t.Errorf("hosts %q: %q", hosts, w)
	}
}
