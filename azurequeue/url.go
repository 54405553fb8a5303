package azurequeue

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/arrhq/arr/internal/azclient"
)

// Config is what an azqueue:// URL says.
type Config struct {
	// Queue is the name of the Azure queue; its dead letters go to the
	// queue Queue+"-poison".
	Queue string
	// QueueEndpoint is the queue service's URL
	// (https://ACCOUNT.queue.core.windows.net).
	QueueEndpoint string
	// TableEndpoint is the table service's URL that holds the index
	// (https://ACCOUNT.table.core.windows.net).
	TableEndpoint string
	// Table is the index table (default DefaultTable); the queue's entities
	// are one partition of it, keyed by the queue's name.
	Table string
	// MaxDeliveries dead-letters a message delivered this many times and
	// not acked (0: never).
	MaxDeliveries int
	// Lease is the lease of a Receive or InProgress given none (default
	// DefaultLease).
	Lease time.Duration
}

// DefaultTable is the index table of a URL without table=.
const DefaultTable = "arrqueueindex"

// DefaultLease is the lease of a URL without lease=.
const DefaultLease = 30 * time.Second

// poisonSuffix names a queue's dead-letter queue, as Azure Functions and
// WebJobs name theirs.
const poisonSuffix = "-poison"

// ParseURL reads an azqueue:// URL:
//
//	azqueue://QUEUE?account=NAME[&table_endpoint=URL][&table=T][&max_deliveries=N][&lease=D]
//	azqueue://QUEUE?endpoint=URL&table_endpoint=URL[&…]
//
// account names the storage account whose queue and table services hold
// the queue and its index; endpoint gives the queue service's URL instead
// (an emulator, a private endpoint, a sovereign cloud), and then
// table_endpoint, the table service's URL, is required, since a table
// service's URL cannot be derived from an arbitrary queue service's
// (Azurite, for one, serves them on different ports). Unknown parameters
// are errors.
func ParseURL(u *url.URL) (Config, error) {
	if u.Scheme != "azqueue" {
		return Config{}, fmt.Errorf("azqueue: URL scheme %q, want azqueue", u.Scheme)
	}
	cfg := Config{Queue: u.Host, Table: DefaultTable, Lease: DefaultLease}
	if cfg.Queue == "" {
		cfg.Queue = u.Opaque
	}
	if u.Path != "" && u.Path != "/" {
		return Config{}, fmt.Errorf("azqueue: URL %q has a path; the queue is named by the host: azqueue://QUEUE?account=NAME", u.Redacted())
	}
	if err := validQueueName(cfg.Queue); err != nil {
		return Config{}, err
	}
	q := u.Query()
	for k, v := range q {
		switch k {
		case "account", "endpoint", "table_endpoint", "table", "max_deliveries", "lease":
			if len(v) != 1 {
				return Config{}, fmt.Errorf("azqueue: parameter %s given %d times", k, len(v))
			}
		default:
			return Config{}, fmt.Errorf("azqueue: unknown URL parameter %q (known: account, endpoint, table_endpoint, table, max_deliveries, lease)", k)
		}
	}
	var err error
	if cfg.QueueEndpoint, err = azclient.Endpoint(q, "queue"); err != nil {
		return Config{}, fmt.Errorf("azqueue: %w", err)
	}
	switch te := q.Get("table_endpoint"); {
	case te != "":
		tq := url.Values{"endpoint": {te}}
		if cfg.TableEndpoint, err = azclient.Endpoint(tq, "table"); err != nil {
			return Config{}, fmt.Errorf("azqueue: table_endpoint: %w", err)
		}
	case q.Get("account") != "":
		cfg.TableEndpoint, _ = azclient.Endpoint(url.Values{"account": {q.Get("account")}}, "table")
	default:
		return Config{}, errors.New("azqueue: with endpoint=, give table_endpoint= too (the table service's URL, for the queue's index)")
	}
	if t := q.Get("table"); t != "" {
		if err := validTableName(t); err != nil {
			return Config{}, err
		}
		cfg.Table = t
	}
	if s := q.Get("max_deliveries"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("azqueue: max_deliveries=%q is not a count (0 or more; 0: never dead-letter)", s)
		}
		cfg.MaxDeliveries = n
	}
	if s := q.Get("lease"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > maxVisibility {
			return Config{}, fmt.Errorf("azqueue: lease=%q is not a duration from 1s to 168h (e.g. 30s, 5m)", s)
		}
		cfg.Lease = d
	}
	return cfg, nil
}

// validQueueName checks Azure's rules for queue names (3 to 63 lowercase
// letters, digits and single hyphens, starting and ending with a letter or
// digit), leaving room for the "-poison" suffix.
func validQueueName(s string) error {
	bad := func(why string) error {
		return fmt.Errorf("azqueue: queue name %q: %s (an Azure queue name is 3 to %d lowercase letters, digits and single hyphens, starting and ending with a letter or digit)", s, why, 63-len(poisonSuffix))
	}
	switch {
	case s == "":
		return errors.New("azqueue: the URL names no queue: azqueue://QUEUE?account=NAME")
	case len(s) < 3:
		return bad("too short")
	case len(s) > 63-len(poisonSuffix):
		return bad("too long (its dead-letter queue is NAME-poison)")
	case s[0] == '-' || s[len(s)-1] == '-':
		return bad("starts or ends with a hyphen")
	case strings.Contains(s, "--"):
		return bad("two hyphens in a row")
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return bad(fmt.Sprintf("character %q", c))
		}
	}
	return nil
}

// validTableName checks Azure's rules for table names: 3 to 63 letters
// and digits, starting with a letter.
func validTableName(s string) error {
	ok := len(s) >= 3 && len(s) <= 63 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			ok = false
		}
	}
	if !ok || strings.EqualFold(s, "tables") {
		return fmt.Errorf("azqueue: table=%q is not an Azure table name (3 to 63 letters and digits, starting with a letter)", s)
	}
	return nil
}
