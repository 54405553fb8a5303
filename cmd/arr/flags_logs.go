package main

import (
	"flag"

	"github.com/arrhq/arr/api"
	"github.com/arrhq/arr/server"
)

func init() { limitFlags = append(limitFlags, logFlags) }

// logFlags registers -log-format, -access-log, -log-sample and
// -max-list-bytes (docs/operations.md,
// "Logs"). -log-format is read by serve when it builds its logger.
func logFlags(fs *flag.FlagSet, cfg *server.Config, role server.Role) func(set map[string]bool) error {
	fs.StringVar(&cfg.Logs.Format, "log-format", server.DefaultLogFormat, "log line format: text (logfmt) or json")
	accessLog := fs.Bool("access-log", true, "log one line per HTTP request (method, path, status, bytes, duration, principal, ip, request id)")
	fs.DurationVar(&cfg.Logs.SampleWindow, "log-sample", server.DefaultLogSampleWindow, "an error line repeated within this window is logged once, the next one with a suppressed count (negative: log every line)")
	fs.IntVar(&cfg.API.MaxListBytes, "max-list-bytes", api.DefaultMaxListBytes, "largest page of GET /v1/operations, in bytes: a page ends, with a next link, before the item that would pass it")
	return func(map[string]bool) error {
		cfg.Logs.NoAccessLog = !*accessLog
		return nil
	}
}
