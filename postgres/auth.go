package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// PasswordFunc returns the password of a new connection: an access token
// fetched (and cached) by an identity library, say. It is called for every
// connection the engine opens, so it must be cheap when its token is
// fresh.
type PasswordFunc func(ctx context.Context) (string, error)

// AuthOpener makes the PasswordFunc of an engine opened with auth=<name>.
// It is called once per pool.
type AuthOpener func(ctx context.Context) (PasswordFunc, error)

var auths struct {
	mu sync.Mutex
	m  map[string]AuthOpener
}

// RegisterAuth makes the URL parameter auth=name give every connection of
// the engine (the pool's and the listening one) the password a
// PasswordFunc from open returns. Packages call it from init (package
// postgres/entra registers "entra": Microsoft Entra tokens for Azure
// Database for PostgreSQL); registering a name twice panics. This package
// registers none: a program links the ones it offers.
func RegisterAuth(name string, open AuthOpener) {
	auths.mu.Lock()
	defer auths.mu.Unlock()
	if auths.m == nil {
		auths.m = map[string]AuthOpener{}
	}
	if _, dup := auths.m[name]; dup {
		panic(fmt.Sprintf("postgres: auth %q registered twice", name))
	}
	auths.m[name] = open
}

// openAuth returns the PasswordFunc of auth=name.
func openAuth(ctx context.Context, name string) (PasswordFunc, error) {
	auths.mu.Lock()
	open := auths.m[name]
	names := make([]string, 0, len(auths.m))
	for n := range auths.m {
		names = append(names, n)
	}
	auths.mu.Unlock()
	if open == nil {
		sort.Strings(names)
		linked := strings.Join(names, ", ")
		if linked == "" {
			linked = "none"
		}
		return nil, fmt.Errorf("postgres: URL parameter auth=%q: no such authentication in this program (it links: %s)", name, linked)
	}
	pf, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: auth=%s: %w", name, err)
	}
	return pf, nil
}
