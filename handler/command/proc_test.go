package command

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReapCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if killed, err := Reap(dir); err != nil || killed != 0 {
		t.Fatalf("Reap = %d, %v", killed, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("dir not created: %v", err)
	}
}
