package natsjs

import (
	"context"
	"net/url"

	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/queue"
)

func init() {
	opstore.Register("nats", func(ctx context.Context, u *url.URL) (*opstore.Store, error) {
		s, err := OpenStoreURL(ctx, u)
		if err != nil {
			return nil, err
		}
		return opstore.New(s), nil
	})
	queue.Register("nats", func(ctx context.Context, u *url.URL) (*queue.Queue, error) {
		q, err := OpenQueueURL(ctx, u)
		if err != nil {
			return nil, err
		}
		return queue.New(q), nil
	})
}

// OpenStoreURL opens the store a nats:// URL names, over the process's
// shared connection to its servers.
func OpenStoreURL(ctx context.Context, u *url.URL) (*Store, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	e, release, err := acquire(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s, err := OpenStore(ctx, e.nc, cfg, e.onReconnect, release)
	if err != nil {
		release()
		return nil, err
	}
	return s, nil
}

// OpenQueueURL opens the queue a nats:// URL names, over the process's
// shared connection to its servers.
func OpenQueueURL(ctx context.Context, u *url.URL) (*Queue, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	e, release, err := acquire(ctx, cfg)
	if err != nil {
		return nil, err
	}
	q, err := OpenQueue(ctx, e.nc, cfg, release)
	if err != nil {
		release()
		return nil, err
	}
	return q, nil
}
