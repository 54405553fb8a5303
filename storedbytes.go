package arr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
)

// Stored-bytes budgets (docs/operations.md, "Limits"). The stored bytes of
// an operation are what arr keeps for it until the janitor deletes it:
// its request (method, path, query, stored headers, body, host and
// client address: Operation.RequestBytes) and its result (the bytes and
// the stored response headers). Submit refuses a request that would take
// the total over Config.MaxStoredBytes, or its tenant's share over
// Config.MaxTenantStoredBytes, with a *StorageError before anything is
// written.
//
// The count is this process's: it is counted from the store at start and
// every Config.StoredBytesRecount (RunStoredBytes), and adjusted in
// between by what this process does (submits, results, deletions). With
// several processes over one store, each counts at its recounts what all
// of them stored, but sees in between only its own changes.

// DefaultStoredBytesRecount is the default of Config.StoredBytesRecount.
const DefaultStoredBytesRecount = 10 * time.Minute

// storedBytesRetry is the Retry-After of a budget refusal: bytes are
// freed when the janitor deletes expired operations.
const storedBytesRetry = DefaultJanitorInterval

// HeaderBytes is the size of h as header field lines: each value's
// "Name: value\r\n".
func HeaderBytes(h http.Header) int {
	n := 0
	for name, vs := range h {
		for _, v := range vs {
			n += len(name) + 2 + len(v) + 2
		}
	}
	return n
}

// RequestBytes is the size arr counts for a stored request.
func RequestBytes(req *operation.Request) int64 {
	return int64(len(req.Method) + len(req.Path) + len(req.RawQuery) + HeaderBytes(req.Header) +
		len(req.Body) + len(req.Host) + len(req.RemoteAddr))
}

// resultBytes is the size arr counts for a stored result.
func resultBytes(r *operation.Result) int64 {
	if r == nil {
		return 0
	}
	return r.Size + int64(HeaderBytes(r.Header))
}

// storedBytes is the count of a Client's stored bytes, total and per
// tenant.
type storedBytes struct {
	mu      sync.Mutex
	total   int64
	tenants map[string]int64
	// While a recount walks the store (in id order), the changes to
	// operations it has passed (id <= cursor) are also kept in dTotal and
	// dTenants, to be added to what it counted; those to operations ahead
	// of it are kept in ahead until it passes them (it then reads them
	// changed), and those left at the end, to operations it never read
	// (submitted while it ran), are added too.
	counting bool
	// inflight are the reservations of submits whose write has not
	// returned: a count that starts meanwhile may not read them.
	inflight map[string]change
	cursor   string
	dTotal   int64
	dTenants map[string]int64
	ahead    map[string]change
	counted  bool // a recount has finished
}

// change is a change of stored bytes of one tenant's operation.
type change struct {
	tenant string
	n      int64
}

// budgeted reports whether a stored-bytes budget is set.
func (c *Client) budgeted() bool { return c.cfg.MaxStoredBytes > 0 || c.cfg.MaxTenantStoredBytes > 0 }

// StoredBytesBudgets are Config.MaxStoredBytes and
// Config.MaxTenantStoredBytes (0: none).
func (c *Client) StoredBytesBudgets() (total, perTenant int64) {
	return c.cfg.MaxStoredBytes, c.cfg.MaxTenantStoredBytes
}

// add records n more (or, negative, fewer) stored bytes of operation id of
// tenant.
func (s *storedBytes) add(id, tenant string, n int64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(id, tenant, n)
}

func (s *storedBytes) addLocked(id, tenant string, n int64) {
	s.total += n
	if s.tenants == nil {
		s.tenants = map[string]int64{}
	}
	if s.tenants[tenant] += n; s.tenants[tenant] <= 0 {
		delete(s.tenants, tenant)
	}
	switch {
	case !s.counting:
	case id <= s.cursor:
		s.dTotal += n
		s.dTenants[tenant] += n
	default:
		ch := s.ahead[id]
		ch.tenant, ch.n = tenant, ch.n+n
		s.ahead[id] = ch
	}
}

// reserve adds n bytes of operation id of tenant if they fit the budgets
// (max <= 0: no budget); otherwise it adds nothing and says which budget
// they would overrun.
func (s *storedBytes) reserve(id, tenant string, n, max, tenantMax int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if max > 0 && s.total+n > max {
		return &StorageError{Reason: StorageBudget, RetryAfter: storedBytesRetry,
			Err: fmt.Errorf("%d bytes are stored, the budget is %d", s.total, max)}
	}
	if tenantMax > 0 && s.tenants[tenant]+n > tenantMax {
		return &StorageError{Reason: StorageTenantBudget, RetryAfter: storedBytesRetry,
			Err: fmt.Errorf("tenant %q has %d bytes stored, its budget is %d", tenant, s.tenants[tenant], tenantMax)}
	}
	s.addLocked(id, tenant, n)
	if s.inflight == nil {
		s.inflight = map[string]change{}
	}
	s.inflight[id] = change{tenant, n}
	return nil
}

// settle ends the reservation of operation id: its write returned.
func (s *storedBytes) settle(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, id)
}

// StoredBytes is this process's count of the bytes stored for operations
// not yet deleted, and of those of the given tenant's operations (see
// Config.MaxStoredBytes). ok is false until a count from the store has
// finished (RunStoredBytes, CountStoredBytes). The count is kept only
// when a budget is set: without one, submits, results and deletions do
// not touch it.
func (c *Client) StoredBytes(tenant string) (total, ofTenant int64, ok bool) {
	s := &c.stored
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.tenants[tenant], s.counted
}

// countPage is how many operations one store call of a count reads.
const countPage = 1000

// CountStoredBytes counts the stored bytes of every operation in the store
// and makes that the count, with the changes this process made to the
// operations already counted while it ran. An operation stored before arr
// recorded its request's size has its request read to size it.
func (c *Client) CountStoredBytes(ctx context.Context) error {
	s := &c.stored
	s.mu.Lock()
	if s.counting {
		s.mu.Unlock()
		return errors.New("arr: a count of stored bytes is running")
	}
	s.counting, s.cursor, s.dTotal, s.dTenants, s.ahead = true, "", 0, map[string]int64{}, map[string]change{}
	for id, ch := range s.inflight { // ahead of the count, which may or may not read them
		s.ahead[id] = ch
	}
	s.mu.Unlock()
	var total int64
	tenants := map[string]int64{}
	cursor := ""
	var err error
	for {
		var ops []*operation.Operation
		ops, cursor, err = c.cfg.Store.List(ctx, ListOptions{After: cursor, Limit: countPage})
		if err != nil {
			break
		}
		if len(ops) > 0 {
			// From now on, changes to these operations are after what
			// the page read.
			s.mu.Lock()
			s.cursor = ops[len(ops)-1].ID
			for _, op := range ops {
				delete(s.ahead, op.ID) // read as changed
			}
			s.mu.Unlock()
		}
		for _, op := range ops {
			n := op.RequestBytes
			if n == 0 {
				req, rerr := c.cfg.Store.GetRequest(ctx, op.ID)
				if rerr == nil {
					n = RequestBytes(req)
				} else if !errors.Is(rerr, opstore.ErrNotFound) && !errors.Is(rerr, opstore.ErrGone) {
					err = rerr
					break
				}
			}
			n += resultBytes(op.Result)
			total += n
			tenants[op.Tenant] += n
		}
		if err != nil {
			break
		}
		s.mu.Lock()
		if cursor == "" {
			// Done: what was counted, and the changes since to what had
			// been counted.
			total += s.dTotal
			for t, n := range s.dTenants {
				tenants[t] += n
			}
			for _, ch := range s.ahead { // operations the count never read
				total += ch.n
				tenants[ch.tenant] += ch.n
			}
			s.total = total
			for t, n := range tenants {
				if n <= 0 {
					delete(tenants, t)
				}
			}
			s.tenants, s.counted, s.counting, s.dTenants, s.ahead = tenants, true, false, nil, nil
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.counting, s.dTenants, s.ahead = false, nil, nil
	s.mu.Unlock()
	return fmt.Errorf("arr: count stored bytes: %w", err)
}

// RunStoredBytes keeps the stored-bytes count (see Config.MaxStoredBytes)
// until ctx ends: it counts at once and then every
// Config.StoredBytesRecount. Without a budget it returns at once: the
// count is then not needed.
func (c *Client) RunStoredBytes(ctx context.Context) {
	if !c.budgeted() {
		return
	}
	t := time.NewTicker(c.cfg.StoredBytesRecount)
	defer t.Stop()
	for {
		if err := c.CountStoredBytes(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Error("arr: stored bytes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
