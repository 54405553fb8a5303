// Package urlmux maps URL schemes to openers, the way gocloud.dev's
// portable packages open drivers from URLs.
package urlmux

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Opener opens a T from a parsed URL.
type Opener[T any] func(ctx context.Context, u *url.URL) (T, error)

// Mux holds the openers of one port, by scheme.
type Mux[T any] struct {
	port    string
	mu      sync.RWMutex
	openers map[string]Opener[T]
}

// New returns an empty Mux for the port named port (used in errors).
func New[T any](port string) *Mux[T] {
	return &Mux[T]{port: port, openers: map[string]Opener[T]{}}
}

// Register makes scheme open through o. Registering a scheme twice panics.
func (m *Mux[T]) Register(scheme string, o Opener[T]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.openers[scheme]; dup {
		panic(fmt.Sprintf("%s: scheme %q registered twice", m.port, scheme))
	}
	m.openers[scheme] = o
}

// Open parses urlstr and opens it with its scheme's opener.
func (m *Mux[T]) Open(ctx context.Context, urlstr string) (T, error) {
	var zero T
	u, err := url.Parse(urlstr)
	if err != nil {
		return zero, fmt.Errorf("%s: bad URL %q: %w", m.port, urlstr, err)
	}
	m.mu.RLock()
	o, ok := m.openers[u.Scheme]
	m.mu.RUnlock()
	if !ok {
		return zero, fmt.Errorf("%s: no driver for scheme %q in %q (known: %s)", m.port, u.Scheme, urlstr, strings.Join(m.Schemes(), ", "))
	}
	return o(ctx, u)
}

// Schemes lists the registered schemes, sorted.
func (m *Mux[T]) Schemes() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := make([]string, 0, len(m.openers))
	for k := range m.openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Path returns the file-system path a URL names: "embedded:./data" (opaque),
// "embedded:///abs/data" and "embedded://./data" all work.
func Path(u *url.URL) string {
	switch {
	case u.Opaque != "":
		return u.Opaque
	case u.Host != "" && u.Host != "localhost":
		return u.Host + u.Path
	default:
		return u.Path
	}
}
