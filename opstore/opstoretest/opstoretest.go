// Package opstoretest is the conformance suite every operations store driver
// must pass. A driver's test calls RunConformanceTests with a HarnessMaker
// that opens the driver over fresh data, the way gocloud.dev's drivertest
// packages work: the suite wraps the driver in the portable *opstore.Store
// and exercises the portable methods, so that the portable layer is tested
// too.
//
//	func TestConformance(t *testing.T) {
//		opstoretest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (opstoretest.Harness, error) {
//			return newHarness(t.TempDir()), nil
//		})
//	}
//
// Every test makes its own harness, so tests never see each other's data.
package opstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore"
	"github.com/arrhq/arr/opstore/driver"
	qdriver "github.com/arrhq/arr/queue/driver"
)

// Harness opens one driver over one set of data.
type Harness interface {
	// OpenStore opens the store over the harness's data. The suite closes
	// every store it opens, and may then call OpenStore again: the new store
	// must see everything the closed one wrote.
	OpenStore(ctx context.Context) (driver.Store, error)

	// OpenAtomic returns the one-step writes (engine.Atomic) of the engine
	// of the store most recently returned by OpenStore, and opens a queue
	// of that engine, for the engine.Atomic tests. A harness whose engine
	// has no one-step writes returns nil, nil, nil and those tests are
	// skipped. The suite closes the queue before it closes the store, and
	// uses the Atomic only while that store is open.
	OpenAtomic(ctx context.Context) (engine.Atomic, qdriver.Queue, error)

	// Close releases what the harness holds (the suite has closed every
	// store and queue by then).
	Close()
}

// HarnessMaker makes a Harness over fresh, empty data.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// timeouts: generous, so that a loaded machine never makes a test flaky.
const (
	wakeWithin = 2 * time.Second        // a notification that must come
	quietFor   = 250 * time.Millisecond // a window in which none may come
)

// RunConformanceTests runs the suite against the driver newHarness opens.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	tests := []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"CreateGet", testCreateGet},
		{"CopySemantics", testCopySemantics},
		{"NotFound", testNotFound},
		{"Versioning", testVersioning},
		{"CreateExists", testCreateExists},
		{"IdempotencyKey", testIdempotencyKey},
		{"IdempotencyKeyRace", testIdempotencyKeyRace},
		{"Request", testRequest},
		{"List", testList},
		{"ListStatusFilter", testListStatusFilter},
		{"ListPagingWhileChanging", testListPagingWhileChanging},
		{"DeleteExpired", testDeleteExpired},
		{"DeleteExpiredFollowsUpdates", testDeleteExpiredFollowsUpdates},
		{"AllFieldsRoundTrip", testAllFieldsRoundTrip},
		{"Tombstones", testTombstones},
		{"TombstonesPurgedInBatches", testTombstonesPurgedInBatches},
		{"Watch", testWatch},
		{"WatchDeletion", testWatchDeletion},
		{"WatchNeverMisses", testWatchNeverMisses},
		{"Reopen", testReopen},
		{"ConcurrentTransitions", testConcurrentTransitions},
		{"Closed", testClosed},
		{"SubmitAtomic", testSubmitAtomic},
		{"TransitionEnqueue", testTransitionEnqueue},
		{"LazyUpdate", testLazyUpdate},
		{"TransitionOp", testTransitionOp},
		{"ListOwner", testListOwner},
		{"ListOwnerStatus", testListOwnerStatus},
		{"OwnerNeverChanges", testOwnerNeverChanges},
		{"ListOwnerDeleteExpired", testListOwnerDeleteExpired},
		{"ListOwnerCreateConflicts", testListOwnerCreateConflicts},
		{"ListOwnerSubmitAtomic", testListOwnerSubmitAtomic},
		{"DueCallbacks", testDueCallbacks},
		{"DueCallbacksFollowsWrites", testDueCallbacksFollowsWrites},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			h, err := newHarness(ctx, t)
			if err != nil {
				t.Fatalf("making harness: %v", err)
			}
			f := &fixture{t: t, ctx: ctx, h: h}
			t.Cleanup(func() {
				f.closeAll()
				h.Close()
			})
			f.open()
			tc.fn(t, f)
		})
	}
}

// fixture holds the store (and queue) a test works on: the store is the
// driver the harness opened, in the portable type.
type fixture struct {
	t   *testing.T
	ctx context.Context
	h   Harness
	s   *opstore.Store
	q   qdriver.Queue
	a   engine.Atomic
}

// deleteExpired calls DeleteExpired and checks that every operation it
// returns was really expired at now; it returns how many there were.
func (f *fixture) deleteExpired(now time.Time, limit int) (int, error) {
	f.t.Helper()
	ops, err := f.s.DeleteExpired(f.ctx, now, limit)
	seen := map[string]bool{}
	for _, op := range ops {
		if op == nil || op.ID == "" || op.ExpiresAt.IsZero() || !op.ExpiresAt.Before(now) || seen[op.ID] {
			f.t.Fatalf("DeleteExpired(%s) returned %+v, which was not expired then (or twice)", now, op)
		}
		seen[op.ID] = true
	}
	return len(ops), err
}

func (f *fixture) open() {
	f.t.Helper()
	d, err := f.h.OpenStore(f.ctx)
	if err != nil {
		f.t.Fatalf("OpenStore: %v", err)
	}
	if d == nil {
		f.t.Fatalf("OpenStore returned a nil store")
	}
	f.s = opstore.New(d)
}

func (f *fixture) closeAll() {
	f.t.Helper()
	if f.q != nil {
		if err := f.q.Close(); err != nil {
			f.t.Errorf("closing queue: %v", err)
		}
		f.q, f.a = nil, nil
	}
	if f.s != nil {
		if err := f.s.Close(); err != nil {
			f.t.Errorf("closing store: %v", err)
		}
		f.s = nil
	}
}

// reopen closes the store (and queue) and opens the store again over the
// same data.
func (f *fixture) reopen() {
	f.t.Helper()
	f.closeAll()
	f.open()
}

// queue opens the queue of the store's engine, or skips the test.
func (f *fixture) queue() qdriver.Queue {
	f.t.Helper()
	f.submitter()
	return f.q
}

// submitter returns the engine's one-step writes (opening its queue), or
// skips the test.
func (f *fixture) submitter() engine.Atomic {
	f.t.Helper()
	if f.a != nil {
		return f.a
	}
	a, q, err := f.h.OpenAtomic(f.ctx)
	if err != nil {
		f.t.Fatalf("OpenAtomic: %v", err)
	}
	if a == nil || q == nil {
		if q != nil {
			_ = q.Close()
		}
		f.t.Skip("the engine has no one-step writes of an operation and its message")
	}
	f.a, f.q = a, q
	return a
}

var idSeq atomic.Uint64

// NewID returns a fresh UUIDv7 in canonical form. IDs made later sort after
// earlier ones within a process.
func NewID() string {
	var u [16]byte
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint64(u[0:8], ms<<16)
	seq := idSeq.Add(1)
	// 12 bits of rand_a and the first 30 bits of rand_b hold a process-wide
	// sequence so that IDs made within one millisecond still ascend; the
	// rest is random.
	_, _ = rand.Read(u[6:])
	u[6] = 0x70 | byte(seq>>38)&0x0f
	u[7] = byte(seq >> 30)
	u[8] = 0x80 | byte(seq>>24)&0x3f
	u[9] = byte(seq >> 16)
	u[10] = byte(seq >> 8)
	u[11] = byte(seq)
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// now is a timestamp every driver can store exactly (milliseconds, UTC).
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// newOp returns a pending operation with every field the store must keep
// filled in.
func newOp() *operation.Operation {
	t := now()
	return &operation.Operation{
		ID:              NewID(),
		Route:           "echo",
		Status:          operation.Pending,
		CreatedAt:       t,
		UpdatedAt:       t,
		PercentComplete: 7,
		Message:         "queued",
		Attempts:        0,
		Meta:            map[string]string{"RequestSubmittedAt": t.Format(time.RFC3339), "k": "v"},
	}
}

// fullOp returns an operation with every field set, for round trips.
// Extension values are float64 (and bool and string), as JSON decodes
// them, so that drivers that store problems as JSON compare equal.
func fullOp() *operation.Operation {
	op := newOp()
	t := now()
	op.Status = operation.Failed
	op.Attempts = 3
	op.Failures = 2
	op.Interruptions = 1
	op.History = []operation.Attempt{
		{Number: 1, EndedAt: t.Add(-2 * time.Minute), Outcome: operation.OutcomeInterrupted,
			Error: &operation.Problem{Type: "urn:arr:interrupted", Title: "Interrupted"}},
		{Number: 2, StartedAt: t.Add(-time.Minute), EndedAt: t.Add(-time.Minute + 1500*time.Millisecond), Outcome: operation.OutcomeFailed,
			Error: &operation.Problem{Type: "urn:arr:upstream", Title: "Bad gateway", Status: 502, Detail: "upstream answered 503",
				Extensions: map[string]any{"upstreamStatus": 503.0}}},
	}
	op.HistoryDropped = 4
	op.Error = &operation.Problem{Type: "urn:arr:test", Title: "broken", Status: 502, Detail: "upstream said no", Instance: "/v1/operations/x",
		Extensions: map[string]any{"upstreamStatus": 503.0, "retryable": true, "upstream": "api.example.com"}}
	op.Result = &operation.Result{Key: "results/" + op.ID, ContentType: "application/json", Size: 1234, ETag: `"abc"`,
		StatusCode: 201, Header: http.Header{"Location": {"/things/1"}, "X-Multi": {"a", "b"}}}
	op.IdempotencyKey = "key-" + op.ID
	op.RequestHash = "sha256:deadbeef"
	op.ExpiresAt = t.Add(24 * time.Hour)
	op.TombstoneUntil = t.Add(48 * time.Hour)
	op.AttemptStartedAt = t.Add(-time.Minute)
	op.Owner = "alice@example.com"
	op.Tenant = "tenant-a"
	op.CallbackURL = "https://hooks.example.com/arr?tag=a%20b"
	op.Callbacks = []operation.Callback{
		{ID: "msg_1", URL: "https://hooks.example.com/arr?tag=a%20b", Event: "failed", Secret: "principal:alice@example.com",
			CreatedAt: t.Add(-time.Minute), State: operation.CallbackPending, Attempts: 3, NextAt: t.Add(time.Minute),
			LastStatus: 503, LastError: "the target answered 503", LastAt: t.Add(-time.Second)},
		{ID: "msg_2", URL: "https://route.example.com/", Event: "failed", Secret: "route:echo",
			CreatedAt: t.Add(-time.Minute), State: operation.CallbackDelivered, Attempts: 1, LastStatus: 200,
			LastAt: t.Add(-time.Minute), DeliveredAt: t.Add(-time.Minute)},
	}
	op.CallbackDueAt = t.Add(time.Minute)
	return op
}

func newRequest(body []byte) *operation.Request {
	return &operation.Request{
		Method:   "POST",
		Path:     "/v1/echo",
		RawQuery: "a=1&b=two",
		Header: http.Header{
			"Content-Type": {"application/octet-stream"},
			"X-Multi":      {"one", "two", ""},
		},
		Body:       body,
		Host:       "api.example.com",
		RemoteAddr: "192.0.2.7:51234",
		TLS:        true,
	}
}

// normalize makes two operations that a driver stored faithfully compare
// equal with reflect.DeepEqual: times in UTC without monotonic readings,
// empty maps and slices as nil.
func normalize(op *operation.Operation) *operation.Operation {
	c := op.Clone()
	fix := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return time.Unix(0, t.UnixNano()).UTC()
	}
	fixProblem := func(p *operation.Problem) {
		if p != nil && len(p.Extensions) == 0 {
			p.Extensions = nil
		}
	}
	c.CreatedAt, c.UpdatedAt, c.ExpiresAt = fix(c.CreatedAt), fix(c.UpdatedAt), fix(c.ExpiresAt)
	c.TombstoneUntil = fix(c.TombstoneUntil)
	c.AttemptStartedAt = fix(c.AttemptStartedAt)
	c.CallbackDueAt = fix(c.CallbackDueAt)
	if len(c.Callbacks) == 0 {
		c.Callbacks = nil
	}
	for i := range c.Callbacks {
		cb := &c.Callbacks[i]
		cb.CreatedAt, cb.NextAt, cb.LastAt, cb.DeliveredAt = fix(cb.CreatedAt), fix(cb.NextAt), fix(cb.LastAt), fix(cb.DeliveredAt)
	}
	if len(c.Meta) == 0 {
		c.Meta = nil
	}
	if len(c.History) == 0 {
		c.History = nil
	}
	for i := range c.History {
		c.History[i].StartedAt, c.History[i].EndedAt = fix(c.History[i].StartedAt), fix(c.History[i].EndedAt)
		fixProblem(c.History[i].Error)
	}
	fixProblem(c.Error)
	if c.Result != nil && len(c.Result.Header) == 0 {
		c.Result.Header = nil
	}
	return c
}

func assertSameOp(t *testing.T, what string, want, got *operation.Operation) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil operation, want %+v", what, want)
	}
	w, g := normalize(want), normalize(got)
	if !reflect.DeepEqual(w, g) {
		t.Fatalf("%s: operations differ\n got: %s\nwant: %s", what, dump(g), dump(w))
	}
}

func dump(op *operation.Operation) string {
	s := fmt.Sprintf("%+v", *op)
	if op.Error != nil {
		s += fmt.Sprintf(" Error=%+v", *op.Error)
	}
	if op.Result != nil {
		s += fmt.Sprintf(" Result=%+v", *op.Result)
	}
	for i, a := range op.History {
		s += fmt.Sprintf(" History[%d]=%+v", i, a)
		if a.Error != nil {
			s += fmt.Sprintf(" (Error=%+v)", *a.Error)
		}
	}
	return s
}

// expectGone checks that Get and GetRequest of id answer ErrGone (and not
// ErrNotFound).
func (f *fixture) expectGone(id string) {
	f.t.Helper()
	if op, err := f.s.Get(f.ctx, id); !errors.Is(err, opstore.ErrGone) || errors.Is(err, opstore.ErrNotFound) {
		f.t.Fatalf("Get(%s) = %v, %v; want ErrGone", id, op, err)
	}
	if req, err := f.s.GetRequest(f.ctx, id); !errors.Is(err, opstore.ErrGone) || errors.Is(err, opstore.ErrNotFound) {
		f.t.Fatalf("GetRequest(%s) = %v, %v; want ErrGone", id, req, err)
	}
}

func (f *fixture) create(op *operation.Operation, req *operation.Request) *operation.Operation {
	f.t.Helper()
	if req == nil {
		req = newRequest([]byte("body of " + op.ID))
	}
	stored, created, err := f.s.Create(f.ctx, op, req)
	if err != nil {
		f.t.Fatalf("Create(%s): %v", op.ID, err)
	}
	if !created {
		f.t.Fatalf("Create(%s): created = false, want true", op.ID)
	}
	return stored
}

func (f *fixture) get(id string) *operation.Operation {
	f.t.Helper()
	op, err := f.s.Get(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Get(%s): %v", id, err)
	}
	return op
}

func (f *fixture) update(op *operation.Operation) {
	f.t.Helper()
	before := op.Version
	if err := f.s.Update(f.ctx, op); err != nil {
		f.t.Fatalf("Update(%s, version %d): %v", op.ID, before, err)
	}
	if op.Version != before+1 {
		f.t.Fatalf("Update(%s): op.Version = %d after update from %d, want %d", op.ID, op.Version, before, before+1)
	}
}

func (f *fixture) setStatus(id string, st operation.Status) *operation.Operation {
	f.t.Helper()
	op := f.get(id)
	op.Status = st
	op.UpdatedAt = now()
	f.update(op)
	return op
}

func (f *fixture) expectNotFound(id string) {
	f.t.Helper()
	if op, err := f.s.Get(f.ctx, id); !errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
		f.t.Fatalf("Get(%s) = %v, %v; want ErrNotFound", id, op, err)
	}
	if req, err := f.s.GetRequest(f.ctx, id); !errors.Is(err, opstore.ErrNotFound) || errors.Is(err, opstore.ErrGone) {
		f.t.Fatalf("GetRequest(%s) = %v, %v; want ErrNotFound", id, req, err)
	}
}

// listAll pages through List with opts and returns the IDs in the order
// returned, failing if a page is out of order or over its limit.
func (f *fixture) listAll(opts opstore.ListOptions) []string {
	f.t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 10000 {
			f.t.Fatalf("List never returned an empty cursor")
		}
		ops, next, err := f.s.List(f.ctx, opts)
		if err != nil {
			f.t.Fatalf("List(%+v): %v", opts, err)
		}
		limit := opts.Limit
		if limit <= 0 {
			limit = 100
		}
		if len(ops) > limit {
			f.t.Fatalf("List(%+v) returned %d operations, over the limit %d", opts, len(ops), limit)
		}
		for _, op := range ops {
			ids = append(ids, op.ID)
		}
		if next == "" {
			return ids
		}
		if len(ops) == 0 {
			f.t.Fatalf("List(%+v) returned an empty page with cursor %q", opts, next)
		}
		opts.After = next
	}
}

func expectWake(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeWithin):
		t.Fatalf("%s: no notification within %v", what, wakeWithin)
	}
}

func expectQuiet(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: unexpected notification", what)
	case <-time.After(quietFor):
	}
}

// ---- tests ----

func testCreateGet(t *testing.T, f *fixture) {
	op := fullOp()
	op.Version = 42 // the store sets Version, whatever the caller passed
	want := op.Clone()
	want.Version = 1
	stored, created, err := f.s.Create(f.ctx, op, newRequest([]byte("x")))
	if err != nil || !created {
		t.Fatalf("Create = %v, %v; want created", created, err)
	}
	assertSameOp(t, "Create's returned operation", want, stored)
	assertSameOp(t, "Get after Create", want, f.get(op.ID))

	// A minimal operation round-trips too (zero times, nil maps).
	min := &operation.Operation{ID: NewID(), Status: operation.Pending}
	stored = f.create(min, nil)
	if stored.Version != 1 {
		t.Fatalf("minimal Create: Version = %d, want 1", stored.Version)
	}
	wantMin := min.Clone()
	wantMin.Version = 1
	assertSameOp(t, "Get of minimal operation", wantMin, f.get(min.ID))
}

func testCopySemantics(t *testing.T, f *fixture) {
	op := fullOp()
	want := op.Clone()
	want.Version = 1
	stored := f.create(op, nil)

	// Mutating the input after Create changes nothing stored.
	op.Route = "mutated"
	op.Meta["k"] = "mutated"
	op.Error.Title = "mutated"
	op.Error.Extensions["upstreamStatus"] = 0.0
	op.Result.Size = -1
	op.Result.Header.Set("Location", "mutated")
	op.History[1].Error.Extensions["upstreamStatus"] = 0.0
	op.History[0].Outcome = "mutated"
	assertSameOp(t, "Get after mutating Create's input", want, f.get(want.ID))

	// Nor does mutating Create's result.
	stored.Status = operation.Succeeded
	stored.Meta["k"] = "mutated"
	stored.Error.Detail = "mutated"
	stored.Result.Key = "mutated"
	assertSameOp(t, "Get after mutating Create's result", want, f.get(want.ID))

	// Nor does mutating what Get returned.
	got := f.get(want.ID)
	got.Message = "mutated"
	got.Meta["new"] = "mutated"
	got.Error.Type = "mutated"
	got.Result.ETag = "mutated"
	got.Result.Header["X-Multi"][0] = "mutated"
	got.History[1].Error.Detail = "mutated"
	got.Error.Extensions["new"] = "mutated"
	assertSameOp(t, "second Get after mutating the first's result", want, f.get(want.ID))

	// Nor does mutating an operation after Update stored it.
	upd := f.get(want.ID)
	upd.Message = "updated"
	f.update(upd)
	wantUpd := upd.Clone()
	upd.Meta["k"] = "after update"
	upd.Error.Title = "after update"
	assertSameOp(t, "Get after mutating Update's input", wantUpd, f.get(want.ID))

	// Nor does mutating the request given to Create or returned by GetRequest.
	body := []byte("original body")
	req := newRequest(body)
	op2 := newOp()
	f.create(op2, req)
	body[0] = 'X'
	req.Header.Set("Content-Type", "mutated")
	got2, err := f.s.GetRequest(f.ctx, op2.ID)
	if err != nil {
		t.Fatalf("GetRequest: %v", err)
	}
	if string(got2.Body) != "original body" || got2.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GetRequest after mutating Create's request: body %q, content type %q", got2.Body, got2.Header.Get("Content-Type"))
	}
	got2.Body[0] = 'Y'
	got2.Header.Set("X-Multi", "mutated")
	got3, err := f.s.GetRequest(f.ctx, op2.ID)
	if err != nil {
		t.Fatalf("GetRequest: %v", err)
	}
	if string(got3.Body) != "original body" || !slices.Equal(got3.Header["X-Multi"], []string{"one", "two", ""}) {
		t.Fatalf("GetRequest after mutating an earlier result: body %q, X-Multi %q", got3.Body, got3.Header["X-Multi"])
	}
}

func testNotFound(t *testing.T, f *fixture) {
	f.expectNotFound(NewID())
	f.create(newOp(), nil)
	f.expectNotFound(NewID())
}

func testVersioning(t *testing.T, f *fixture) {
	op := f.create(newOp(), nil)
	if op.Version != 1 {
		t.Fatalf("Version after Create = %d, want 1", op.Version)
	}
	for v := int64(2); v <= 4; v++ {
		op.PercentComplete = int(v) * 10
		f.update(op)
		got := f.get(op.ID)
		if got.Version != v || got.PercentComplete != int(v)*10 {
			t.Fatalf("after update %d: stored Version %d, PercentComplete %d", v-1, got.Version, got.PercentComplete)
		}
		assertSameOp(t, "Get after Update", op, got)
	}

	// A stale version conflicts and changes nothing.
	stale := op.Clone()
	stale.Version = 2
	stale.Message = "stale write"
	if err := f.s.Update(f.ctx, stale); !errors.Is(err, opstore.ErrConflict) {
		t.Fatalf("Update with stale version = %v, want ErrConflict", err)
	}
	// A version from the future conflicts too.
	future := op.Clone()
	future.Version = op.Version + 1
	if err := f.s.Update(f.ctx, future); !errors.Is(err, opstore.ErrConflict) {
		t.Fatalf("Update with future version = %v, want ErrConflict", err)
	}
	assertSameOp(t, "Get after conflicting updates", op, f.get(op.ID))

	// Two writers holding the same version: exactly one wins.
	a, b := f.get(op.ID), f.get(op.ID)
	a.Message, b.Message = "a", "b"
	f.update(a)
	if err := f.s.Update(f.ctx, b); !errors.Is(err, opstore.ErrConflict) {
		t.Fatalf("second Update from the same version = %v, want ErrConflict", err)
	}
	if got := f.get(op.ID); got.Message != "a" || got.Version != a.Version {
		t.Fatalf("after racing updates: Message %q Version %d, want %q %d", got.Message, got.Version, "a", a.Version)
	}

	// Updating a missing operation is ErrNotFound, and creates nothing.
	missing := newOp()
	missing.Version = 1
	if err := f.s.Update(f.ctx, missing); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Update of missing operation = %v, want ErrNotFound", err)
	}
	if _, err := f.s.Get(f.ctx, missing.ID); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Get after Update of missing operation = %v, want ErrNotFound", err)
	}
}

func testCreateExists(t *testing.T, f *fixture) {
	first := newOp()
	f.create(first, newRequest([]byte("first")))
	want := f.get(first.ID)

	dup := newOp()
	dup.ID = first.ID
	dup.Route = "other"
	if _, _, err := f.s.Create(f.ctx, dup, newRequest([]byte("second"))); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of an existing ID = %v, want ErrExists", err)
	}
	assertSameOp(t, "Get after duplicate Create", want, f.get(first.ID))
	req, err := f.s.GetRequest(f.ctx, first.ID)
	if err != nil || string(req.Body) != "first" {
		t.Fatalf("GetRequest after duplicate Create = %q, %v; want the first body", reqBody(req), err)
	}

	// A duplicate ID carrying a new idempotency key must not take the key.
	dup2 := newOp()
	dup2.ID = first.ID
	dup2.IdempotencyKey = "fresh-key"
	if _, _, err := f.s.Create(f.ctx, dup2, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of an existing ID with a new key = %v, want ErrExists", err)
	}
	other := newOp()
	other.IdempotencyKey = "fresh-key"
	stored, created, err := f.s.Create(f.ctx, other, nil)
	if err != nil || !created || stored.ID != other.ID {
		t.Fatalf("Create with a key a failed Create tried to take = %v, %v, %v; want created", idOf(stored), created, err)
	}
}

func reqBody(r *operation.Request) []byte {
	if r == nil {
		return nil
	}
	return r.Body
}

func idOf(op *operation.Operation) string {
	if op == nil {
		return "<nil>"
	}
	return op.ID
}

func testIdempotencyKey(t *testing.T, f *fixture) {
	first := newOp()
	first.IdempotencyKey = "idem-1"
	first.RequestHash = "hash-1"
	f.create(first, newRequest([]byte("first")))
	// Move the first on, so that the held operation returned must be the
	// current one, not a copy of what was created.
	held := f.setStatus(first.ID, operation.Running)

	second := newOp()
	second.IdempotencyKey = "idem-1"
	second.RequestHash = "hash-2"
	got, created, err := f.s.Create(f.ctx, second, newRequest([]byte("second")))
	if err != nil {
		t.Fatalf("second Create with the same key: %v", err)
	}
	if created {
		t.Fatalf("second Create with the same key: created = true, want false")
	}
	assertSameOp(t, "operation returned for a held key", held, got)
	// Nothing of the second was written.
	f.expectNotFound(second.ID)
	req, err := f.s.GetRequest(f.ctx, first.ID)
	if err != nil || string(req.Body) != "first" {
		t.Fatalf("GetRequest of key holder = %q, %v; want first body", reqBody(req), err)
	}
	if ids := f.listAll(opstore.ListOptions{}); !slices.Equal(ids, []string{first.ID}) {
		t.Fatalf("List after duplicate-key Create = %v, want only %s", ids, first.ID)
	}

	// Operations without a key never collide, and other keys are independent.
	for range 3 {
		f.create(newOp(), nil)
	}
	k2 := newOp()
	k2.IdempotencyKey = "idem-2"
	f.create(k2, nil)
	if ids := f.listAll(opstore.ListOptions{}); len(ids) != 5 {
		t.Fatalf("List = %d operations, want 5", len(ids))
	}

	// The key survives updates of its holder.
	held.Status = operation.Succeeded
	f.update(held)
	third := newOp()
	third.IdempotencyKey = "idem-1"
	got, created, err = f.s.Create(f.ctx, third, nil)
	if err != nil || created || got.ID != first.ID || got.Status != operation.Succeeded {
		t.Fatalf("third Create with the key = %s/%v, %v, %v; want the held operation, succeeded", idOf(got), statusOf(got), created, err)
	}
	f.expectNotFound(third.ID)
}

func statusOf(op *operation.Operation) operation.Status {
	if op == nil {
		return ""
	}
	return op.Status
}

func testIdempotencyKeyRace(t *testing.T, f *fixture) {
	// Several rounds, each on a fresh key, to give a race a fair chance.
	var winners []string
	for round := range 8 {
		winners = append(winners, raceOneKey(t, f, fmt.Sprintf("raced-key-%d", round)))
	}
	sort.Strings(winners)
	if got := f.listAll(opstore.ListOptions{}); !slices.Equal(got, winners) {
		t.Fatalf("List after the races = %v, want only the %d winners %v", got, len(winners), winners)
	}
}

// raceOneKey has 32 goroutines create operations with one idempotency key
// at once, checks that exactly one created, and returns its ID.
func raceOneKey(t *testing.T, f *fixture, key string) string {
	const n = 32
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		ids     [n]string
		results [n]*operation.Operation
		created [n]bool
		errs    [n]error
	)
	for i := range n {
		op := newOp()
		op.IdempotencyKey = key
		ids[i] = op.ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], created[i], errs[i] = f.s.Create(f.ctx, op, newRequest([]byte(op.ID)))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Create %d: %v", i, errs[i])
		}
		if created[i] {
			if winner >= 0 {
				t.Fatalf("Creates %d and %d both created an operation with the same key", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no Create with the key created an operation")
	}
	for i := range n {
		if results[i] == nil || results[i].ID != ids[winner] {
			t.Fatalf("Create %d returned %s, want the winner %s", i, idOf(results[i]), ids[winner])
		}
		if i != winner {
			f.expectNotFound(ids[i])
		}
	}
	req, err := f.s.GetRequest(f.ctx, ids[winner])
	if err != nil || string(req.Body) != ids[winner] {
		t.Fatalf("GetRequest(winner) = %q, %v; want the winner's body", reqBody(req), err)
	}
	return ids[winner]
}

func testRequest(t *testing.T, f *fixture) {
	body := make([]byte, 256*4)
	for i := range body {
		body[i] = byte(i)
	}
	req := newRequest(body)
	op := newOp()
	f.create(op, req)
	got, err := f.s.GetRequest(f.ctx, op.ID)
	if err != nil {
		t.Fatalf("GetRequest: %v", err)
	}
	if got.Method != req.Method || got.Path != req.Path || got.RawQuery != req.RawQuery {
		t.Fatalf("GetRequest = %s %s ? %s, want %s %s ? %s", got.Method, got.Path, got.RawQuery, req.Method, req.Path, req.RawQuery)
	}
	if !bytes.Equal(got.Body, body) {
		t.Fatalf("GetRequest body differs (%d bytes, want %d)", len(got.Body), len(body))
	}
	if got.Host != req.Host || got.RemoteAddr != req.RemoteAddr || got.TLS != req.TLS {
		t.Fatalf("GetRequest = host %q, remote %q, TLS %v; want %q, %q, %v", got.Host, got.RemoteAddr, got.TLS, req.Host, req.RemoteAddr, req.TLS)
	}
	if len(got.Header) != len(req.Header) {
		t.Fatalf("GetRequest header = %v, want %v", got.Header, req.Header)
	}
	for k, v := range req.Header {
		if !slices.Equal(got.Header[k], v) {
			t.Fatalf("GetRequest header %s = %q, want %q", k, got.Header[k], v)
		}
	}

	// Each operation keeps its own request; an update leaves it alone.
	op2 := newOp()
	f.create(op2, &operation.Request{Method: "PUT", Path: "/other", Body: []byte{0, 0, 0}})
	f.setStatus(op.ID, operation.Running)
	got, err = f.s.GetRequest(f.ctx, op.ID)
	if err != nil || !bytes.Equal(got.Body, body) {
		t.Fatalf("GetRequest after Update: %v (body equal: %v)", err, err == nil && bytes.Equal(got.Body, body))
	}
	got2, err := f.s.GetRequest(f.ctx, op2.ID)
	if err != nil || got2.Method != "PUT" || got2.Path != "/other" || !bytes.Equal(got2.Body, []byte{0, 0, 0}) ||
		got2.Host != "" || got2.RemoteAddr != "" || got2.TLS {
		t.Fatalf("GetRequest(op2) = %+v, %v", got2, err)
	}
}

func testList(t *testing.T, f *fixture) {
	if ids := f.listAll(opstore.ListOptions{}); len(ids) != 0 {
		t.Fatalf("List of an empty store = %v", ids)
	}
	const n = 25
	var want []string
	for range n {
		op := newOp()
		f.create(op, nil)
		want = append(want, op.ID)
	}
	sort.Strings(want)

	// Default limit: everything on one page, with an empty cursor.
	ops, next, err := f.s.List(f.ctx, opstore.ListOptions{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if next != "" || len(ops) != n {
		t.Fatalf("List with default limit = %d ops, next %q; want %d and \"\"", len(ops), next, n)
	}
	for i, op := range ops {
		if op.ID != want[i] {
			t.Fatalf("List[%d] = %s, want %s (ascending ID order)", i, op.ID, want[i])
		}
		assertSameOp(t, "List entry against Get", f.get(op.ID), op)
	}

	// Paging by 10: 10, 10, 5, ascending, each exactly once.
	var got []string
	opts := opstore.ListOptions{Limit: 10}
	for page := 0; ; page++ {
		ops, next, err := f.s.List(f.ctx, opts)
		if err != nil {
			t.Fatalf("List page %d: %v", page, err)
		}
		wantLen := []int{10, 10, 5}[page]
		if len(ops) != wantLen {
			t.Fatalf("page %d has %d operations, want %d", page, len(ops), wantLen)
		}
		for _, op := range ops {
			got = append(got, op.ID)
		}
		if page == 2 {
			if next != "" {
				t.Fatalf("last page cursor = %q, want \"\"", next)
			}
			break
		}
		if next == "" {
			t.Fatalf("page %d: empty cursor before the end", page)
		}
		opts.After = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged List =\n%v\nwant\n%v", got, want)
	}

	// A page that ends exactly at the last operation.
	got = f.listAll(opstore.ListOptions{Limit: 5})
	if !slices.Equal(got, want) {
		t.Fatalf("List by 5 = %v, want %v", got, want)
	}
	// After the last ID: nothing.
	ops, next, err = f.s.List(f.ctx, opstore.ListOptions{After: want[n-1]})
	if err != nil || len(ops) != 0 || next != "" {
		t.Fatalf("List after the last ID = %d ops, %q, %v; want none", len(ops), next, err)
	}
	// After an ID between two stored ones resumes at the next one.
	ops, _, err = f.s.List(f.ctx, opstore.ListOptions{After: want[3], Limit: 2})
	if err != nil || len(ops) != 2 || ops[0].ID != want[4] || ops[1].ID != want[5] {
		t.Fatalf("List after %s = %v, %v; want %s, %s", want[3], opIDs(ops), err, want[4], want[5])
	}
}

func opIDs(ops []*operation.Operation) []string {
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.ID
	}
	return ids
}

func testListStatusFilter(t *testing.T, f *fixture) {
	byStatus := map[operation.Status][]string{}
	var all []string
	statuses := []operation.Status{operation.Pending, operation.Running, operation.Succeeded}
	for i := range 15 {
		op := f.create(newOp(), nil)
		st := statuses[i%3]
		if st != operation.Pending {
			f.setStatus(op.ID, st)
		}
		byStatus[st] = append(byStatus[st], op.ID)
		all = append(all, op.ID)
	}
	sort.Strings(all)
	for _, ids := range byStatus {
		sort.Strings(ids)
	}
	check := func(what string, filter []operation.Status, want []string) {
		t.Helper()
		for _, limit := range []int{0, 2} {
			got := f.listAll(opstore.ListOptions{Status: filter, Limit: limit})
			if !slices.Equal(got, want) {
				t.Fatalf("%s (limit %d) = %v, want %v", what, limit, got, want)
			}
		}
		ops, _, err := f.s.List(f.ctx, opstore.ListOptions{Status: filter})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, op := range ops {
			if len(filter) > 0 && !slices.Contains(filter, op.Status) {
				t.Fatalf("%s returned %s in status %s", what, op.ID, op.Status)
			}
		}
	}
	check("List running", []operation.Status{operation.Running}, byStatus[operation.Running])
	check("List pending", []operation.Status{operation.Pending}, byStatus[operation.Pending])
	check("List failed", []operation.Status{operation.Failed}, nil)
	union := append(slices.Clone(byStatus[operation.Running]), byStatus[operation.Succeeded]...)
	sort.Strings(union)
	check("List running+succeeded", []operation.Status{operation.Succeeded, operation.Running}, union)
	check("List all statuses", operation.Statuses, all)

	// The filter follows updates: move one operation from pending to failed
	// and one from running to pending.
	p, r := byStatus[operation.Pending][1], byStatus[operation.Running][2]
	f.setStatus(p, operation.Failed)
	f.setStatus(r, operation.Pending)
	wantPending := append(slices.DeleteFunc(slices.Clone(byStatus[operation.Pending]), func(id string) bool { return id == p }), r)
	sort.Strings(wantPending)
	wantRunning := slices.DeleteFunc(slices.Clone(byStatus[operation.Running]), func(id string) bool { return id == r })
	check("List pending after updates", []operation.Status{operation.Pending}, wantPending)
	check("List running after updates", []operation.Status{operation.Running}, wantRunning)
	check("List failed after updates", []operation.Status{operation.Failed}, []string{p})
	// An update that keeps the status keeps the operation in its list once.
	op := f.get(p)
	op.Message = "still failed"
	f.update(op)
	check("List failed after a same-status update", []operation.Status{operation.Failed}, []string{p})
	check("List all after updates", nil, all)
}

func testListPagingWhileChanging(t *testing.T, f *fixture) {
	const n = 20
	var all []string
	for range n {
		all = append(all, f.create(newOp(), nil).ID)
	}
	sort.Strings(all)

	// Filtered by pending+running while operations move from pending to
	// running, both behind and ahead of the cursor: every operation stays in
	// the filter, so each is visited exactly once, in order.
	filter := []operation.Status{operation.Pending, operation.Running}
	var seen []string
	opts := opstore.ListOptions{Status: filter, Limit: 3}
	for page := 0; ; page++ {
		ops, next, err := f.s.List(f.ctx, opts)
		if err != nil {
			t.Fatalf("List page %d: %v", page, err)
		}
		seen = append(seen, opIDs(ops)...)
		// Move the first pending operation behind the cursor and the first
		// pending one ahead of it to running.
		var behind, ahead string
		for _, id := range all {
			if f.get(id).Status != operation.Pending {
				continue
			}
			if next == "" || id <= next {
				if behind == "" {
					behind = id
				}
			} else if ahead == "" {
				ahead = id
			}
		}
		for _, id := range []string{behind, ahead} {
			if id != "" {
				f.setStatus(id, operation.Running)
			}
		}
		if next == "" {
			break
		}
		if page > n {
			t.Fatalf("too many pages")
		}
		opts.After = next
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("filtered paging while changing statuses visited\n%v\nwant each once, in order\n%v", seen, all)
	}

	// Unfiltered, while statuses keep changing: still each exactly once.
	seen = nil
	opts = opstore.ListOptions{Limit: 4}
	i := 0
	for {
		ops, next, err := f.s.List(f.ctx, opts)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		seen = append(seen, opIDs(ops)...)
		for range 3 {
			f.setStatus(all[i%n], []operation.Status{operation.Succeeded, operation.Failed, operation.Pending}[i%3])
			i += 7
		}
		if next == "" {
			break
		}
		opts.After = next
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("unfiltered paging while changing statuses visited\n%v\nwant\n%v", seen, all)
	}
}

func testDeleteExpired(t *testing.T, f *fixture) {
	t0 := now()
	past := t0.Add(-time.Hour)
	mk := func(expires time.Time, key string) *operation.Operation {
		op := newOp()
		op.ExpiresAt = expires
		op.IdempotencyKey = key
		return f.create(op, nil)
	}
	a := mk(past, "")
	future := mk(t0.Add(time.Hour), "future-key")
	never := mk(time.Time{}, "")
	d := mk(past.Add(time.Minute), "expiring-key")
	e := mk(past.Add(2*time.Minute), "")
	justAfter := mk(t0.Add(time.Millisecond), "") // not before now

	n, err := f.deleteExpired(t0, 2)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired(limit 2) = %d, %v; want 2", n, err)
	}
	n, err = f.deleteExpired(t0, 100)
	if err != nil || n != 1 {
		t.Fatalf("second DeleteExpired = %d, %v; want 1", n, err)
	}
	n, err = f.deleteExpired(t0, 100)
	if err != nil || n != 0 {
		t.Fatalf("third DeleteExpired = %d, %v; want 0", n, err)
	}
	for _, op := range []*operation.Operation{a, d, e} {
		f.expectNotFound(op.ID)
	}
	for _, op := range []*operation.Operation{future, never, justAfter} {
		assertSameOp(t, "unexpired operation after DeleteExpired", op, f.get(op.ID))
		if _, err := f.s.GetRequest(f.ctx, op.ID); err != nil {
			t.Fatalf("GetRequest of unexpired %s: %v", op.ID, err)
		}
	}
	if got, want := f.listAll(opstore.ListOptions{}), sorted(future.ID, never.ID, justAfter.ID); !slices.Equal(got, want) {
		t.Fatalf("List after DeleteExpired = %v, want %v", got, want)
	}
	if got := f.listAll(opstore.ListOptions{Status: []operation.Status{operation.Pending}}); len(got) != 3 {
		t.Fatalf("List pending after DeleteExpired = %v, want 3 operations", got)
	}

	// The expired operation's key is free again; the unexpired one's is not.
	fresh := newOp()
	fresh.IdempotencyKey = "expiring-key"
	got, created, err := f.s.Create(f.ctx, fresh, nil)
	if err != nil || !created || got.ID != fresh.ID {
		t.Fatalf("Create with a freed key = %s, %v, %v; want created", idOf(got), created, err)
	}
	again := newOp()
	again.IdempotencyKey = "future-key"
	got, created, err = f.s.Create(f.ctx, again, nil)
	if err != nil || created || got.ID != future.ID {
		t.Fatalf("Create with an unexpired operation's key = %s, %v, %v; want %s, not created", idOf(got), created, err, future.ID)
	}

	// Later, the rest expire.
	n, err = f.deleteExpired(t0.Add(2*time.Hour), 0)
	if err != nil {
		t.Fatalf("DeleteExpired(limit 0): %v", err)
	}
	if n != 0 {
		t.Fatalf("DeleteExpired(limit 0) deleted %d, want 0", n)
	}
	n, err = f.deleteExpired(t0.Add(2*time.Hour), 10)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired two hours later = %d, %v; want 2", n, err)
	}
	f.expectNotFound(future.ID)
	f.expectNotFound(justAfter.ID)
	f.get(never.ID)
	f.get(fresh.ID)
}

func sorted(ids ...string) []string {
	s := slices.Clone(ids)
	sort.Strings(s)
	return s
}

func testDeleteExpiredFollowsUpdates(t *testing.T, f *fixture) {
	t0 := now()
	// Created expired, then given no expiry: kept.
	kept := newOp()
	kept.ExpiresAt = t0.Add(-time.Hour)
	kept = f.create(kept, nil)
	kept.ExpiresAt = time.Time{}
	f.update(kept)
	// Created without expiry, then given one in the past: deleted.
	gone := f.create(newOp(), nil)
	gone.ExpiresAt = t0.Add(-time.Minute)
	f.update(gone)
	// Created expiring later, then moved into the past: deleted.
	moved := newOp()
	moved.ExpiresAt = t0.Add(time.Hour)
	moved = f.create(moved, nil)
	moved.ExpiresAt = t0.Add(-2 * time.Minute)
	f.update(moved)
	// Created expired, then pushed into the future: kept.
	pushed := newOp()
	pushed.ExpiresAt = t0.Add(-3 * time.Minute)
	pushed = f.create(pushed, nil)
	pushed.ExpiresAt = t0.Add(time.Hour)
	f.update(pushed)

	n, err := f.deleteExpired(t0, 100)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
	}
	f.expectNotFound(gone.ID)
	f.expectNotFound(moved.ID)
	assertSameOp(t, "operation whose expiry was cleared", kept, f.get(kept.ID))
	assertSameOp(t, "operation whose expiry was pushed back", pushed, f.get(pushed.ID))
}

// testAllFieldsRoundTrip checks that every field of an operation,
// including the attempt history, the failure counts, the tombstone time,
// the result's status and headers and the problems' extensions, comes
// back equal from Get, List, Update and DeleteExpired, and every field of
// a request from GetRequest.
func testAllFieldsRoundTrip(t *testing.T, f *fixture) {
	t0 := now()
	op := fullOp()
	op.ExpiresAt = t0.Add(-time.Minute)
	op.TombstoneUntil = t0.Add(time.Hour)
	req := newRequest([]byte("all fields"))
	want := op.Clone()
	want.Version = 1
	stored := f.create(op, req)
	assertSameOp(t, "Create's returned operation", want, stored)
	assertSameOp(t, "Get after Create", want, f.get(op.ID))

	ops, _, err := f.s.List(f.ctx, opstore.ListOptions{})
	if err != nil || len(ops) != 1 {
		t.Fatalf("List = %d operations, %v; want 1", len(ops), err)
	}
	assertSameOp(t, "List entry", want, ops[0])
	ops, _, err = f.s.List(f.ctx, opstore.ListOptions{Status: []operation.Status{operation.Failed}})
	if err != nil || len(ops) != 1 {
		t.Fatalf("List failed = %d operations, %v; want 1", len(ops), err)
	}
	assertSameOp(t, "filtered List entry", want, ops[0])

	got, err := f.s.GetRequest(f.ctx, op.ID)
	if err != nil {
		t.Fatalf("GetRequest: %v", err)
	}
	if got.Method != req.Method || got.Path != req.Path || got.RawQuery != req.RawQuery || !bytes.Equal(got.Body, req.Body) ||
		got.Host != req.Host || got.RemoteAddr != req.RemoteAddr || got.TLS != req.TLS || len(got.Header) != len(req.Header) {
		t.Fatalf("GetRequest = %+v, want %+v", got, req)
	}

	// Update changes the new fields and keeps them.
	upd := f.get(op.ID)
	upd.Failures++
	upd.Interruptions++
	upd.AddAttempt(operation.Attempt{Number: 3, StartedAt: t0, EndedAt: t0.Add(time.Second), Outcome: operation.OutcomeFailed,
		Error: &operation.Problem{Type: "urn:arr:timeout", Title: "Timed out", Extensions: map[string]any{"timeoutSeconds": 30.0, "nested": map[string]any{"a": "b"}}}})
	upd.Result.Header.Add("X-Multi", "c")
	upd.Result.StatusCode = 202
	upd.Error.Extensions = map[string]any{"upstreamStatus": 504.0}
	upd.TombstoneUntil = t0.Add(2 * time.Hour)
	f.update(upd)
	assertSameOp(t, "Get after Update", upd, f.get(op.ID))

	// And an update that clears them clears them.
	cleared := upd.Clone()
	cleared.Failures, cleared.Interruptions, cleared.History = 0, 0, nil
	cleared.Result.StatusCode, cleared.Result.Header = 0, nil
	cleared.Error.Extensions = nil
	cleared.TombstoneUntil = time.Time{}
	f.update(cleared)
	assertSameOp(t, "Get after an Update that cleared the new fields", cleared, f.get(op.ID))
	upd.Version = cleared.Version
	f.update(upd)
	assertSameOp(t, "Get after an Update that set them again", upd, f.get(op.ID))

	f.reopen()
	assertSameOp(t, "Get after reopen", upd, f.get(op.ID))

	deleted, err := f.s.DeleteExpired(f.ctx, t0, 10)
	if err != nil || len(deleted) != 1 {
		t.Fatalf("DeleteExpired = %d operations, %v; want 1", len(deleted), err)
	}
	assertSameOp(t, "operation returned by DeleteExpired", upd, deleted[0])
}

// testTombstones checks that an operation deleted with a TombstoneUntil
// ahead leaves its id gone (ErrGone, and ErrExists for Create) until
// DeleteExpired purges the tombstone after its time, and that one
// without leaves nothing.
func testTombstones(t *testing.T, f *fixture) {
	t0 := now()
	mk := func(tombstone time.Time) *operation.Operation {
		op := newOp()
		op.Status = operation.Succeeded
		op.ExpiresAt = t0.Add(-time.Minute)
		op.TombstoneUntil = tombstone
		op.IdempotencyKey = "key-" + op.ID
		return f.create(op, nil)
	}
	keep := newOp()                             // not expired
	keep.TombstoneUntil = t0.Add(2 * time.Hour) // (its tombstone time does not matter yet)
	f.create(keep, nil)
	none := mk(time.Time{})                 // no tombstone
	before := mk(t0.Add(-2 * time.Minute))  // before ExpiresAt: no tombstone
	passed := mk(t0.Add(-30 * time.Second)) // after ExpiresAt, before now: no tombstone
	gone := mk(t0.Add(time.Hour))           // a tombstone until then; the highest id
	ch, _ := f.watch(gone.ID)

	n, err := f.deleteExpired(t0, 100)
	if err != nil || n != 4 {
		t.Fatalf("DeleteExpired = %d, %v; want 4", n, err)
	}
	expectWake(t, "deletion of an operation that leaves a tombstone", ch)
	f.expectGone(gone.ID)
	for _, op := range []*operation.Operation{none, before, passed} {
		f.expectNotFound(op.ID)
	}
	f.get(keep.ID)

	// The id cannot be created again while it is gone, not even with the
	// key its operation held (the key itself is free).
	again := newOp()
	again.ID = gone.ID
	if _, _, err := f.s.Create(f.ctx, again, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of a gone id = %v, want ErrExists", err)
	}
	again.IdempotencyKey = gone.IdempotencyKey
	if _, _, err := f.s.Create(f.ctx, again, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of a gone id with its old key = %v, want ErrExists", err)
	}
	f.expectGone(gone.ID)
	// An update of a gone operation finds nothing.
	upd := gone.Clone()
	upd.Message = "after deletion"
	if err := f.s.Update(f.ctx, upd); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("Update of a gone operation = %v, want ErrNotFound", err)
	}
	// A deleted id without a tombstone can be created again.
	reborn := newOp()
	reborn.ID = none.ID
	if _, created, err := f.s.Create(f.ctx, reborn, nil); err != nil || !created {
		t.Fatalf("Create of a deleted id without a tombstone = %v, %v; want created", created, err)
	}

	// Tombstones are durable, and a reopened store still refuses the id
	// (the highest ever created).
	f.reopen()
	f.expectGone(gone.ID)
	again.IdempotencyKey = ""
	if _, _, err := f.s.Create(f.ctx, again, nil); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("Create of a gone id after reopen = %v, want ErrExists", err)
	}
	other := newOp()
	other.IdempotencyKey = gone.IdempotencyKey
	if _, created, err := f.s.Create(f.ctx, other, nil); err != nil || !created {
		t.Fatalf("Create with a gone operation's key = %v, %v; want created", created, err)
	}

	// Before its time, DeleteExpired keeps it.
	if n, err := f.deleteExpired(t0.Add(30*time.Minute), 100); err != nil || n != 0 {
		t.Fatalf("DeleteExpired before the tombstone's time = %d, %v; want 0", n, err)
	}
	f.expectGone(gone.ID)
	// After it, DeleteExpired purges it (and returns no operation for it).
	if n, err := f.deleteExpired(t0.Add(90*time.Minute), 100); err != nil || n != 0 {
		t.Fatalf("DeleteExpired after the tombstone's time = %d, %v; want 0", n, err)
	}
	f.expectNotFound(gone.ID)
	f.reopen()
	f.expectNotFound(gone.ID)
	// The id is free again.
	if _, created, err := f.s.Create(f.ctx, again, nil); err != nil || !created {
		t.Fatalf("Create of a purged id = %v, %v; want created", created, err)
	}
	f.get(keep.ID)
}

// testTombstonesPurgedInBatches checks the limit accounting of
// DeleteExpired: each call purges at most limit tombstones whose time has
// passed (all of them when fewer), apart from the operations it deletes
// and returns, which the tombstones do not count against.
func testTombstonesPurgedInBatches(t *testing.T, f *fixture) {
	const nGone, nLater, limit = 500, 150, 100
	t0 := now()
	create := func(n int, expires, tombstone time.Time) []string {
		ids := make([]string, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 10 {
			wg.Go(func() {
				for i := w; i < n; i += 10 {
					op := newOp()
					op.ExpiresAt, op.TombstoneUntil = expires, tombstone
					ids[i] = op.ID
					if _, _, err := f.s.Create(f.ctx, op, nil); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("Create: %v", err)
		}
		return ids
	}
	goneIDs := create(nGone, t0.Add(-time.Minute), t0.Add(time.Hour))
	if n, err := f.deleteExpired(t0, 2*nGone); err != nil || n != nGone {
		t.Fatalf("DeleteExpired = %d, %v; want %d", n, err, nGone)
	}
	stillGone := func() int {
		t.Helper()
		n := 0
		for _, id := range goneIDs {
			_, err := f.s.Get(f.ctx, id)
			switch {
			case errors.Is(err, opstore.ErrGone):
				n++
			case !errors.Is(err, opstore.ErrNotFound):
				t.Fatalf("Get(%s) = %v, want ErrGone or ErrNotFound", id, err)
			}
		}
		return n
	}
	if n := stillGone(); n != nGone {
		t.Fatalf("%d of %d deleted operations are gone, want all", n, nGone)
	}

	// Operations that expire after t0 but before the purges' time, without
	// tombstones: returned up to limit per call, whatever the purge did.
	create(nLater, t0.Add(30*time.Minute), time.Time{})
	later := t0.Add(2 * time.Hour)
	wantOps := []int{limit, nLater - limit, 0, 0, 0, 0}
	for call, want := range wantOps {
		n, err := f.deleteExpired(later, limit)
		if err != nil || n != want {
			t.Fatalf("DeleteExpired call %d = %d operations, %v; want %d", call+1, n, err, want)
		}
		if left, wantLeft := stillGone(), max(nGone-(call+1)*limit, 0); left != wantLeft {
			t.Fatalf("after DeleteExpired call %d with limit %d, %d tombstones left, want %d", call+1, limit, left, wantLeft)
		}
	}
	if ids := f.listAll(opstore.ListOptions{}); len(ids) != 0 {
		t.Fatalf("List after everything expired = %d operations, want none", len(ids))
	}
}

func (f *fixture) watch(id string) (<-chan struct{}, func()) {
	f.t.Helper()
	ch, stop, err := f.s.Watch(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Watch(%s): %v", id, err)
	}
	f.t.Cleanup(stop)
	return ch, stop
}

func testWatch(t *testing.T, f *fixture) {
	a := f.create(newOp(), nil)
	b := f.create(newOp(), nil)
	ch, stop := f.watch(a.ID)
	if cap(ch) > 1 {
		t.Fatalf("Watch channel has a buffer of %d, want at most 1", cap(ch))
	}
	expectQuiet(t, "watch with no change", ch)

	a.Message = "one"
	f.update(a)
	expectWake(t, "update of the watched operation", ch)

	// Other operations do not wake it; new ones neither.
	b.Message = "x"
	f.update(b)
	f.create(newOp(), nil)
	expectQuiet(t, "update of another operation", ch)

	// A burst of updates coalesces into one pending value.
	for i := range 5 {
		a.PercentComplete = i * 10
		f.update(a)
	}
	time.Sleep(quietFor) // let asynchronous drivers deliver everything
	if len(ch) != 1 {
		t.Fatalf("after 5 updates the channel holds %d values, want 1 (coalesced)", len(ch))
	}
	<-ch
	expectQuiet(t, "after draining a coalesced burst", ch)

	// Two watchers of one operation are both woken.
	ch2, stop2 := f.watch(a.ID)
	a.Message = "two"
	f.update(a)
	expectWake(t, "first watcher of two", ch)
	expectWake(t, "second watcher of two", ch2)

	// After stop, nothing more arrives; stop is idempotent.
	stop()
	stop()
	a.Message = "three"
	f.update(a)
	expectWake(t, "remaining watcher after the other stopped", ch2)
	expectQuiet(t, "stopped watcher", ch)
	stop2()
	a.Message = "four"
	f.update(a)
	expectQuiet(t, "second stopped watcher", ch2)

	// Watching an operation that does not exist yet sees its creation or
	// its later updates (a watch may be taken before the operation exists).
	later := newOp()
	ch3, _ := f.watch(later.ID)
	f.create(later, nil)
	later.Version = 1
	later.Message = "updated"
	f.update(later)
	expectWake(t, "watch taken before the operation existed", ch3)
}

func testWatchDeletion(t *testing.T, f *fixture) {
	op := newOp()
	op.ExpiresAt = now().Add(-time.Minute)
	f.create(op, nil)
	other := newOp()
	other.ExpiresAt = now().Add(time.Hour)
	f.create(other, nil)
	ch, _ := f.watch(op.ID)
	chOther, _ := f.watch(other.ID)
	if n, err := f.deleteExpired(now(), 10); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	expectWake(t, "deletion of the watched operation", ch)
	expectQuiet(t, "deletion of another operation", chOther)
}

func testWatchNeverMisses(t *testing.T, f *fixture) {
	op := f.create(newOp(), nil)
	st := f.s

	// Subscribe, then update concurrently: the update is always seen.
	for i := range 20 {
		ch, stop := f.watch(op.ID)
		done := make(chan error, 1)
		go func() {
			_, err := st.Transition(f.ctx, op.ID, func(o *operation.Operation) error {
				o.PercentComplete = i
				return nil
			})
			done <- err
		}()
		expectWake(t, fmt.Sprintf("concurrent update %d", i), ch)
		if err := <-done; err != nil {
			t.Fatalf("Transition: %v", err)
		}
		stop()
	}

	// The waiting pattern clients use — watch, read, wait — reaches the
	// final state of a writer that runs concurrently, without polling.
	const target = 30
	writerDone := make(chan error, 1)
	go func() {
		for range target {
			if _, err := st.Transition(f.ctx, op.ID, func(o *operation.Operation) error {
				o.Attempts++
				return nil
			}); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ch, stop, err := f.s.Watch(f.ctx, op.ID)
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		cur := f.get(op.ID)
		if cur.Attempts == target {
			stop()
			break
		}
		select {
		case <-ch:
		case <-time.After(wakeWithin):
			stop()
			t.Fatalf("waiter saw Attempts=%d and then no notification within %v (target %d)", cur.Attempts, wakeWithin, target)
		}
		stop()
		if time.Now().After(deadline) {
			t.Fatalf("waiter did not reach the final state")
		}
	}
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}

	// The portable WaitFor does the same: woken by the writer's changes,
	// it returns the state it waited for.
	const target2 = 2 * target
	go func() {
		for range target2 - target {
			if _, err := st.Transition(f.ctx, op.ID, func(o *operation.Operation) error {
				o.Attempts++
				return nil
			}); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	got, err := st.WaitFor(f.ctx, op.ID, 30*time.Second, func(o *operation.Operation) bool { return o.Attempts == target2 })
	if err != nil || got == nil || got.Attempts != target2 {
		t.Fatalf("WaitFor(Attempts == %d) = %s, %v", target2, opString(got), err)
	}
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	never := func(*operation.Operation) bool { return false }
	// A wait of 0 is one read.
	if got, err := st.WaitFor(f.ctx, op.ID, 0, never); err != nil || got == nil || got.Attempts != target2 {
		t.Fatalf("WaitFor(0) = %s, %v; want the operation, one read", opString(got), err)
	}
	// When the wait passes, the last read and no error.
	start := time.Now()
	if got, err := st.WaitFor(f.ctx, op.ID, quietFor, never); err != nil || got == nil || got.Attempts != target2 {
		t.Fatalf("WaitFor(%v) that never holds = %s, %v; want the operation and no error", quietFor, opString(got), err)
	}
	if el := time.Since(start); el < quietFor {
		t.Fatalf("WaitFor(%v) that never holds returned after %v", quietFor, el)
	}
	// When ctx ends first, its error.
	cctx, cancel := context.WithTimeout(f.ctx, wakeWithin/2)
	defer cancel()
	if _, err := st.WaitFor(cctx, op.ID, time.Minute, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor past its context's deadline = %v, want context.DeadlineExceeded", err)
	}
	// An unknown id is ErrNotFound.
	if got, err := st.WaitFor(f.ctx, NewID(), time.Minute, never); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("WaitFor of an unknown id = %s, %v; want ErrNotFound", opString(got), err)
	}
}

// opString is dump, or "<nil>".
func opString(op *operation.Operation) string {
	if op == nil {
		return "<nil>"
	}
	return dump(op)
}

func testReopen(t *testing.T, f *fixture) {
	a := fullOp()
	a = f.create(a, newRequest([]byte("a's body")))
	a.Status = operation.Succeeded
	a.Message = "done"
	f.update(a)
	b := newOp()
	b.IdempotencyKey = "reopen-key"
	b = f.create(b, newRequest([]byte{0xff, 0x00, 0xfe}))
	expired := newOp()
	expired.ExpiresAt = now().Add(-time.Hour)
	expired = f.create(expired, nil)

	f.reopen()
	f.reopen() // twice: a store opened and closed without writes loses nothing either

	assertSameOp(t, "Get after reopen", a, f.get(a.ID))
	assertSameOp(t, "Get after reopen", b, f.get(b.ID))
	req, err := f.s.GetRequest(f.ctx, b.ID)
	if err != nil || !bytes.Equal(req.Body, []byte{0xff, 0x00, 0xfe}) || req.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GetRequest after reopen = %+v, %v", req, err)
	}
	// Indexes survive: the key, the status filter, the expiry.
	dup := newOp()
	dup.IdempotencyKey = "reopen-key"
	got, created, err := f.s.Create(f.ctx, dup, nil)
	if err != nil || created || got.ID != b.ID {
		t.Fatalf("Create with a held key after reopen = %s, %v, %v; want %s, not created", idOf(got), created, err, b.ID)
	}
	if ids := f.listAll(opstore.ListOptions{Status: []operation.Status{operation.Succeeded}}); !slices.Equal(ids, []string{a.ID}) {
		t.Fatalf("List succeeded after reopen = %v, want [%s]", ids, a.ID)
	}
	if ids := f.listAll(opstore.ListOptions{}); !slices.Equal(ids, sorted(a.ID, b.ID, expired.ID)) {
		t.Fatalf("List after reopen = %v", ids)
	}
	// Versions continue.
	b.Message = "after reopen"
	f.update(b)
	if b.Version != 2 {
		t.Fatalf("Version after an update following reopen = %d, want 2", b.Version)
	}
	if n, err := f.deleteExpired(now(), 10); err != nil || n != 1 {
		t.Fatalf("DeleteExpired after reopen = %d, %v; want 1", n, err)
	}
	f.reopen()
	f.expectNotFound(expired.ID)
	assertSameOp(t, "Get after the second reopen", b, f.get(b.ID))
}

func testConcurrentTransitions(t *testing.T, f *fixture) {
	op := f.create(newOp(), nil)
	st := f.s
	const workers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := st.Transition(f.ctx, op.ID, func(o *operation.Operation) error {
					o.Attempts++
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Transition: %v", err)
	}
	got := f.get(op.ID)
	if got.Attempts != workers*each {
		t.Fatalf("Attempts after %d concurrent increments = %d (lost updates)", workers*each, got.Attempts)
	}
	if got.Version != 1+workers*each {
		t.Fatalf("Version after %d updates = %d, want %d", workers*each, got.Version, 1+workers*each)
	}

	// ErrSkip writes nothing.
	before := f.get(op.ID)
	cur, err := st.Transition(f.ctx, op.ID, func(o *operation.Operation) error { return opstore.ErrSkip })
	if !errors.Is(err, opstore.ErrSkip) || cur.Version != before.Version {
		t.Fatalf("skipped Transition = v%d, %v", cur.Version, err)
	}
	if got := f.get(op.ID); got.Version != before.Version {
		t.Fatalf("skipped Transition wrote: version %d → %d", before.Version, got.Version)
	}
}

func testClosed(t *testing.T, f *fixture) {
	op := f.create(newOp(), nil)
	s := f.s
	f.s = nil
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Get(f.ctx, op.ID); err == nil {
		t.Fatalf("Get after Close succeeded")
	}
	if _, _, err := s.Create(f.ctx, newOp(), nil); err == nil {
		t.Fatalf("Create after Close succeeded")
	}
	if err := s.Update(f.ctx, op); err == nil {
		t.Fatalf("Update after Close succeeded")
	}
	f.open()
	f.get(op.ID)
}

// receiveAll receives from q until wait passes with nothing new, acking
// everything, and returns the messages by ID.
func receiveAll(t *testing.T, ctx context.Context, q qdriver.Queue, wait time.Duration) map[string]qdriver.Message {
	t.Helper()
	got := map[string]qdriver.Message{}
	for {
		rctx, cancel := context.WithTimeout(ctx, wait)
		ds, err := q.Receive(rctx, 100, time.Minute)
		cancel()
		if err != nil {
			if rctx.Err() != nil && ctx.Err() == nil {
				return got
			}
			t.Fatalf("Receive: %v", err)
		}
		for _, d := range ds {
			m := d.Message()
			if _, dup := got[m.ID]; dup {
				t.Fatalf("message %s delivered twice", m.ID)
			}
			got[m.ID] = m
			if err := d.Ack(ctx); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
	}
}

func testSubmitAtomic(t *testing.T, f *fixture) {
	q := f.queue()
	as := f.submitter()

	op := newOp()
	op.IdempotencyKey = "submit-key"
	stored, created, err := as.SubmitAtomic(f.ctx, op, newRequest([]byte("payload")), qdriver.Message{ID: op.ID, Body: []byte("msg " + op.ID)})
	if err != nil || !created || stored.Version != 1 || stored.ID != op.ID {
		t.Fatalf("SubmitAtomic = %s v%d, %v, %v", idOf(stored), versionOf(stored), created, err)
	}
	f.get(op.ID)

	// Same key again: the held operation, nothing stored, nothing enqueued.
	dup := newOp()
	dup.IdempotencyKey = "submit-key"
	got, created, err := as.SubmitAtomic(f.ctx, dup, newRequest([]byte("other")), qdriver.Message{ID: dup.ID, Body: []byte("msg " + dup.ID)})
	if err != nil || created || got.ID != op.ID {
		t.Fatalf("SubmitAtomic with a held key = %s, %v, %v; want %s, not created", idOf(got), created, err, op.ID)
	}
	f.expectNotFound(dup.ID)

	// Same ID again: ErrExists, and no message.
	same := newOp()
	same.ID = op.ID
	if _, _, err := as.SubmitAtomic(f.ctx, same, nil, qdriver.Message{ID: "other-message", Body: []byte("x")}); !errors.Is(err, opstore.ErrExists) {
		t.Fatalf("SubmitAtomic of an existing ID = %v, want ErrExists", err)
	}

	// A second operation, to check after reopen.
	op2 := newOp()
	if _, created, err := as.SubmitAtomic(f.ctx, op2, newRequest([]byte("payload 2")), qdriver.Message{ID: op2.ID, Body: []byte("msg " + op2.ID)}); err != nil || !created {
		t.Fatalf("second SubmitAtomic = %v, %v", created, err)
	}

	// Both messages survive a reopen, and exactly those two were enqueued.
	f.reopen()
	q = f.queue()
	f.get(op.ID)
	f.get(op2.ID)
	req, err := f.s.GetRequest(f.ctx, op2.ID)
	if err != nil || string(req.Body) != "payload 2" {
		t.Fatalf("GetRequest after reopen = %q, %v", reqBody(req), err)
	}
	msgs := receiveAll(t, f.ctx, q, time.Second)
	if len(msgs) != 2 || string(msgs[op.ID].Body) != "msg "+op.ID || string(msgs[op2.ID].Body) != "msg "+op2.ID {
		t.Fatalf("messages after SubmitAtomic and reopen = %v; want exactly %s and %s with their bodies", msgs, op.ID, op2.ID)
	}
}

func versionOf(op *operation.Operation) int64 {
	if op == nil {
		return 0
	}
	return op.Version
}

// testTransitionEnqueue checks engine.Atomic's TransitionEnqueue: the
// change and the message are written together (both survive a reopen), a
// change that fails writes neither, and UpdatedAt is set.
func testTransitionEnqueue(t *testing.T, f *fixture) {
	q := f.queue()
	as := f.submitter()
	op := newOp()
	op.Status = operation.Failed
	f.create(op, nil)
	msgOf := func(o *operation.Operation) qdriver.Message {
		return qdriver.Message{ID: o.ID, Body: []byte("retry " + string(o.Status))}
	}

	// A change that refuses writes nothing and enqueues nothing.
	refuse := errors.New("not now")
	if _, err := as.TransitionEnqueue(f.ctx, op.ID, func(*operation.Operation) error { return refuse }, msgOf); !errors.Is(err, refuse) {
		t.Fatalf("TransitionEnqueue with a refusing change = %v, want its error", err)
	}
	if got := receiveAll(t, f.ctx, q, 200*time.Millisecond); len(got) != 0 {
		t.Fatalf("a refused TransitionEnqueue enqueued %v", got)
	}
	if got := f.get(op.ID); got.Version != 1 || got.Status != operation.Failed {
		t.Fatalf("a refused TransitionEnqueue changed the operation: %+v", got)
	}

	before := time.Now().Add(-time.Second)
	got, err := as.TransitionEnqueue(f.ctx, op.ID, func(o *operation.Operation) error {
		o.Status = operation.Pending
		return nil
	}, msgOf)
	if err != nil || got.Version != 2 || got.Status != operation.Pending || got.UpdatedAt.Before(before) {
		t.Fatalf("TransitionEnqueue = %+v, %v; want version 2, pending, UpdatedAt set", got, err)
	}
	if _, err := as.TransitionEnqueue(f.ctx, NewID(), func(*operation.Operation) error { return nil }, msgOf); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("TransitionEnqueue of an unknown id = %v, want ErrNotFound", err)
	}

	// Both the change and the message survive a reopen.
	f.reopen()
	q = f.queue()
	if got := f.get(op.ID); got.Version != 2 || got.Status != operation.Pending {
		t.Fatalf("after reopen: %+v, want version 2, pending", got)
	}
	msgs := receiveAll(t, f.ctx, q, time.Second)
	if len(msgs) != 1 || string(msgs[op.ID].Body) != "retry pending" {
		t.Fatalf("messages after TransitionEnqueue and reopen = %v; want exactly %s with the changed operation's body", msgs, op.ID)
	}
}

// testLazyUpdate checks the portable TransitionLazy and Sync on every
// driver, and driver.LazyUpdater when the driver has it: the same version
// check as Update, visible at once, durable after the next synced write (or
// a Sync) and a clean reopen.
func testLazyUpdate(t *testing.T, f *fixture) {
	// TransitionLazy (over the driver's TransitionOp or UpdateLazy when it
	// has them, Transition otherwise): visible at once with its new version
	// and UpdatedAt, and durable after Sync.
	old := newOp()
	old.UpdatedAt = now().Add(-time.Hour)
	tl := f.create(old, nil)
	start := time.Now().Add(-time.Second)
	got, err := f.s.TransitionLazy(f.ctx, tl.ID, func(o *operation.Operation) error {
		o.Message = "lazy transition"
		o.PercentComplete = 50
		return nil
	})
	if err != nil || got == nil || got.Version != 2 || got.Message != "lazy transition" || got.UpdatedAt.Before(start) {
		t.Fatalf("TransitionLazy = %s, %v; want version 2, the change, UpdatedAt set", opString(got), err)
	}
	if stored := f.get(tl.ID); stored.Version != 2 || stored.Message != "lazy transition" || stored.PercentComplete != 50 || stored.UpdatedAt.Before(start) {
		t.Fatalf("Get after TransitionLazy = %s; want %s", dump(stored), dump(got))
	}
	cur, err := f.s.TransitionLazy(f.ctx, tl.ID, func(o *operation.Operation) error {
		o.Message = "not written"
		return opstore.ErrSkip
	})
	if !errors.Is(err, opstore.ErrSkip) || cur == nil || cur.Version != 2 {
		t.Fatalf("skipped TransitionLazy = %s, %v; want version 2, ErrSkip", opString(cur), err)
	}
	if _, err := f.s.TransitionLazy(f.ctx, NewID(), func(*operation.Operation) error { return nil }); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("TransitionLazy of an unknown id = %v, want ErrNotFound", err)
	}
	if err := f.s.Sync(f.ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	f.reopen()
	if stored := f.get(tl.ID); stored.Version != 2 || stored.Message != "lazy transition" || stored.PercentComplete != 50 {
		t.Fatalf("after TransitionLazy, Sync and reopen: %s", dump(stored))
	}

	l, ok := f.s.Driver().(driver.LazyUpdater)
	if !ok {
		t.Skip("the driver has no lazy updates (optional); TransitionLazy and Sync were checked through the portable store")
	}
	op := f.create(newOp(), nil)
	op.Message = "lazy"
	if err := l.UpdateLazy(f.ctx, op); err != nil {
		t.Fatalf("UpdateLazy: %v", err)
	}
	if op.Version != 2 {
		t.Fatalf("Version after UpdateLazy = %d, want 2", op.Version)
	}
	assertSameOp(t, "Get after UpdateLazy", op, f.get(op.ID))
	stale := op.Clone()
	stale.Version = 1
	if err := l.UpdateLazy(f.ctx, stale); !errors.Is(err, opstore.ErrConflict) {
		t.Fatalf("UpdateLazy with a stale version = %v, want ErrConflict", err)
	}
	f.create(newOp(), nil) // a synced write
	f.reopen()
	l = f.s.Driver().(driver.LazyUpdater)
	if got := f.get(op.ID); got.Message != "lazy" || got.Version != 2 {
		t.Fatalf("after a synced write and reopen: %s", dump(got))
	}

	// UpdateLazy, then the portable Sync (the driver's Syncer, which a
	// driver with lazy writes has): durable across a reopen.
	if _, ok := f.s.Driver().(driver.Syncer); !ok {
		t.Fatalf("the driver has lazy updates but no Sync (driver.Syncer)")
	}
	op.Message = "lazy, then synced"
	if err := l.UpdateLazy(f.ctx, op); err != nil || op.Version != 3 {
		t.Fatalf("UpdateLazy = %v, version %d; want version 3", err, op.Version)
	}
	if err := f.s.Sync(f.ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	f.reopen()
	assertSameOp(t, "Get after UpdateLazy, Sync and reopen", op, f.get(op.ID))
}

// testTransitionOp checks driver.Transitioner, when the driver has it, and
// the portable Transition and TransitionLazy over it.
func testTransitionOp(t *testing.T, f *fixture) {
	tr, ok := f.s.Driver().(driver.Transitioner)
	if !ok {
		t.Skip("the driver has no one-step transitions (optional)")
	}
	op := f.create(newOp(), nil)
	for _, lazy := range []bool{false, true} {
		got, err := tr.TransitionOp(f.ctx, op.ID, func(o *operation.Operation) error {
			o.PercentComplete += 10
			o.Version = 99 // ignored: the store sets versions
			return nil
		}, lazy)
		if err != nil {
			t.Fatalf("TransitionOp(lazy=%v): %v", lazy, err)
		}
		stored := f.get(op.ID)
		if got.Version != stored.Version || stored.PercentComplete != got.PercentComplete {
			t.Fatalf("TransitionOp returned %s, stored %s", dump(got), dump(stored))
		}
	}
	if got := f.get(op.ID); got.Version != 3 || got.PercentComplete != op.PercentComplete+20 {
		t.Fatalf("after two transitions: %s", dump(got))
	}
	// An error from change writes nothing and comes back.
	boom := errors.New("boom")
	if _, err := tr.TransitionOp(f.ctx, op.ID, func(o *operation.Operation) error {
		o.Message = "not written"
		return boom
	}, false); !errors.Is(err, boom) {
		t.Fatalf("TransitionOp with a failing change = %v, want it back", err)
	}
	if got := f.get(op.ID); got.Message != op.Message || got.Version != 3 {
		t.Fatalf("a failed change was written: %s", dump(got))
	}
	if _, err := tr.TransitionOp(f.ctx, NewID(), func(*operation.Operation) error { return nil }, false); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("TransitionOp of a missing id = %v, want ErrNotFound", err)
	}
	// Concurrent transitions do not lose increments.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if _, err := tr.TransitionOp(f.ctx, op.ID, func(o *operation.Operation) error { o.Attempts++; return nil }, true); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := f.get(op.ID); got.Attempts != op.Attempts+80 || got.Version != 83 {
		t.Fatalf("after 80 concurrent transitions: Attempts %d Version %d", got.Attempts, got.Version)
	}

	// The portable Transition and TransitionLazy go through TransitionOp:
	// the same, and UpdatedAt set (TransitionOp itself leaves it alone: the
	// first transition below sets it an hour back).
	old := now().Add(-time.Hour)
	if _, err := tr.TransitionOp(f.ctx, op.ID, func(o *operation.Operation) error { o.UpdatedAt = old; return nil }, false); err != nil {
		t.Fatalf("TransitionOp: %v", err)
	}
	for _, lazy := range []bool{false, true} {
		transition := f.s.Transition
		if lazy {
			transition = f.s.TransitionLazy
		}
		before := f.get(op.ID)
		start := time.Now().Add(-time.Second)
		got, err := transition(f.ctx, op.ID, func(o *operation.Operation) error {
			o.PercentComplete++
			return nil
		})
		if err != nil {
			t.Fatalf("portable transition (lazy=%v): %v", lazy, err)
		}
		stored := f.get(op.ID)
		if got.Version != before.Version+1 || stored.Version != got.Version || stored.PercentComplete != before.PercentComplete+1 ||
			got.UpdatedAt.Before(start) || stored.UpdatedAt.Before(start) {
			t.Fatalf("portable transition (lazy=%v) from %s returned %s, stored %s; want the next version, the change, UpdatedAt set", lazy, dump(before), dump(got), dump(stored))
		}
	}
	before := f.get(op.ID)
	if _, err := f.s.Transition(f.ctx, op.ID, func(o *operation.Operation) error {
		o.Message = "not written"
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("portable Transition with a failing change = %v, want it back", err)
	}
	if got := f.get(op.ID); got.Message != before.Message || got.Version != before.Version {
		t.Fatalf("a failed portable change was written: %s", dump(got))
	}
	if _, err := f.s.TransitionLazy(f.ctx, NewID(), func(*operation.Operation) error { return nil }); !errors.Is(err, opstore.ErrNotFound) {
		t.Fatalf("portable TransitionLazy of a missing id = %v, want ErrNotFound", err)
	}
}
