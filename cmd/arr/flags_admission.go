package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/arrhq/arr/config"
	"github.com/arrhq/arr/server"
	"github.com/arrhq/arr/worker"
)

func init() { limitFlags = append(limitFlags, admissionFlags) }

// sizeFlag is a byte size flag: 1048576, 512KiB, 10GiB (config.ParseByteSize).
type sizeFlag int64

func (s *sizeFlag) String() string { return config.ByteSize(*s).String() }

func (s *sizeFlag) Set(v string) error {
	b, err := config.ParseByteSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(b)
	return nil
}

// admissionFlags are the flags of admission control (docs/operations.md,
// "Admission"): rate limits per principal, stored-bytes budgets, the
// header bound and the worker pool's route share.
func admissionFlags(fs *flag.FlagSet, cfg *server.Config, role server.Role) func(map[string]bool) error {
	a := &cfg.Admission
	var submitRate, readRate float64
	var submitBurst, readBurst int
	var maxStored, maxTenantStored sizeFlag
	headerBytes := sizeFlag(server.DefaultMaxHeaderBytes)
	if role != server.RoleWorker {
		fs.Float64Var(&submitRate, "rate-limit-submit", server.DefaultSubmitRate, "submits a second per principal (per client address, an IPv6 /64, when anonymous); over it: 429 with Retry-After; 0: no limit")
		fs.IntVar(&submitBurst, "rate-limit-submit-burst", server.DefaultSubmitBurst, "submits a principal may send at once, over its rate")
		fs.Float64Var(&readRate, "rate-limit-read", server.DefaultReadRate, "other api requests (status, long-polls, events, lists, cancels) a second per principal; 0: no limit")
		fs.IntVar(&readBurst, "rate-limit-read-burst", server.DefaultReadBurst, "other api requests a principal may send at once, over its rate")
		fs.Var(&maxStored, "max-stored-bytes", "budget of the bytes kept for operations not yet deleted (requests with stored headers, and results), e.g. 20GiB; over it submits get 507; counted per process; 0: none")
		fs.Var(&maxTenantStored, "max-tenant-stored-bytes", "the same budget per tenant, e.g. 1GiB; 0: none")
		fs.Var(&headerBytes, "max-header-bytes", "largest request line and headers, e.g. 64KiB; larger get 431")
	}
	if role != server.RoleAPI {
		fs.Float64Var(&a.RouteShare, "route-share", worker.DefaultRouteShare, "share of -workers one route may hold unless it sets its own concurrency; 1: no share")
	}
	return func(set map[string]bool) error {
		if role == server.RoleWorker {
			return checkShare(a.RouteShare)
		}
		if submitRate < 0 || readRate < 0 {
			return errors.New("-rate-limit-submit and -rate-limit-read take a rate a second, 0 or more")
		}
		if submitBurst < 1 || readBurst < 1 {
			return errors.New("-rate-limit-submit-burst and -rate-limit-read-burst take 1 or more")
		}
		if headerBytes < 4096 || headerBytes > 16<<20 {
			return fmt.Errorf("-max-header-bytes: %d is outside 4KiB to 16MiB", headerBytes)
		}
		if maxStored < 0 || maxTenantStored < 0 {
			return errors.New("-max-stored-bytes and -max-tenant-stored-bytes take a size, 0 or more")
		}
		a.RateLimits.Submit.Rate, a.RateLimits.Submit.Burst = submitRate, submitBurst
		a.RateLimits.Read.Rate, a.RateLimits.Read.Burst = readRate, readBurst
		a.MaxHeaderBytes = int(headerBytes)
		cfg.Core.MaxStoredBytes, cfg.Core.MaxTenantStoredBytes = int64(maxStored), int64(maxTenantStored)
		if role == server.RoleAPI {
			return nil
		}
		return checkShare(a.RouteShare)
	}
}

func checkShare(share float64) error {
	if share <= 0 {
		return errors.New("-route-share takes a share of the workers above 0 (1: no share)")
	}
	return nil
}
