package azurequeue

import (
	"context"
	"net/url"

	"github.com/arrhq/arr/engine"
	opdriver "github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
	"github.com/arrhq/arr/resultstore"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

func init() {
	engine.Register("azqueue", func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		cfg, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return &engineDriver{cfg: cfg}, nil
	})
}

// engineDriver is the engine of an azqueue:// URL: a queue and nothing
// else.
type engineDriver struct{ cfg Config }

func (e *engineDriver) Caps() engine.Caps { return engine.Caps{} }

func (e *engineDriver) OpenStore(context.Context) (opdriver.Store, error) {
	return nil, engine.NoPort("azqueue", "operations store")
}

func (e *engineDriver) OpenQueue(ctx context.Context) (qdriver.Queue, error) {
	return Open(ctx, e.cfg, nil)
}

func (e *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	return nil, engine.NoPort("azqueue", "result store")
}

func (e *engineDriver) OpenSigner(context.Context, *resultstore.Store) (*urlsign.Signer, error) {
	return nil, engine.NoPort("azqueue", "result store")
}

func (e *engineDriver) Atomic() engine.Atomic { return nil }
func (e *engineDriver) Close() error          { return nil }
