package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/arrhq/arr/config"
)

func schemaBomb() []byte { return numbers(1 << 19) }

// numbers is a JSON array of n ones: 2n bytes, n+1 values.
func numbers(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('1')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// atLimit is the largest array of wrong-typed items a schema route
// validates: MaxSchemaValues values in all.
func atLimit() []byte { return numbers(config.MaxSchemaValues - 1) }

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

// BenchmarkSchemaAtValueLimit: the costliest body a schema route
// validates, MaxSchemaValues wrong-typed items.
func BenchmarkSchemaAtValueLimit(b *testing.B) {
	r := &mustParse(b, itemsRoute, nil).Routes[0]
	body := atLimit()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(body); err == nil {
			b.Fatal("valid")
		}
	}
}

// BenchmarkSchemaValidAtValueLimit: MaxSchemaValues values, all valid.
func BenchmarkSchemaValidAtValueLimit(b *testing.B) {
	r := &mustParse(b, itemsRoute, nil).Routes[0]
	body := bytes.ReplaceAll(atLimit(), []byte("1"), []byte(`""`))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(body); err != nil {
			b.Fatal(err)
		}
	}
}

const itemsRoute = `
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
`

// TestSchemaBombRefusedByCount: a megabyte array of half a million items
// is refused by its count of values, in one small issue, before it is
// decoded; one value fewer than the bound is validated.
func TestSchemaBombRefusedByCount(t *testing.T) {
	r := &mustParse(t, itemsRoute, nil).Routes[0]
	var se *config.SchemaError
	err := r.Validate(schemaBomb())
	if !errors.As(err, &se) || len(se.Issues) != 1 || se.Truncated || !strings.Contains(se.Issues[0].Message, "more than 50,000 JSON values") {
		t.Fatalf("%v: %+v", err, se)
	}
	ok := bytes.ReplaceAll(atLimit(), []byte("1"), []byte(`"a,[{"`)) // commas and brackets in strings do not count
	if err := r.Validate(ok); err != nil {
		t.Fatalf("%d values: %v", config.MaxSchemaValues, err)
	}
	over := append([]byte(`["x",`), ok[1:]...)
	if err := r.Validate(over); !errors.As(err, &se) || !strings.Contains(se.Issues[0].Message, "JSON values") {
		t.Fatalf("%d values: %v", config.MaxSchemaValues+1, err)
	}
}

// TestSchemaBombCapped: an array of fifty thousand wrong-typed items
// is reported by its first MaxIssues issues and Truncated, and the
// problem members it makes stay small.
func TestSchemaBombCapped(t *testing.T) {
	f := mustParse(t, `
routes:
  - path: /v1/items
    handler: echo
    schema: {"type": "array", "items": {"type": "string"}}
`, nil)
	err := f.Routes[0].Validate(atLimit())
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
