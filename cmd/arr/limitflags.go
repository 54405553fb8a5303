package main

import (
	"flag"

	"github.com/arrhq/arr/server"
)

// limitFlags are the flag groups of arr serve's limits (docs/operations.md,
// "Limits"), each registered by an init function of its own file. A group
// adds its flags to fs and returns the function that, once the flags (and
// the config file) are read, applies them to cfg.
var limitFlags []func(fs *flag.FlagSet, cfg *server.Config, role server.Role) (apply func(set map[string]bool) error)
