package main

import (
	"flag"
	"fmt"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

func init() { limitFlags = append(limitFlags, connFlags) }

// connFlags are the flags of connections and streams (docs/operations.md,
// "Connections and streams"); they set cfg.Conns and cfg.API's stream
// fields directly. -1 turns a bound off.
func connFlags(fs *flag.FlagSet, cfg *server.Config, role server.Role) func(map[string]bool) error {
	c := &cfg.Conns
	fs.IntVar(&c.MaxConns, "max-conns", 0, fmt.Sprintf("open connections of -addr at most; beyond it the connection idle longest is closed, or the new one answered 503 (0: 3/4 of the file descriptor limit, here %d; -1: no cap)", server.DefaultMaxConns()))
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "longest time to read a request's headers")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "keep-alive connections idle this long are closed")
	fs.Int64Var(&c.MinBodyRate, "min-body-rate", server.DefaultMinBodyRate, "bytes/s a request body must average after -body-rate-grace, or it is cut off with 408 (-1: no minimum)")
	fs.DurationVar(&c.BodyRateGrace, "body-rate-grace", server.DefaultBodyRateGrace, "time a request body may take before -min-body-rate applies")
	fs.Int64Var(&c.MinWriteRate, "min-write-rate", server.DefaultMinWriteRate, "bytes/s a client must take a response at: each write of n bytes within -write-rate-grace + n/rate, or the connection is closed (-1: no minimum)")
	fs.DurationVar(&c.WriteRateGrace, "write-rate-grace", server.DefaultWriteRateGrace, "see -min-write-rate")
	if role != server.RoleWorker {
		a := &cfg.API
		fs.IntVar(&a.MaxStreams, "max-streams", api.DefaultMaxStreams, "SSE streams open at once at most; beyond it 503 + Retry-After (-1: no cap)")
		fs.IntVar(&a.MaxStreamsPerPrincipal, "max-streams-per-principal", api.DefaultMaxStreamsPerPrincipal, "SSE streams of one principal (of one client address when anonymous) at most (-1: no cap)")
		fs.IntVar(&a.MaxLongPolls, "max-long-polls", api.DefaultMaxLongPolls, "long-polls (?wait=, Prefer: wait=, OnPending=Synchronous) waiting at once at most; beyond it a status read gets 503 + Retry-After and a submit its 202 without waiting (-1: no cap)")
		fs.IntVar(&a.MaxLongPollsPerPrincipal, "max-long-polls-per-principal", api.DefaultMaxLongPollsPerPrincipal, "long-polls of one principal (of one client address when anonymous) at most (-1: no cap)")
		fs.DurationVar(&a.StreamLifetime, "stream-lifetime", api.DefaultStreamLifetime, "an SSE stream ends after this long and the client resumes it with Last-Event-ID (-1ns: no end)")
	}
	return func(map[string]bool) error { return nil }
}
