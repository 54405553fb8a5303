package servicebus

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
	engine.Register(Scheme, func(ctx context.Context, u *url.URL) (engine.Driver, error) {
		if _, err := ParseURL(u); err != nil {
			return nil, err
		}
		return &engineDriver{u: u}, nil
	})
}

// engineDriver is the Azure Service Bus engine of a URL: a queue and no
// other port.
type engineDriver struct{ u *url.URL }

func (e *engineDriver) Caps() engine.Caps { return engine.Caps{} }

func (e *engineDriver) OpenStore(context.Context) (opdriver.Store, error) {
	return nil, engine.NoPort(Scheme, "operations store")
}

func (e *engineDriver) OpenQueue(ctx context.Context) (qdriver.Queue, error) {
	return OpenQueueURL(ctx, e.u)
}

func (e *engineDriver) OpenResults(context.Context) (rdriver.Store, error) {
	return nil, engine.NoPort(Scheme, "result store")
}

func (e *engineDriver) OpenSigner(context.Context, *resultstore.Store) (*urlsign.Signer, error) {
	return nil, engine.NoPort(Scheme, "result store")
}

func (e *engineDriver) Atomic() engine.Atomic { return nil }
func (e *engineDriver) Close() error          { return nil }
