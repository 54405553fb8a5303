// Package pgtest gives tests a fresh PostgreSQL schema to run arr's
// postgres drivers on.
//
// The server comes from the environment:
//
//   - ARR_TEST_POSTGRES_URL, a postgres:// URL (e.g.
//     postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable): used,
//     and a test fails if it cannot connect;
//   - otherwise, when CI is set, postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable,
//     and a test fails if it cannot connect;
//   - otherwise the test is skipped.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultCIURL is the server used when CI is set and ARR_TEST_POSTGRES_URL
// is not.
const DefaultCIURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// BaseURL returns the server's URL by the rules of the package
// documentation, skipping t when there is none.
func BaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("ARR_TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") == "" {
			t.Skip("no PostgreSQL: set ARR_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) to run this test")
		}
		base = DefaultCIURL
	}
	return base
}

// URL creates a schema with a random name on the test server and returns
// the server's URL with schema=<that name> added, for the postgres
// drivers. The schema is dropped (with everything in it) when t and its
// subtests end, after the cleanups registered later, which close the
// stores and queues opened on it. Every call makes a new schema, so tests
// that each call URL never see each other's data; processes given the
// same URL share one.
func URL(t testing.TB) string {
	t.Helper()
	base := BaseURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: bad URL %q: %v", base, err)
	}
	q := u.Query()
	q.Del("schema")
	u.RawQuery = q.Encode()
	plain := u.String()

	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "arrtest_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{schema}.Sanitize()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, plain)
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", u.Redacted(), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("pgtest: creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, plain)
		if err != nil {
			t.Errorf("pgtest: connecting to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "SET lock_timeout = '20s'"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("pgtest: dropping schema %s: %v", schema, err)
		}
	})
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
