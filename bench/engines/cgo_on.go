//go:build cgo

package main

// With cgo, Pebble allocates its block cache and memtables with C malloc
// and links DataDog/zstd; arr ships pure Go, so run with CGO_ENABLED=0.
const cgoEnabled = true
