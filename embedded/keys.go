package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/arrhq/arr/operation"
)

// Key prefixes; see doc.go for the layout.
const (
	pMeta   = '!' // !format                 → format version
	pOp     = 'o' // o<id>                   → operation record
	pReq    = 'r' // r<id>                   → request record
	pIdem   = 'k' // k<idempotency key>      → id
	pStatus = 's' // s<status>\x00<id>       → (empty)
	pExpiry = 'x' // x<expiresAt BE64><id>   → (empty)
	pQueue  = 'q' // q<readyAt BE64><msg id> → queue entry
	pMsg    = 'm' // m<msg id>               → readyAt BE64, or deadMark
	pDead   = 'd' // d<msg id>               → dead letter
	pResult = 'b' // b<result key>           → a result, or its header (see Results)
	pGone   = 'g' // g<id>                   → tombstone: until BE64
	pGoneAt = 't' // t<until BE64><id>       → (empty) tombstone index by time
	pOwner  = 'w' // w<len><owner><id>       → (empty) owner index, for List
	pDue    = 'c' // c<callbackDueAt BE64><id> → (empty) callback outbox index
)

// formatVersion is the on-disk layout version, stored at metaFormatKey.
const formatVersion = 1

var metaFormatKey = []byte("!format")

// record versions: the first byte of every value that has one.
const (
	opRecordV1   = 1 // then the operation as JSON (still read)
	opRecordV2   = 2 // the binary record of encodeOp (still read)
	opRecordV3   = 3 // v2 plus owner and tenant (written when either is set)
	opRecordV4   = 4 // v3 plus the callbacks part (written when there are callbacks)
	reqRecordV1  = 1 // method, path, query, headers, body (still read)
	reqRecordV2  = 2 // v1 plus host, remote address and TLS
	qEntryV1     = 1
	deadRecordV1 = 1
)

var errCorrupt = errors.New("embedded: corrupt record")

func key(prefix byte, s string) []byte {
	k := make([]byte, 1+len(s))
	k[0] = prefix
	copy(k[1:], s)
	return k
}

func opKey(id string) []byte   { return key(pOp, id) }
func reqKey(id string) []byte  { return key(pReq, id) }
func idemKey(k string) []byte  { return key(pIdem, k) }
func msgKey(id string) []byte  { return key(pMsg, id) }
func deadKey(id string) []byte { return key(pDead, id) }
func goneKey(id string) []byte { return key(pGone, id) }

// statusPrefix is the prefix of the status index entries of one status.
func statusPrefix(st operation.Status) []byte {
	k := make([]byte, 0, 2+len(st))
	k = append(k, pStatus)
	k = append(k, st...)
	return append(k, 0)
}

func statusKey(st operation.Status, id string) []byte {
	return append(statusPrefix(st), id...)
}

// ownerPrefix is the prefix of the owner index entries of one owner: the
// owner's length (uvarint) before its bytes, so that no owner's prefix is
// another's, whatever bytes owners hold.
func ownerPrefix(owner string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(owner))
	k = append(k, pOwner)
	k = binary.AppendUvarint(k, uint64(len(owner)))
	return append(k, owner...)
}

func ownerKey(owner, id string) []byte {
	return append(ownerPrefix(owner), id...)
}

// nanos maps t to the uint64 order-preserving form used in keys: Unix
// nanoseconds, clamped to [0, MaxInt64].
func nanos(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	if t.After(time.Unix(0, math.MaxInt64)) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func timeKey(prefix byte, ts uint64, id string) []byte {
	k := make([]byte, 9+len(id))
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:9], ts)
	copy(k[9:], id)
	return k
}

func expiryKey(t time.Time, id string) []byte { return timeKey(pExpiry, nanos(t), id) }

// dueKey is the callback outbox index entry of an operation whose
// CallbackDueAt is t (not zero), for DueCallbacks.
func dueKey(t time.Time, id string) []byte { return timeKey(pDue, nanos(t), id) }

// goneAtKey is the time index entry of a tombstone kept until until (Unix
// ns, as nanos gives it).
func goneAtKey(until uint64, id string) []byte { return timeKey(pGoneAt, until, id) }

// queueKey is the key of a queue entry ready at readyAt (Unix ns).
func queueKey(readyAt uint64, id string) []byte { return timeKey(pQueue, readyAt, id) }

// splitTimeKey returns the time and id of an x, c, q or t key.
func splitTimeKey(k []byte) (uint64, []byte, bool) {
	if len(k) < 9 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(k[1:9]), k[9:], true
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ---- operation records ----

// encodeOp writes a v2 record, or a v3 one when op has an owner or a
// tenant:
//
//	0x02 | id | route | status | flags | createdAt | updatedAt |
//	percent | message | attempts | [error] | [result] | idempotencyKey |
//	requestHash | [expiresAt] | [tombstoneUntil] | [attemptStartedAt] |
//	nMeta { key | value } | version | [ext]
//
//	0x03 | the same, with owner | tenant after requestHash
//
// (so that a store whose operations have neither is byte for byte what it
// was before owners, and readable by the builds before them).
//
// Strings are uvarint-length-prefixed, numbers varints, times Unix
// nanoseconds (UTC); flags say which optional parts follow and which times
// are zero. v1 records (0x01 + JSON) are still read; v2 costs a fraction
// of JSON's CPU on the path every submit and transition takes.
//
// ext, present when the flag opHasExt is set, is a uvarint-length-prefixed
// JSON object (opExt) holding the fields most operations never set:
// Failures, Interruptions, History, Result.StatusCode,
// Result.Header and Error.Extensions. It is written only when one of them
// is not zero, so a record without them is byte for byte what it was
// before they existed, and costs no JSON. Through JSON, the values of
// Problem.Extensions (of Error and of History's errors) come back as JSON
// decodes into an any: numbers as float64, objects as map[string]any,
// arrays as []any; History's times come back in UTC.
//
// A v4 record is a v3 record followed by the callbacks part, written when
// the operation has CallbackURL, Callbacks or CallbackDueAt (see
// appendCallbacks): binary, since an operation that calls back is written
// again at each attempt.
func encodeOp(op *operation.Operation) ([]byte, error) {
	var flags byte
	if op.Error != nil {
		flags |= opHasError
	}
	if op.Result != nil {
		flags |= opHasResult
	}
	if !op.ExpiresAt.IsZero() {
		flags |= opHasExpiry
	}
	if op.CreatedAt.IsZero() {
		flags |= opZeroCreated
	}
	if op.UpdatedAt.IsZero() {
		flags |= opZeroUpdated
	}
	if hasExt(op) {
		flags |= opHasExt
	}
	if !op.TombstoneUntil.IsZero() {
		// Every finished operation has one: kept out of ext's JSON.
		flags |= opHasTombstone
	}
	if !op.AttemptStartedAt.IsZero() {
		flags |= opHasAttemptStart // every started one: likewise
	}
	calls := op.CallbackURL != "" || len(op.Callbacks) > 0 || !op.CallbackDueAt.IsZero()
	owned := op.Owner != "" || op.Tenant != "" || calls
	b := make([]byte, 0, 160+len(op.Message)+len(op.RequestHash)+len(op.Owner)+len(op.Tenant))
	switch {
	case calls:
		b = append(b, opRecordV4)
	case owned:
		b = append(b, opRecordV3)
	default:
		b = append(b, opRecordV2)
	}
	b = appendString(b, op.ID)
	b = appendString(b, op.Route)
	b = appendString(b, string(op.Status))
	b = append(b, flags)
	b = appendTime(b, op.CreatedAt)
	b = appendTime(b, op.UpdatedAt)
	b = binary.AppendVarint(b, int64(op.PercentComplete))
	b = appendString(b, op.Message)
	b = binary.AppendVarint(b, int64(op.Attempts))
	if e := op.Error; e != nil {
		b = appendString(b, e.Type)
		b = appendString(b, e.Title)
		b = binary.AppendVarint(b, int64(e.Status))
		b = appendString(b, e.Detail)
		b = appendString(b, e.Instance)
	}
	if r := op.Result; r != nil {
		b = appendString(b, r.Key)
		b = appendString(b, r.ContentType)
		b = binary.AppendVarint(b, r.Size)
		b = appendString(b, r.ETag)
	}
	b = appendString(b, op.IdempotencyKey)
	b = appendString(b, op.RequestHash)
	if owned {
		b = appendString(b, op.Owner)
		b = appendString(b, op.Tenant)
	}
	if flags&opHasExpiry != 0 {
		b = appendTime(b, op.ExpiresAt)
	}
	if flags&opHasTombstone != 0 {
		b = appendTime(b, op.TombstoneUntil)
	}
	if flags&opHasAttemptStart != 0 {
		b = appendTime(b, op.AttemptStartedAt)
	}
	b = binary.AppendUvarint(b, uint64(len(op.Meta)))
	for k, v := range op.Meta {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	b = binary.AppendVarint(b, op.Version)
	if flags&opHasExt != 0 {
		x := opExt{Failures: op.Failures, Interruptions: op.Interruptions, History: op.History, HistoryDropped: op.HistoryDropped}
		if r := op.Result; r != nil {
			x.ResultStatus, x.ResultHeader = r.StatusCode, r.Header
		}
		if e := op.Error; e != nil {
			x.ErrorExtensions = e.Extensions
		}
		j, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("embedded: encoding operation %s: %w", op.ID, err)
		}
		b = binary.AppendUvarint(b, uint64(len(j)))
		b = append(b, j...)
	}
	if calls {
		b = appendCallbacks(b, op)
	}
	return b, nil
}

// The callbacks part of a v4 record:
//
//	callbackURL | dueFlag [| callbackDueAt] | n { cbFlags | id | url |
//	event | secret | state | lastError | attempts | lastStatus |
//	createdAt? nextAt? lastAt? deliveredAt? redeliveredAt? }
//
// where cbFlags says which of the five times follow (those not zero).
const (
	cbCreated byte = 1 << iota
	cbNext
	cbLast
	cbDelivered
	cbRedelivered
)

func appendCallbacks(b []byte, op *operation.Operation) []byte {
	b = appendString(b, op.CallbackURL)
	if op.CallbackDueAt.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendTime(b, op.CallbackDueAt)
	}
	b = binary.AppendUvarint(b, uint64(len(op.Callbacks)))
	for i := range op.Callbacks {
		c := &op.Callbacks[i]
		times := [...]time.Time{c.CreatedAt, c.NextAt, c.LastAt, c.DeliveredAt, c.RedeliveredAt}
		var flags byte
		for j, t := range times {
			if !t.IsZero() {
				flags |= 1 << j
			}
		}
		b = append(b, flags)
		for _, str := range [...]string{c.ID, c.URL, c.Event, c.Secret, c.State, c.LastError} {
			b = appendString(b, str)
		}
		b = binary.AppendVarint(b, int64(c.Attempts))
		b = binary.AppendVarint(b, int64(c.LastStatus))
		for _, t := range times {
			b = appendTime(b, t) // nothing for a zero time: the flags say so
		}
	}
	return b
}

// readCallbacks reads the callbacks part of a v4 record into op.
func (r *reader) readCallbacks(op *operation.Operation) {
	op.CallbackURL = r.string()
	if r.byte1() != 0 {
		op.CallbackDueAt = r.time(false)
	}
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each takes at least one byte
		r.err = errCorrupt
		return
	}
	if n > 0 {
		op.Callbacks = make([]operation.Callback, n)
	}
	for i := range op.Callbacks {
		c := &op.Callbacks[i]
		flags := r.byte1()
		c.ID, c.URL, c.Event, c.Secret, c.State, c.LastError = r.string(), r.string(), r.string(), r.string(), r.string(), r.string()
		c.Attempts, c.LastStatus = int(r.varint()), int(r.varint())
		for j, t := range [...]*time.Time{&c.CreatedAt, &c.NextAt, &c.LastAt, &c.DeliveredAt, &c.RedeliveredAt} {
			*t = r.time(flags&(1<<j) == 0)
		}
	}
}

const (
	opHasError byte = 1 << iota
	opHasResult
	opHasExpiry
	opZeroCreated
	opZeroUpdated
	opHasExt
	opHasTombstone
	opHasAttemptStart
)

// opExt is the ext part of a v2 operation record (see encodeOp).
type opExt struct {
	Failures        int                 `json:"failures,omitempty"`
	Interruptions   int                 `json:"interruptions,omitempty"`
	History         []operation.Attempt `json:"history,omitempty"`
	HistoryDropped  int                 `json:"historyDropped,omitempty"`
	ResultStatus    int                 `json:"resultStatus,omitempty"`
	ResultHeader    http.Header         `json:"resultHeader,omitempty"`
	ErrorExtensions map[string]any      `json:"errorExtensions,omitempty"`
}

// hasExt reports whether op has a field that only the ext part holds.
func hasExt(op *operation.Operation) bool {
	return op.Failures != 0 || op.Interruptions != 0 || len(op.History) > 0 || op.HistoryDropped != 0 ||
		op.Result != nil && (op.Result.StatusCode != 0 || len(op.Result.Header) > 0) ||
		op.Error != nil && len(op.Error.Extensions) > 0
}

// setExt decodes an ext part into op, whose Error and Result are decoded
// already.
func setExt(op *operation.Operation, j []byte) error {
	var x opExt
	if err := json.Unmarshal(j, &x); err != nil {
		return err
	}
	op.Failures, op.Interruptions, op.History, op.HistoryDropped = x.Failures, x.Interruptions, x.History, x.HistoryDropped
	for i := range op.History {
		op.History[i].StartedAt = utc(op.History[i].StartedAt)
		op.History[i].EndedAt = utc(op.History[i].EndedAt)
	}
	if r := op.Result; r != nil {
		r.StatusCode, r.Header = x.ResultStatus, x.ResultHeader
	}
	if e := op.Error; e != nil {
		e.Extensions = x.ErrorExtensions
	}
	return nil
}

// utc is t in UTC, and the zero time as it is.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return b // the flags say so
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func decodeOp(v []byte) (*operation.Operation, error) {
	if len(v) < 1 {
		return nil, errCorrupt
	}
	switch v[0] {
	case opRecordV1:
		op := new(operation.Operation)
		if err := json.Unmarshal(v[1:], op); err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		return op, nil
	case opRecordV2, opRecordV3, opRecordV4:
		return decodeOpV2(v[1:], v[0])
	}
	return nil, errCorrupt
}

// varint reads a signed varint.
func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

// byte1 reads one byte.
func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// time reads a time written by appendTime; zero says the flags marked it
// zero (and nothing was written).
func (r *reader) time(zero bool) time.Time {
	if zero {
		return time.Time{}
	}
	return time.Unix(0, r.varint()).UTC()
}

// decodeOpV2 decodes a v2 record, a v3 one (with owner and tenant) or a
// v4 one (v3 and callbacks).
func decodeOpV2(v []byte, version byte) (*operation.Operation, error) {
	owned := version >= opRecordV3
	r := &reader{b: v}
	op := &operation.Operation{ID: r.string(), Route: r.string(), Status: operation.Status(r.string())}
	flags := r.byte1()
	op.CreatedAt = r.time(flags&opZeroCreated != 0)
	op.UpdatedAt = r.time(flags&opZeroUpdated != 0)
	op.PercentComplete = int(r.varint())
	op.Message = r.string()
	op.Attempts = int(r.varint())
	if flags&opHasError != 0 {
		op.Error = &operation.Problem{Type: r.string(), Title: r.string(), Status: int(r.varint()), Detail: r.string(), Instance: r.string()}
	}
	if flags&opHasResult != 0 {
		op.Result = &operation.Result{Key: r.string(), ContentType: r.string(), Size: r.varint(), ETag: r.string()}
	}
	op.IdempotencyKey = r.string()
	op.RequestHash = r.string()
	if owned {
		op.Owner, op.Tenant = r.string(), r.string()
	}
	if flags&opHasExpiry != 0 {
		op.ExpiresAt = r.time(false)
	}
	if flags&opHasTombstone != 0 {
		op.TombstoneUntil = r.time(false)
	}
	if flags&opHasAttemptStart != 0 {
		op.AttemptStartedAt = r.time(false)
	}
	if n := r.uvarint(); n > uint64(len(r.b)) {
		return nil, errCorrupt
	} else if n > 0 {
		op.Meta = make(map[string]string, n)
		for range n {
			key := r.string()
			op.Meta[key] = r.string()
		}
	}
	op.Version = r.varint()
	if flags&opHasExt != 0 {
		if j := r.bytes(); r.err == nil {
			if err := setExt(op, j); err != nil {
				return nil, fmt.Errorf("%w: %v", errCorrupt, err)
			}
		}
	}
	if version == opRecordV4 {
		r.readCallbacks(op)
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errCorrupt
	}
	return op, nil
}

// ---- request records ----
//
//	0x02 | method | path | rawQuery | host | remoteAddr | tls |
//	nHeader { name | nValue { value } } | body
//
// where strings are uvarint-length-prefixed, tls is one byte (0 or 1) and
// the body is the rest. v1 records (0x01), without host, remoteAddr and
// tls, are still read.

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeRequest(r *operation.Request) []byte {
	n := 1 + 5*binary.MaxVarintLen32 + len(r.Method) + len(r.Path) + len(r.RawQuery) + len(r.Host) + len(r.RemoteAddr) + 1 + binary.MaxVarintLen32 + len(r.Body)
	for k, vs := range r.Header {
		n += 2*binary.MaxVarintLen32 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen32 + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, reqRecordV2)
	b = appendString(b, r.Method)
	b = appendString(b, r.Path)
	b = appendString(b, r.RawQuery)
	b = appendString(b, r.Host)
	b = appendString(b, r.RemoteAddr)
	tls := byte(0)
	if r.TLS {
		tls = 1
	}
	b = append(b, tls)
	b = binary.AppendUvarint(b, uint64(len(r.Header)))
	for k, vs := range r.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(b, r.Body...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// bytes reads a uvarint-length-prefixed byte string, without copying it.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errCorrupt
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// rest returns a copy of the remaining bytes, nil when there are none.
func (r *reader) rest() []byte {
	if r.err != nil || len(r.b) == 0 {
		return nil
	}
	return append([]byte(nil), r.b...)
}

func decodeRequest(v []byte) (*operation.Request, error) {
	if len(v) < 1 || v[0] != reqRecordV1 && v[0] != reqRecordV2 {
		return nil, errCorrupt
	}
	r := &reader{b: v[1:]}
	req := &operation.Request{Method: r.string(), Path: r.string(), RawQuery: r.string()}
	if v[0] == reqRecordV2 {
		req.Host, req.RemoteAddr = r.string(), r.string()
		switch r.byte1() {
		case 0:
		case 1:
			req.TLS = true
		default:
			return nil, errCorrupt
		}
	}
	nh := r.uvarint()
	if nh > uint64(len(r.b)) {
		return nil, errCorrupt
	}
	if nh > 0 {
		req.Header = make(http.Header, nh)
		for range nh {
			k := r.string()
			nv := r.uvarint()
			if nv > uint64(len(r.b)) {
				return nil, errCorrupt
			}
			vs := make([]string, 0, nv)
			for range nv {
				vs = append(vs, r.string())
			}
			req.Header[k] = vs
		}
	}
	req.Body = r.rest()
	if r.err != nil {
		return nil, r.err
	}
	return req, nil
}

// ---- queue entries ----
//
//	q<readyAt><id> → version | deliveries (uvarint) | body
//	m<id>          → readyAt (BE64), or deadMark
//	d<id>          → version | deadAt (BE64) | deliveries | reason | body

func encodeEntry(deliveries int, body []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(body))
	b = append(b, qEntryV1)
	b = binary.AppendUvarint(b, uint64(deliveries))
	return append(b, body...)
}

func decodeEntry(v []byte) (deliveries int, body []byte, err error) {
	if len(v) < 1 || v[0] != qEntryV1 {
		return 0, nil, errCorrupt
	}
	r := &reader{b: v[1:]}
	d := r.uvarint()
	body = r.rest()
	return int(d), body, r.err
}

// deadMark is the m<id> value of a dead-lettered message, so that one read
// tells Enqueue whether an id is queued, dead or unknown.
var deadMark = []byte{'D'}

func isDeadMark(v []byte) bool { return len(v) == 1 && v[0] == 'D' }

func encodeReadyAt(readyAt uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), readyAt)
}

func encodeDead(at time.Time, deliveries int, reason string, body []byte) []byte {
	b := make([]byte, 0, 1+8+2*binary.MaxVarintLen32+len(reason)+len(body))
	b = append(b, deadRecordV1)
	b = binary.BigEndian.AppendUint64(b, nanos(at))
	b = binary.AppendUvarint(b, uint64(deliveries))
	b = appendString(b, reason)
	return append(b, body...)
}

func decodeDead(id string, v []byte) (DeadLetter, error) {
	if len(v) < 1 || v[0] != deadRecordV1 {
		return DeadLetter{}, errCorrupt
	}
	r := &reader{b: v[1:]}
	at := r.u64()
	d := r.uvarint()
	reason := r.string()
	body := r.rest()
	if r.err != nil {
		return DeadLetter{}, r.err
	}
	return DeadLetter{ID: id, Body: body, Deliveries: int(d), Reason: reason, At: time.Unix(0, int64(at)).UTC()}, nil
}
