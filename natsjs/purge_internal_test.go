package natsjs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testConn connects to the NATS server of ARR_TEST_NATS_URL (under CI,
// 127.0.0.1:4222; otherwise the test is skipped without it) until the test
// ends, and returns a fresh prefix for its streams.
func testConn(t *testing.T) (*nats.Conn, string) {
	t.Helper()
	base := os.Getenv("ARR_TEST_NATS_URL")
	if base == "" {
		if os.Getenv("CI") == "" {
			t.Skip("set ARR_TEST_NATS_URL (e.g. nats://127.0.0.1:4222) to run against a NATS server")
		}
		base = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return nc, "t" + hex.EncodeToString(b)
}

// TestPurgeThrough checks the primitive the callback index's removals
// rest on (write, DeleteExpired, cleanDue): purging a key through a
// revision keeps a put made after that revision, and purging through the
// last one removes the key without leaving a marker.
func TestPurgeThrough(t *testing.T) {
	nc, prefix := testConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenStore(ctx, nc, Config{Prefix: prefix}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = s.Close()
		if err := s.js.DeleteStream(context.Background(), "KV_"+prefix+"_ops"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}()
	key := dueKey("op-1")
	subjects := func() int {
		t.Helper()
		info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(s.subjPre+kDue+">"))
		if err != nil {
			t.Fatal(err)
		}
		return len(info.State.Subjects)
	}
	first, err := s.kv.Put(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.kv.Put(ctx, key, nil) // a write's put after the revision read
	if err != nil {
		t.Fatal(err)
	}
	if err := s.purgeThrough(ctx, key, first); err != nil {
		t.Fatal(err)
	}
	if e, err := s.kv.Get(ctx, key); err != nil || e.Revision() != second {
		t.Fatalf("after a purge through an older revision: %v, %v; want the later put (revision %d) kept", e, err, second)
	}
	if err := s.purgeThrough(ctx, key, second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after a purge through the last revision: %v, want the key gone", err)
	}
	if n := subjects(); n != 0 {
		t.Fatalf("after the purge the stream holds %d c. subjects, want none (no marker)", n)
	}
}
