package natsjs

import (
	"context"
	"net/url"
	"time"

	"github.com/arrhq/arr/engine"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

func init() {
	open := func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		if _, err := ParseURL(u); err != nil {
			return nil, err
		}
		return &engineDriver{u: u}, nil
	}
	engine.Register("nats", open)
	engine.Register("tls", open) // nats over TLS, as the NATS clients spell it
}

// engineDriver is the NATS JetStream engine of a URL: an operations store
// (a KV bucket) and a queue (a work-queue stream) over the process's shared
// connection to the URL's servers. JetStream cannot write the two in one
// step, so it has no engine.Atomic: the core writes the operation first,
// and its janitor's sweep repairs a message a crash lost.
type engineDriver struct{ u *url.URL }

func (e *engineDriver) Caps() engine.Caps { return engine.Caps{} }

func (e *engineDriver) OpenStore(ctx context.Context) (opdriver.Store, error) {
	return OpenStoreURL(ctx, e.u)
}

func (e *engineDriver) OpenQueue(ctx context.Context) (qdriver.Queue, error) {
	return OpenQueueURL(ctx, e.u)
}

func (e *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	return nil, engine.NoPort("nats", "result store")
}

func (e *engineDriver) OpenSigner(context.Context, *resultstore.Store) (*urlsign.Signer, error) {
	return nil, engine.NoPort("nats", "result store")
}

func (e *engineDriver) Atomic() engine.Atomic { return nil }
func (e *engineDriver) Close() error          { return nil }

// OpenStoreURL opens the store a nats:// URL names, over the process's
// shared connection to its servers.
func OpenStoreURL(ctx context.Context, u *url.URL) (*Store, error) {
	return openURL(ctx, u, func(ctx context.Context, e *connEntry, cfg Config, release func()) (*Store, error) {
		return OpenStore(ctx, e.nc, cfg, e.onReconnect, release)
	})
}

// OpenQueueURL opens the queue a nats:// URL names, over the process's
// shared connection to its servers.
func OpenQueueURL(ctx context.Context, u *url.URL) (*Queue, error) {
	return openURL(ctx, u, func(ctx context.Context, e *connEntry, cfg Config, release func()) (*Queue, error) {
		return OpenQueue(ctx, e.nc, cfg, release)
	})
}

// openURL parses u, takes the shared connection and opens a driver on it
// with open, retried (see retryOpen); the connection is released if no
// open succeeds.
func openURL[T any](ctx context.Context, u *url.URL, open func(context.Context, *connEntry, Config, func()) (T, error)) (T, error) {
	var d T
	cfg, err := ParseURL(u)
	if err != nil {
		return d, err
	}
	e, release, err := acquire(ctx, cfg)
	if err != nil {
		return d, err
	}
	err = retryOpen(ctx, func(ctx context.Context) (err error) {
		d, err = open(ctx, e, cfg, release)
		return err
	})
	if err != nil {
		release()
	}
	return d, err
}

// openPatience bounds how long an open by URL keeps trying. Processes of
// a deployment often start together with (or before) the cluster: the
// JetStream meta leader may not be elected yet, and the first opens race
// to create the streams and bucket, so that one open's read can miss
// another's just-created stream, or time out while its replicas form.
const openPatience = time.Minute

// retryOpen calls open until it succeeds, with a backoff from 100ms to 2s
// and each try bounded to 5s, for at most openPatience or until ctx
// ends; it returns the last error.
func retryOpen(ctx context.Context, open func(context.Context) error) error {
	deadline := time.Now().Add(openPatience)
	wait := 100 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := open(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
