package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/arrhq/arr/internal/watch"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore/driver"
)

// Key prefixes in the bucket (see the package doc).
const (
	kOp    = "o."
	kReq   = "r."
	kIdem  = "k."
	kGone  = "g."
	kExp   = "x."
	kPurge = "t."
	kOwner = "w."
	kDue   = "c."
)

// ownerKey is the owner index entry of operation id: "w.<owner token>.<id
// token>", no value. One owner's entries are the keys under
// "w.<owner token>.", which List reads with a subject filter.
func ownerKey(owner, id string) string { return kOwner + token(owner) + "." + token(id) }

// dueKey is the callback index entry of operation id: "c.<id token>", no
// value. It exists while the operation owes a callback (a non-zero
// CallbackDueAt), and maybe while it does not: see DueCallbacks.
func dueKey(id string) string { return kDue + token(id) }

// dueGrace is how long DueCallbacks keeps an index entry whose operation
// does not exist: a Create that put the entry may still write the
// operation. A Create whose operation write completes later than
// dueGrace/4 after its entry's put puts the entry again.
var dueGrace = time.Minute // a variable for tests

// claimGrace is how long an idempotency key claimed by a Create whose
// operation does not exist yet is left to that Create before another
// Create takes the key over (the claimer crashed).
const claimGrace = 10 * time.Second

// ErrClosed is returned by a closed Store.
var ErrClosed = errors.New("natsjs: store closed")

// Store is an opstore/driver.Store on a JetStream KV bucket; see the
// package doc.
type Store struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	stream  jetstream.Stream
	bucket  string
	subjPre string // "$KV.<bucket>."
	release func()
	closed  atomic.Bool

	hub      watch.Hub
	stopHub  context.CancelFunc
	unlisten func()

	// stripes serialize this process's read-and-revision-checked writes
	// of one key (see lock): nats-server before 2.9.21 checks a clustered
	// stream's expected last subject sequence outside of Raft, so two
	// concurrent revision-checked writes could both succeed.
	stripes [256]sync.Mutex
}

// lock takes the stripe of key; callers hold at most one stripe at a time.
func (s *Store) lock(key string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &s.stripes[h.Sum32()%uint32(len(s.stripes))]
	m.Lock()
	return m.Unlock
}

var (
	_ driver.Store        = (*Store)(nil)
	_ driver.Transitioner = (*Store)(nil)
	_ driver.Outbox       = (*Store)(nil)
)

// OpenStore opens (creating when missing) the store cfg names over nc.
// onReconnect, if not nil, registers a function to run after every
// reconnect of nc (the URL opener wires it to the connection's reconnect
// handler); the store then wakes every watcher. release, if not nil, is
// called by Close.
func OpenStore(ctx context.Context, nc *nats.Conn, cfg Config, onReconnect func(func()) func(), release func()) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	bucket := cfg.Prefix + "_ops"
	fail := func(err error) (*Store, error) {
		return nil, fmt.Errorf("natsjs: opening store %s: %w", bucket, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return fail(err)
	}
	// Reads go to the stream leader (not to any replica through direct
	// gets), so that a read sees every write acknowledged before it.
	stream, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return fail(err)
	}
	if sc := stream.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if stream, err = js.UpdateStream(ctx, sc); err != nil {
			return fail(err)
		}
		if kv, err = js.KeyValue(ctx, bucket); err != nil {
			return fail(err)
		}
	}
	s := &Store{cfg: cfg, nc: nc, js: js, kv: kv, stream: stream, bucket: bucket,
		subjPre: "$KV." + bucket + ".", release: release}
	hctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchFiltered(hctx, []string{kOp + ">"}, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		cancel()
		return fail(err)
	}
	s.stopHub = cancel
	go runHub(hctx, &s.hub, w)
	if onReconnect != nil {
		s.unlisten = onReconnect(s.hub.WakeAll)
	}
	return s, nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

func timeKey(t time.Time) string {
	n := t.UnixNano()
	if t.IsZero() || n < 0 {
		n = 0
	}
	return fmt.Sprintf("%020d", n)
}

// getOp reads the operation and its revision.
func (s *Store) getOp(ctx context.Context, id string) (*operation.Operation, uint64, error) {
	op, e, err := s.getOpEntry(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	return op, e.Revision(), nil
}

// getOpEntry reads the operation and its KV entry (revision and bytes).
func (s *Store) getOpEntry(ctx context.Context, id string) (*operation.Operation, jetstream.KeyValueEntry, error) {
	e, err := s.kv.Get(ctx, kOp+token(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, driver.ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	op := new(operation.Operation)
	if err := json.Unmarshal(e.Value(), op); err != nil {
		return nil, nil, fmt.Errorf("natsjs: decoding operation %s: %w", id, err)
	}
	return op, e, nil
}

// gone reports whether id has a tombstone whose time has not passed.
func (s *Store) gone(ctx context.Context, id string) (bool, error) {
	e, err := s.kv.Get(ctx, kGone+token(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	until, _ := strconv.ParseInt(string(e.Value()), 10, 64)
	return time.Now().UnixNano() < until, nil
}

// notFound answers ErrGone or ErrNotFound for a missing id.
func (s *Store) notFound(ctx context.Context, id string) error {
	g, err := s.gone(ctx, id)
	switch {
	case err != nil:
		return err
	case g:
		return driver.ErrGone
	}
	return driver.ErrNotFound
}

// Get: see driver.Store.
func (s *Store) Get(ctx context.Context, id string) (*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	op, _, err := s.getOp(ctx, id)
	if errors.Is(err, driver.ErrNotFound) {
		return nil, s.notFound(ctx, id)
	}
	return op, err
}

// GetRequest: see driver.Store.
func (s *Store) GetRequest(ctx context.Context, id string) (*operation.Request, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, kReq+token(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, s.notFound(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	req := new(operation.Request)
	if err := json.Unmarshal(e.Value(), req); err != nil {
		return nil, fmt.Errorf("natsjs: decoding request %s: %w", id, err)
	}
	return req, nil
}

// keyRecord is the value of an idempotency key.
type keyRecord struct {
	ID   string    `json:"id"`
	Done bool      `json:"done,omitempty"` // the operation was written
	At   time.Time `json:"at"`             // when it was claimed
}

// Create: see driver.Store. The writes, in order: the idempotency key is
// claimed (KV create, or a revision-checked takeover of a dangling
// claim, which keeps the claimed id: see claimKey), the request and the
// expiry index entry are put, the operation is created (KV create), and
// the key is marked done with a revision check. The stored operation's ID
// is then the claimed one, which differs from op.ID when a dead Create's
// claim was taken over.
func (s *Store) Create(ctx context.Context, op *operation.Operation, req *operation.Request) (*operation.Operation, bool, error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	c := op.Clone()
	c.Version = 1
	eid := token(c.ID)
	for {
		if _, _, err := s.getOp(ctx, c.ID); err == nil {
			return nil, false, driver.ErrExists
		} else if !errors.Is(err, driver.ErrNotFound) {
			return nil, false, err
		}
		if g, err := s.gone(ctx, c.ID); err != nil {
			return nil, false, err
		} else if g {
			return nil, false, driver.ErrExists
		}
		var keyRev uint64
		kkey := kIdem + token(c.IdempotencyKey)
		if c.IdempotencyKey != "" {
			holder, rev, adopt, err := s.claimKey(ctx, kkey, c.ID)
			if err != nil {
				return nil, false, err
			}
			if holder != nil {
				return holder, false, nil
			}
			keyRev = rev
			if adopt != c.ID {
				c.ID, eid = adopt, token(adopt)
			}
		}
		if req != nil {
			b, err := json.Marshal(req)
			if err != nil {
				return nil, false, err
			}
			if _, err := s.kv.Put(ctx, kReq+eid, b); err != nil {
				return nil, false, err
			}
		}
		if !c.ExpiresAt.IsZero() {
			if _, err := s.kv.Put(ctx, kExp+timeKey(c.ExpiresAt)+"."+eid, nil); err != nil {
				return nil, false, err
			}
		}
		// The owner index entry goes before the operation, so that no
		// operation is ever missing from its owner's listing; an entry
		// whose operation never appears (a failed Create) is skipped by
		// List, which checks each operation's owner.
		if c.Owner != "" {
			if _, err := s.kv.Put(ctx, ownerKey(c.Owner, c.ID), nil); err != nil {
				return nil, false, err
			}
		}
		// So does the callback index entry (see DueCallbacks).
		var dueRev uint64
		var duePut time.Time
		if !c.CallbackDueAt.IsZero() {
			duePut = time.Now()
			rev, err := s.kv.Put(ctx, dueKey(c.ID), nil)
			if err != nil {
				return nil, false, err
			}
			dueRev = rev
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, false, err
		}
		unlock := s.lock(kOp + eid)
		_, err = s.kv.Create(ctx, kOp+eid, b)
		unlock()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				// Maybe written, maybe not (a timeout): the claim stays,
				// so that a retry with the key finds this operation if
				// the write lands, and adopts its id if it does not.
				return nil, false, err
			}
			existing, _, gerr := s.getOp(ctx, c.ID)
			if c.Owner != "" && (gerr != nil || existing.Owner != c.Owner) {
				// The entry just put names another owner's operation.
				_ = s.purge(ctx, ownerKey(c.Owner, c.ID))
			}
			if keyRev != 0 {
				// The id is taken: by the operation of an adopted claim
				// whose late write landed (then it is the key's
				// operation), or by another operation (then the claim
				// is released).
				if gerr == nil && existing.IdempotencyKey == c.IdempotencyKey {
					return existing, false, nil
				}
				unlock := s.lock(kkey)
				_ = s.kv.Delete(ctx, kkey, jetstream.LastRevision(keyRev))
				unlock()
			}
			// The callback index entry stays: it replaced any entry of
			// the existing operation's, and DueCallbacks removes it if
			// that operation owes nothing.
			return nil, false, driver.ErrExists
		}
		if dueRev != 0 && time.Since(duePut) > dueGrace/4 {
			// A slow write: DueCallbacks may take the entry for a failed
			// Create's soon (see dueGrace). Best effort.
			if rev, err := s.kv.Put(ctx, dueKey(c.ID), nil); err == nil {
				dueRev = rev
			}
		}
		if keyRev != 0 {
			rec, _ := json.Marshal(keyRecord{ID: c.ID, Done: true, At: time.Now()})
			unlock := s.lock(kkey)
			_, err := s.kv.Update(ctx, kkey, rec, keyRev)
			unlock()
			if err != nil {
				if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
					return nil, false, err
				}
				// Another Create took the claim over while this one was
				// slow. Takeovers keep the claimed id, so the operation
				// just written is still the key's (the other Create found
				// it exists and answered with it); mark the key done
				// again, best effort. Only if the key now names another
				// id is this operation undone.
				e, gerr := s.kv.Get(ctx, kkey)
				var held keyRecord
				if gerr == nil && json.Unmarshal(e.Value(), &held) == nil && held.ID == c.ID {
					unlock := s.lock(kkey)
					_, _ = s.kv.Update(ctx, kkey, rec, e.Revision())
					unlock()
					return c.Clone(), true, nil
				}
				_ = s.kv.Delete(ctx, kOp+eid)
				_ = s.purge(ctx, kReq+eid)
				if c.Owner != "" {
					_ = s.purge(ctx, ownerKey(c.Owner, c.ID))
				}
				if dueRev != 0 {
					_ = s.purgeThrough(ctx, dueKey(c.ID), dueRev)
				}
				continue
			}
		}
		return c.Clone(), true, nil
	}
}

// claimKey claims the idempotency key kkey for id, or returns the
// operation that holds it. When the key is held by a Create that died (or
// timed out) before its operation appeared, and claimGrace has passed,
// claimKey takes the claim over for that same id, which it returns as
// adopt: the caller creates the operation under the claimed id, so that a
// late write of the dead Create's operation (still in flight when its
// client gave up) and the caller's are the same operation, one of which
// fails as existing. An id once claimed for a key is never given another
// operation, so no operation can exist that its key does not lead to.
func (s *Store) claimKey(ctx context.Context, kkey, id string) (holder *operation.Operation, rev uint64, adopt string, err error) {
	for {
		rec, _ := json.Marshal(keyRecord{ID: id, At: time.Now()})
		unlock := s.lock(kkey)
		rev, err := s.kv.Create(ctx, kkey, rec)
		unlock()
		if err == nil {
			return nil, rev, id, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, "", err
		}
		e, err := s.kv.Get(ctx, kkey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, "", err
		}
		var held keyRecord
		if err := json.Unmarshal(e.Value(), &held); err != nil {
			return nil, 0, "", fmt.Errorf("natsjs: decoding idempotency key: %w", err)
		}
		op, _, err := s.getOp(ctx, held.ID)
		if err == nil {
			return op, 0, "", nil
		}
		if !errors.Is(err, driver.ErrNotFound) {
			return nil, 0, "", err
		}
		if held.Done || time.Since(held.At) > claimGrace {
			// Dangling. Done: its operation was deleted, so the key is
			// free for a new id. Not done: its Create died or gave up;
			// take the claim over for the same id (see above).
			take := keyRecord{ID: id, At: time.Now()}
			if !held.Done {
				take.ID = held.ID
			}
			b, _ := json.Marshal(take)
			unlock := s.lock(kkey)
			rev, err := s.kv.Update(ctx, kkey, b, e.Revision())
			unlock()
			if err == nil {
				return nil, rev, take.ID, nil
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return nil, 0, "", err
			}
			continue
		}
		// Claimed by a Create in progress: wait for its operation.
		select {
		case <-ctx.Done():
			return nil, 0, "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// purge removes every message of a key from the stream, leaving no
// delete marker (for keys no watcher cares about).
func (s *Store) purge(ctx context.Context, key string) error {
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.subjPre+key))
}

// purgeThrough removes the messages of a key up to and including stream
// sequence (KV revision) rev, leaving no delete marker: a revision-checked
// delete that keeps a write of the key made after rev.
func (s *Store) purgeThrough(ctx context.Context, key string, rev uint64) error {
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.subjPre+key), jetstream.WithPurgeSequence(rev+1))
}

// Update: see driver.Store. It is one revision-checked KV update (plus a
// put of the expiry index entry first when ExpiresAt changes, and the
// callback index's writes: see write).
func (s *Store) Update(ctx context.Context, op *operation.Operation) error {
	if err := s.check(); err != nil {
		return err
	}
	defer s.lock(kOp + token(op.ID))()
	stored, rev, err := s.getOp(ctx, op.ID)
	if err != nil {
		return err
	}
	if stored.Version != op.Version {
		return driver.ErrConflict
	}
	n := op.Clone()
	if err := s.write(ctx, stored, rev, n); err != nil {
		return err
	}
	op.Version = n.Version
	return nil
}

// write stores n over stored, which was read at revision rev: with the
// next version and stored's idempotency key and owner, and a put of the
// expiry index entry first when ExpiresAt changes. A revision mismatch is
// driver.ErrConflict. The caller holds the key's lock.
//
// The callback index entry: when n owes a callback it is put first (on
// every such write, also when stored owed one), and a failed put fails
// the write. When n owes none and stored did, the entry's revision is
// read before the write and the entry is purged through that revision
// after it, best effort: an entry put since (by a write that read this
// one, so owes after it) is kept.
func (s *Store) write(ctx context.Context, stored *operation.Operation, rev uint64, n *operation.Operation) error {
	n.Version = stored.Version + 1
	n.IdempotencyKey, n.Owner = stored.IdempotencyKey, stored.Owner // never change
	eid := token(n.ID)
	if !n.ExpiresAt.IsZero() && !n.ExpiresAt.Equal(stored.ExpiresAt) {
		if _, err := s.kv.Put(ctx, kExp+timeKey(n.ExpiresAt)+"."+eid, nil); err != nil {
			return err
		}
	}
	var dropDue uint64 // the index entry's revision to purge through after the write
	switch {
	case !n.CallbackDueAt.IsZero():
		if _, err := s.kv.Put(ctx, kDue+eid, nil); err != nil {
			return err
		}
	case !stored.CallbackDueAt.IsZero():
		if e, err := s.kv.Get(ctx, kDue+eid); err == nil {
			dropDue = e.Revision()
		} // else none, or unknown: DueCallbacks removes a stale entry
	}
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if _, err := s.kv.Update(ctx, kOp+eid, b, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return driver.ErrConflict
		}
		return err
	}
	if dropDue != 0 {
		_ = s.purgeThrough(ctx, kDue+eid, dropDue) // best effort, as above
	}
	return nil
}

// TransitionOp: see driver.Transitioner. It reads the operation once and
// writes the change with a revision check, reading again only when
// another process wrote in between: one KV get and one KV update, where
// Get and then Update cost two gets.
func (s *Store) TransitionOp(ctx context.Context, id string, change func(*operation.Operation) error, _ bool) (*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	defer s.lock(kOp + token(id))()
	for {
		stored, rev, err := s.getOp(ctx, id)
		if err != nil {
			return nil, err
		}
		n := stored.Clone()
		if err := change(n); err != nil {
			return n, err
		}
		n.ID = stored.ID
		err = s.write(ctx, stored, rev, n)
		if errors.Is(err, driver.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return n.Clone(), nil
	}
}

// keys lists the live keys under prefix (e.g. "o."), without values.
func (s *Store) keys(ctx context.Context, prefix string) ([]string, error) {
	kl, err := s.kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range kl.Keys() {
		out = append(out, k)
	}
	_ = kl.Stop() // the lister stops itself once drained
	return out, nil
}

// subjectKeys lists the keys under prefix that hold a message, from the
// stream's subject state (one request to the stream leader; no consumer):
// for keys that are purged, never deleted with a marker, these are the
// live ones.
func (s *Store) subjectKeys(ctx context.Context, prefix string) ([]string, error) {
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(s.subjPre+prefix+">"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		out = append(out, strings.TrimPrefix(subj, s.subjPre))
	}
	return out, nil
}

// List: see driver.Store. It lists the operation keys (names only), sorts
// them, and reads operations after the cursor until the page is full.
func (s *Store) List(ctx context.Context, opts driver.ListOptions) ([]*operation.Operation, string, error) {
	if err := s.check(); err != nil {
		return nil, "", err
	}
	if opts.Owner != "" {
		return s.listOwner(ctx, opts)
	}
	keys, err := s.keys(ctx, kOp)
	if err != nil {
		return nil, "", err
	}
	return s.page(ctx, keys, kOp, opts, func(op *operation.Operation) bool {
		return len(opts.Status) == 0 || slices.Contains(opts.Status, op.Status)
	})
}

// listOwner is List with an owner: it lists the owner's index entries
// (key names only, from the stream's subject state filtered on the
// owner's subject prefix; see subjectKeys), sorts them, and reads the
// operations after the cursor until the page and one more are found. An
// entry whose operation is missing or has another owner (a Create that
// failed after writing its entry) is skipped.
func (s *Store) listOwner(ctx context.Context, opts driver.ListOptions) ([]*operation.Operation, string, error) {
	prefix := kOwner + token(opts.Owner) + "."
	keys, err := s.subjectKeys(ctx, prefix)
	if err != nil {
		return nil, "", err
	}
	return s.page(ctx, keys, prefix, opts, func(op *operation.Operation) bool {
		return op.Owner == opts.Owner && (len(opts.Status) == 0 || slices.Contains(opts.Status, op.Status))
	})
}

// page is a List page from index keys, each prefix followed by an id's
// token: the operations whose ids sort after opts.After, in id order,
// that keep accepts, up to opts.Limit (100 when not positive), and the
// cursor of the next page: read one operation ahead, it is "" when there
// is none. An id whose operation is missing (deleted meanwhile, or a
// Create that failed after writing its index key) is skipped.
func (s *Store) page(ctx context.Context, keys []string, prefix string, opts driver.ListOptions, keep func(*operation.Operation) bool) ([]*operation.Operation, string, error) {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		if id, err := untoken(k[len(prefix):]); err == nil && id > opts.After {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []*operation.Operation
	for _, id := range ids {
		op, _, err := s.getOp(ctx, id)
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if !keep(op) {
			continue
		}
		if len(out) == limit {
			return out, out[limit-1].ID, nil // there is a next page
		}
		out = append(out, op)
	}
	return out, "", nil
}

// timedKey is an index key "<prefix><20-digit Unix nanoseconds>.<token>".
type timedKey struct {
	key string
	at  int64
	id  string
}

func (s *Store) timedKeys(ctx context.Context, prefix string, before time.Time) ([]timedKey, error) {
	keys, err := s.keys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	limit := before.UnixNano()
	var out []timedKey
	for _, k := range keys {
		rest := k[len(prefix):]
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			continue
		}
		at, err1 := strconv.ParseInt(rest[:dot], 10, 64)
		id, err2 := untoken(rest[dot+1:])
		if err1 != nil || err2 != nil || at >= limit {
			continue
		}
		out = append(out, timedKey{k, at, id})
	}
	slices.SortFunc(out, func(a, b timedKey) int {
		if a.at != b.at {
			return int(min(max(a.at-b.at, -1), 1))
		}
		return strings.Compare(a.id, b.id)
	})
	return out, nil
}

// purgeRecord is the value of a "t." key: further keys to purge with it.
type purgeRecord struct {
	Keys []string `json:"keys,omitempty"`
}

// DeleteExpired: see driver.Store. It lists the expiry index (key names
// only), reads each candidate, and for each really expired operation puts
// its tombstone (or a purge entry), deletes the operation with a revision
// check (a KV delete marker, which watchers see), and purges its request,
// key and index entry. Then it purges up to limit purge entries whose time
// passed: the tombstone and the leftover markers.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	cands, err := s.timedKeys(ctx, kExp, now)
	if err != nil {
		return nil, err
	}
	var out []*operation.Operation
	for _, x := range cands {
		if len(out) >= limit {
			break
		}
		op, err := s.deleteOne(ctx, x, now)
		if err != nil {
			return out, err
		}
		if op != nil {
			out = append(out, op)
		}
	}
	return out, s.purgeTombstones(ctx, now, limit)
}

// deleteOne deletes the operation of expiry index entry x if it is
// expired, and returns it; it returns nil for a stale entry.
func (s *Store) deleteOne(ctx context.Context, x timedKey, now time.Time) (*operation.Operation, error) {
	unlock := s.lock(kOp + token(x.id))
	var once sync.Once
	defer once.Do(unlock)
	{
		op, rev, err := s.getOp(ctx, x.id)
		if errors.Is(err, driver.ErrNotFound) {
			return nil, s.purge(ctx, x.key)
		}
		if err != nil {
			return nil, err
		}
		if op.ExpiresAt.IsZero() || op.ExpiresAt.UnixNano() != x.at || !op.ExpiresAt.Before(now) {
			// A stale entry (the expiry changed since).
			return nil, s.purge(ctx, x.key)
		}
		eid := token(op.ID)
		pr := purgeRecord{Keys: []string{kOp + eid}}
		if op.IdempotencyKey != "" {
			pr.Keys = append(pr.Keys, kIdem+token(op.IdempotencyKey))
		}
		pkey := kPurge + timeKey(now) + "." + eid
		tomb := op.TombstoneUntil.After(op.ExpiresAt) && op.TombstoneUntil.After(now)
		if tomb {
			pkey = kPurge + timeKey(op.TombstoneUntil) + "." + eid
			pr.Keys = append(pr.Keys, kGone+eid)
			if _, err := s.kv.Put(ctx, kGone+eid, []byte(strconv.FormatInt(op.TombstoneUntil.UnixNano(), 10))); err != nil {
				return nil, err
			}
		}
		pb, _ := json.Marshal(pr)
		if _, err := s.kv.Put(ctx, pkey, pb); err != nil {
			return nil, err
		}
		// The callback index entry, read before the delete and purged
		// through its revision after it: an entry a later Create of the
		// id puts is kept.
		var dueRev uint64
		if e, err := s.kv.Get(ctx, kDue+eid); err == nil {
			dueRev = e.Revision()
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
		if err := s.kv.Delete(ctx, kOp+eid, jetstream.LastRevision(rev)); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return nil, nil // updated meanwhile: look again next time
			}
			return nil, err
		}
		if err := s.purge(ctx, kReq+eid); err != nil {
			return nil, err
		}
		if op.Owner != "" {
			if err := s.purge(ctx, ownerKey(op.Owner, op.ID)); err != nil {
				return nil, err
			}
		}
		if dueRev != 0 {
			if err := s.purgeThrough(ctx, kDue+eid, dueRev); err != nil {
				return nil, err
			}
		}
		once.Do(unlock) // releaseKey takes the key's stripe
		if op.IdempotencyKey != "" {
			if err := s.releaseKey(ctx, kIdem+token(op.IdempotencyKey), op.ID); err != nil {
				return nil, err
			}
		}
		if err := s.purge(ctx, x.key); err != nil {
			return nil, err
		}
		return op, nil
	}
}

// DueCallbacks: see driver.Outbox. It lists the callback index entries
// (key names only, from the stream's subject state; see subjectKeys),
// reads each entry's operation, keeps those due, and sorts them by
// CallbackDueAt (then id): O(owing operations) reads per call, whatever
// limit is. An entry whose operation owes nothing or does not exist is
// stale; cleanDue removes it (or finds that it owes after all).
func (s *Store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	keys, err := s.subjectKeys(ctx, kDue)
	if err != nil {
		return nil, err
	}
	var due []*operation.Operation
	for _, k := range keys {
		id, err := untoken(k[len(kDue):])
		if err != nil {
			continue // not an entry of this store's
		}
		op, _, err := s.getOp(ctx, id)
		if err != nil && !errors.Is(err, driver.ErrNotFound) {
			return nil, err
		}
		if err != nil || op.CallbackDueAt.IsZero() {
			if op, err = s.cleanDue(ctx, k, id); err != nil {
				return nil, err
			}
			if op == nil {
				continue
			}
		}
		if !op.CallbackDueAt.After(now) {
			due = append(due, op)
		}
	}
	slices.SortFunc(due, func(a, b *operation.Operation) int {
		if c := a.CallbackDueAt.Compare(b.CallbackDueAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return due[:min(limit, len(due))], nil
}

// cleanDue removes the callback index entry key of operation id, which
// DueCallbacks found stale (the operation owes nothing, or does not
// exist), unless a write may still need it; it returns the operation if
// it owes after all (written meanwhile), else nil. The entry's revision
// is read first, then the operation again, and the entry is purged
// through that revision only (a put since is kept):
//
//   - The operation owes nothing: a write in progress that read it before
//     and put the entry (at or before that revision) may be about to make
//     it owe. cleanDue first rewrites the operation unchanged (same bytes,
//     same Version) with a revision check, so that such a write fails its
//     own revision check and, retried, puts the entry again. If the
//     rewrite loses to a write, the entry stays until the next call.
//   - The operation does not exist: a Create in progress may still write
//     it, so the entry is kept until it is dueGrace old (by the server's
//     timestamp of its put and this process's clock).
//
// Failures to remove are ignored (the entry stays, stale and harmless);
// failures to read are returned.
func (s *Store) cleanDue(ctx context.Context, key, id string) (*operation.Operation, error) {
	defer s.lock(kOp + token(id))()
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	op, oe, err := s.getOpEntry(ctx, id)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		if time.Since(e.Created()) < dueGrace {
			return nil, nil
		}
	case err != nil:
		return nil, err
	case !op.CallbackDueAt.IsZero():
		return op, nil
	default:
		if _, err := s.kv.Update(ctx, kOp+token(id), oe.Value(), oe.Revision()); err != nil {
			return nil, nil // written meanwhile (or failed): look again next time
		}
	}
	_ = s.purgeThrough(ctx, key, e.Revision())
	return nil, nil
}

// releaseKey deletes the idempotency key if id holds it (revision-checked).
func (s *Store) releaseKey(ctx context.Context, kkey, id string) error {
	e, err := s.kv.Get(ctx, kkey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var held keyRecord
	if json.Unmarshal(e.Value(), &held) != nil || held.ID != id {
		return nil
	}
	err = s.kv.Delete(ctx, kkey, jetstream.LastRevision(e.Revision()))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	return err
}

// purgeTombstones purges up to limit purge entries whose time passed.
func (s *Store) purgeTombstones(ctx context.Context, now time.Time, limit int) error {
	ts, err := s.timedKeys(ctx, kPurge, now)
	if err != nil {
		return err
	}
	for i, t := range ts {
		if i >= limit {
			break
		}
		e, err := s.kv.Get(ctx, t.key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		var pr purgeRecord
		if err == nil {
			_ = json.Unmarshal(e.Value(), &pr)
		}
		for _, k := range pr.Keys {
			// Only a key whose last entry is a delete marker (or a
			// tombstone) is purged: an id or key created again since is
			// live and kept.
			if !strings.HasPrefix(k, kGone) {
				if _, err := s.kv.Get(ctx, k); err == nil {
					continue
				} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
					return err
				}
			}
			if err := s.purge(ctx, k); err != nil {
				return err
			}
		}
		if err := s.purge(ctx, t.key); err != nil {
			return err
		}
	}
	return nil
}

// Watch: see driver.Store. It registers a local channel with the
// store's one KV watcher, then reads the key's last stream sequence from
// the stream leader: events up to that sequence (changes the caller's
// next read sees anyway, whose events may still be on their way from a
// replica) are not signalled; later ones are.
func (s *Store) Watch(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	eid := token(id)
	w, stop := s.hub.AddUnarmed(eid)
	var base uint64
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subjPre+kOp+eid)
	switch {
	case err == nil:
		base = m.Sequence
	case errors.Is(err, jetstream.ErrMsgNotFound):
	default:
		stop()
		return nil, nil, err
	}
	s.hub.Arm(w, base)
	return w.C, stop, nil
}

// Close stops the watcher and releases the connection. Watch channels get
// no more values.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.unlisten != nil {
		s.unlisten()
	}
	s.stopHub()
	if s.release != nil {
		s.release()
	}
	return nil
}

// runHub fans the events of one KV watcher out to the hub's per-id
// watchers, by sequence number (see watch.Hub.NotifySeq), until ctx ends.
func runHub(ctx context.Context, h *watch.Hub, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil && strings.HasPrefix(e.Key(), kOp) {
				h.NotifySeq(e.Key()[len(kOp):], e.Revision())
			}
		}
	}
}
