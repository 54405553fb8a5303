package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/config"
	"github.com/arrhq/arr/server"
)

func init() { limitFlags = append(limitFlags, storageFlags) }

// storageFlags are the flags of storage faults (docs/operations.md,
// "Storage faults"): the free-space watermark, the store write deadline,
// and how long opening and closing the stores may take.
func storageFlags(fs *flag.FlagSet, cfg *server.Config, _ server.Role) func(map[string]bool) error {
	minFree := fs.String("min-free-disk", config.ByteSize(server.DefaultMinFreeBytes).String(),
		"free-space watermark of each volume arr writes to (data dir, embedded store, file: results): under it submits and retries answer 507 and /readyz 503 (0: no watermark)")
	percent := fs.Float64("min-free-disk-percent", 0, "raise -min-free-disk to this percentage of the volume's size, when that is more")
	st := &cfg.Storage
	fs.DurationVar(&st.CheckInterval, "disk-check-interval", server.DefaultDiskCheckInterval, "how often the free space is read")
	fs.DurationVar(&st.WriteDeadline, "store-write-deadline", arr.DefaultWriteDeadline,
		"longest wait on the store write of a submit, cancel or retry; a write that fails or outlives it answers 503 and fails readiness")
	fs.DurationVar(&st.CloseTimeout, "store-close-timeout", server.DefaultCloseTimeout,
		"on shutdown, how long closing the stores may take after the handlers are done; arr exits within -shutdown-grace plus this")
	fs.DurationVar(&st.OpenWait, "store-open-wait", server.DefaultOpenWait,
		"how long the start waits for the stores to open before it serves /healthz and /readyz (503) while they go on opening")
	return func(map[string]bool) error {
		n, err := config.ParseByteSize(*minFree)
		if err != nil {
			return fmt.Errorf("-min-free-disk: %w", err)
		}
		st.MinFreeBytes = int64(n)
		if n == 0 {
			st.MinFreeBytes = -1 // no watermark
		}
		if *percent < 0 || *percent >= 100 {
			return errors.New("-min-free-disk-percent: want 0 up to (not including) 100")
		}
		st.MinFreePercent = *percent
		for name, d := range map[string]time.Duration{"disk-check-interval": st.CheckInterval,
			"store-write-deadline": st.WriteDeadline, "store-close-timeout": st.CloseTimeout, "store-open-wait": st.OpenWait} {
			if d <= 0 {
				return fmt.Errorf("-%s: want a positive duration, got %s", name, d)
			}
		}
		return nil
	}
}
