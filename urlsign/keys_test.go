package urlsign

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"gocloud.dev/blob/memblob"
)

// testKeys checks the contract of Keys on an empty location; replace says
// whether keys can replace a keyring (BlobKeys needs a driver's IfMatch).
func testKeys(t *testing.T, keys Keys, replace bool) {
	ctx := context.Background()
	if _, _, err := keys.Load(ctx, ""); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Load of an empty location: %v, want ErrNoKeyring", err)
	}
	if _, _, err := RotateKeys(ctx, keys, time.Now(), time.Hour); err == nil {
		t.Error("RotateKeys of an empty location succeeded")
	}
	now := time.Now()
	kr1, kr2 := NewKeyring(now), NewKeyring(now)
	if err := keys.Store(ctx, kr1, ""); err != nil {
		t.Fatal(err)
	}
	if err := keys.Store(ctx, kr2, ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("second creation: %v, want ErrConflict", err)
	}
	got, v1, err := keys.Load(ctx, "")
	if err != nil || got.Active().ID != kr1.Active().ID || v1 == "" {
		t.Fatalf("Load = %v, %q, %v; want the first keyring", got, v1, err)
	}
	if _, _, err := keys.Load(ctx, v1); !errors.Is(err, ErrUnchanged) {
		t.Errorf("Load(ifChanged=current version): %v, want ErrUnchanged", err)
	}
	if lo, lv, err := LoadOrCreate(ctx, keys, now); err != nil || lo.Active().ID != kr1.Active().ID || lv != v1 {
		t.Errorf("LoadOrCreate of an existing keyring = %v, %q, %v; want it unchanged", lo, lv, err)
	}
	kr3 := kr1.Rotate(now, time.Hour)
	if !replace {
		if err := keys.Store(ctx, kr3, v1); err == nil || errors.Is(err, ErrConflict) {
			t.Errorf("replacement without a conditional write: %v, want a refusal", err)
		}
		return
	}
	if err := keys.Store(ctx, kr3, "not-the-version"); !errors.Is(err, ErrConflict) {
		t.Errorf("replacement of another version: %v, want ErrConflict", err)
	}
	if err := keys.Store(ctx, kr3, v1); err != nil {
		t.Fatal(err)
	}
	got, v3, err := keys.Load(ctx, v1)
	if err != nil || got.Active().ID != kr3.Active().ID || v3 == v1 {
		t.Fatalf("Load after a replacement = %v, %q, %v", got, v3, err)
	}
	if err := keys.Store(ctx, kr2, v1); !errors.Is(err, ErrConflict) {
		t.Errorf("replacement with a stale version: %v, want ErrConflict", err)
	}
	rot, rv, err := RotateKeys(ctx, keys, now.Add(time.Minute), time.Hour)
	if err != nil || rot.Active().ID == kr3.Active().ID || rot.Key(kr3.Active().ID) == nil || rv == v3 {
		t.Fatalf("RotateKeys = %v, %q, %v; want a new active key, the previous one kept", rot, rv, err)
	}
}

func TestMemKeys(t *testing.T) { testKeys(t, NewMemKeys(), true) }

func TestFileKeys(t *testing.T) {
	keys, err := OpenFileKeys(filepath.Join(t.TempDir(), "dir", "keys.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	testKeys(t, keys, true)
}

func TestBlobKeys(t *testing.T) {
	keys := NewBlobKeys(memblob.OpenBucket(nil), "ring/keys.json", BlobOptions{CreateSettle: time.Millisecond})
	defer keys.Close()
	testKeys(t, keys, false)
}

func TestFileKeysOutside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	if _, err := OpenFileKeys(filepath.Join(dir, "keys.json"), dir); err == nil {
		t.Error("a keyring inside the results directory was accepted")
	}
	if _, err := OpenFileKeys(filepath.Join(dir, "..", "keys.json"), dir); err != nil {
		t.Errorf("a keyring beside the results directory: %v", err)
	}
}

// RevokeKey removes a retired key, refuses the active one and an unknown
// id, and leaves the keyring unchanged when it refuses.
func TestRevokeKey(t *testing.T) {
	ctx := context.Background()
	keys := NewMemKeys()
	now := time.Now()
	kr, _, err := LoadOrCreate(ctx, keys, now)
	if err != nil {
		t.Fatal(err)
	}
	first := kr.Active().ID
	if _, _, err := RevokeKey(ctx, keys, first); err == nil {
		t.Fatal("revoked the active key")
	}
	if _, _, err := RevokeKey(ctx, keys, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("revoking an unknown id: %v, want ErrUnknownKey", err)
	}
	if kr, _, err = RotateKeys(ctx, keys, now, time.Hour); err != nil || kr.Key(first) == nil {
		t.Fatalf("rotate: %v", err)
	}
	second := kr.Active().ID
	if kr, _, err = RevokeKey(ctx, keys, first); err != nil {
		t.Fatal(err)
	}
	if kr.Key(first) != nil || kr.Active().ID != second || len(kr.Keys()) != 1 {
		t.Fatalf("after revoking %s: %+v", first, kr.Keys())
	}
}
