package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/arrhq/arr/config"
)

func schemaBomb() []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for b.Len() < 1<<20 {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('1')
	}
	b.WriteByte(']')
	return b.Bytes()
}

func BenchmarkSchemaBomb(b *testing.B) {
	f := mustParse(b, `
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
`, nil)
	r := &f.Routes[0]
	body := schemaBomb()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(body); err == nil {
			b.Fatal("valid")
		}
	}
}

func BenchmarkSchemaValidLarge(b *testing.B) {
	f := mustParse(b, `
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
`, nil)
	r := &f.Routes[0]
	body := bytes.ReplaceAll(schemaBomb(), []byte("1"), []byte(`""`))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSchemaBombCapped: a megabyte array of half a million wrong-typed
// items is reported by its first MaxIssues issues and Truncated, and the
// problem members it makes stay small.
func TestSchemaBombCapped(t *testing.T) {
	f := mustParse(t, `
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
`, nil)
	err := f.Routes[0].Validate(schemaBomb())
	var se *config.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("%T %v", err, err)
	}
	if len(se.Issues) != config.MaxIssues || !se.Truncated {
		t.Fatalf("%d issues, truncated %v; want %d and true", len(se.Issues), se.Truncated, config.MaxIssues)
	}
	if se.Issues[0].Pointer != "/0" || se.Issues[0].Message != "must be a string, not a number" {
		t.Errorf("first issue %+v", se.Issues[0])
	}
	ext := se.ProblemExtensions()
	if ext["truncated"] != true {
		t.Errorf("extensions %v: no truncated", ext)
	}
	b, _ := json.Marshal(ext)
	if len(b) > 4<<10 || len(se.Error()) > 4<<10 {
		t.Errorf("members %d bytes, Error() %d bytes", len(b), len(se.Error()))
	}
	if !strings.HasSuffix(se.Error(), "; …") {
		t.Errorf("Error() does not say it was cut: %q", se.Error())
	}
	// Few issues: all of them, not truncated.
	err = f.Routes[0].Validate([]byte(`["a", 1, "b", 2]`))
	if !errors.As(err, &se) || len(se.Issues) != 2 || se.Truncated {
		t.Fatalf("%v: %+v", err, se)
	}
	if _, ok := se.ProblemExtensions()["truncated"]; ok {
		t.Error("truncated member on a complete list")
	}
}
