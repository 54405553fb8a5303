package servicebus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/arrhq/arr/internal/azclient"
)

// Scheme is the URL scheme of the queue: azservicebus://NAMESPACE/QUEUE.
const Scheme = "azservicebus"

// Config is what an azservicebus:// URL says.
type Config struct {
	// Namespace is the fully qualified namespace
	// (myns.servicebus.windows.net).
	Namespace string
	// Queue is the queue's name.
	Queue string
	// MaxDeliveries dead-letters a message delivered this many times and
	// not acked (0: the driver never does; the queue's own
	// MaxDeliveryCount still applies, see the package doc).
	MaxDeliveries int
	// Lease is the lease of a Receive that asks for none (default
	// DefaultLease).
	Lease time.Duration
}

// ParseURL reads azservicebus://NAMESPACE/QUEUE[?max_deliveries=N&lease=D].
// A NAMESPACE without a dot is a namespace name, made fully qualified
// with ".servicebus.windows.net". Unknown parameters are errors.
func ParseURL(u *url.URL) (Config, error) {
	var cfg Config
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("servicebus: URL %s: %s", u.Redacted(), fmt.Sprintf(format, a...))
	}
	if u.Scheme != Scheme {
		return bad("the scheme is not %s", Scheme)
	}
	if u.Opaque != "" {
		return bad("write it as %s://NAMESPACE/QUEUE", Scheme)
	}
	if u.User != nil {
		return bad("no user or key goes in the URL (the driver authenticates with DefaultAzureCredential)")
	}
	if u.Port() != "" {
		return bad("no port: Service Bus is reached on its AMQP port")
	}
	if u.Fragment != "" {
		return bad("no fragment")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return bad("no namespace (%s://NAMESPACE/QUEUE)", Scheme)
	}
	if !strings.Contains(host, ".") {
		host += ".servicebus.windows.net"
	}
	cfg.Namespace = host
	cfg.Queue = strings.TrimPrefix(u.Path, "/")
	if cfg.Queue == "" {
		return bad("no queue (%s://NAMESPACE/QUEUE)", Scheme)
	}
	if len(cfg.Queue) > 260 || strings.HasSuffix(cfg.Queue, "/") || strings.Contains(cfg.Queue, "//") {
		return bad("%q is not a queue name", cfg.Queue)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("bad query: %v", err)
	}
	var unknown []string
	for k, vs := range q {
		if len(vs) != 1 {
			return bad("parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "max_deliveries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return bad("max_deliveries=%q is not a count (0 or more)", v)
			}
			cfg.MaxDeliveries = n
		case "lease":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("lease=%q is not a positive duration (e.g. 1m)", v)
			}
			cfg.Lease = d
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return bad("unknown parameters %s (known: max_deliveries, lease)", strings.Join(unknown, ", "))
	}
	return cfg, nil
}

// OpenQueueURL opens the queue an azservicebus:// URL names.
func OpenQueueURL(ctx context.Context, u *url.URL) (*Queue, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return OpenQueue(ctx, cfg)
}

// OpenQueue opens the queue cfg names, with the process's
// DefaultAzureCredential (azclient.Credential). The queue must exist,
// with duplicate detection and without sessions: OpenQueue reads its
// properties (the management API) and refuses one that does not fit.
func OpenQueue(ctx context.Context, cfg Config) (*Queue, error) {
	cred, err := azclient.Credential()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Queue, error) {
		return nil, fmt.Errorf("servicebus: opening queue %s on %s: %w", cfg.Queue, cfg.Namespace, err)
	}
	adm, err := admin.NewClient(cfg.Namespace, cred, &admin.ClientOptions{ClientOptions: azclient.ClientOptions()})
	if err != nil {
		return fail(err)
	}
	m := sbAdmin{c: adm, queue: cfg.Queue}
	props, err := m.Props(ctx)
	if err != nil {
		return fail(err)
	}
	if err := checkProps(props); err != nil {
		return fail(err)
	}
	client, err := azservicebus.NewClient(cfg.Namespace, cred, &azservicebus.ClientOptions{ApplicationID: azclient.ApplicationID})
	if err != nil {
		return fail(err)
	}
	s, err := client.NewSender(cfg.Queue, nil)
	if err != nil {
		_ = client.Close(ctx)
		return fail(err)
	}
	r, err := client.NewReceiverForQueue(cfg.Queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock})
	if err != nil {
		_ = client.Close(ctx)
		return fail(err)
	}
	return newQueue(cfg, props.LockDuration, sbSender{s}, sbReceiver{r}, m, client.Close), nil
}

// checkProps refuses a queue the driver cannot keep its promises on.
func checkProps(p queueProps) error {
	if !p.RequiresDuplicateDetection {
		return errors.New("the queue has no duplicate detection (create it with RequiresDuplicateDetection; it cannot be turned on later), so Enqueue could not drop a message whose ID is queued")
	}
	if p.RequiresSession {
		return errors.New("the queue requires sessions; the driver sends and receives without them")
	}
	return nil
}
