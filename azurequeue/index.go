package azurequeue

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// States of an index entity.
const (
	stQueued = "queued" // in the queue, deliverable from At
	stLeased = "leased" // delivered, leased until At
	stDead   = "dead"   // in the poison queue (Msg, Pop)
)

// entry is a message's index entity: one per message ID that is queued,
// leased or dead, in the partition of its queue.
type entry struct {
	ID         string // the message ID
	State      string
	Msg        string // Azure message ID: in the queue, or (dead) in the poison queue
	Pop        string // dead: the poison message's pop receipt, to delete it on revival
	At         int64  // Unix ms: queued, deliverable from; leased, lease end
	Deliveries int64  // deliveries so far (the last delivery's attempt number)
	Reason     string // dead: why
}

// rowKey is the entity's RowKey for a message ID: its unpadded base64url,
// since a RowKey may not hold '/', '\\', '#', '?' or control characters.
func rowKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// maxRowKey is Azure's limit on a RowKey (1 KiB of UTF-16: 512
// characters; Azurite refuses 514); maxID the longest message ID whose
// rowKey fits.
const (
	maxRowKey = 512
	maxID     = maxRowKey / 4 * 3
)

func (q *Queue) marshal(e entry) []byte {
	m := map[string]any{
		"PartitionKey": q.cfg.Queue, "RowKey": rowKey(e.ID),
		"Id": e.ID, "State": e.State, "Msg": e.Msg,
		"At": strconv.FormatInt(e.At, 10), "At@odata.type": "Edm.Int64",
		"Deliveries": strconv.FormatInt(e.Deliveries, 10), "Deliveries@odata.type": "Edm.Int64",
	}
	if e.Pop != "" {
		m["Pop"] = e.Pop
	}
	if e.Reason != "" {
		m["Reason"] = e.Reason
	}
	b, _ := json.Marshal(m)
	return b
}

// wire is an entity as the table service returns it: Int64 values as
// strings.
type wire struct {
	ID         string `json:"Id"`
	State      string
	Msg        string
	Pop        string
	At         json.Number
	Deliveries json.Number
	Reason     string
}

func unmarshal(b []byte) (entry, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return entry{}, err
	}
	at, _ := strconv.ParseInt(string(w.At), 10, 64)
	n, _ := strconv.ParseInt(string(w.Deliveries), 10, 64)
	return entry{ID: w.ID, State: w.State, Msg: w.Msg, Pop: w.Pop, At: at, Deliveries: n, Reason: w.Reason}, nil
}

func (q *Queue) get(ctx context.Context, id string) (entry, azcore.ETag, error) {
	r, err := q.table.GetEntity(ctx, q.cfg.Queue, rowKey(id), nil)
	if err != nil {
		return entry{}, "", err
	}
	e, err := unmarshal(r.Value)
	return e, r.ETag, err
}

func (q *Queue) add(ctx context.Context, e entry) (azcore.ETag, error) {
	r, err := q.table.AddEntity(ctx, q.marshal(e), nil)
	return r.ETag, err
}

// put replaces the entity if its ETag is still etag.
func (q *Queue) put(ctx context.Context, e entry, etag azcore.ETag) (azcore.ETag, error) {
	r, err := q.table.UpdateEntity(ctx, q.marshal(e), &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
	return r.ETag, err
}

// remove deletes the entity if its ETag is still etag.
func (q *Queue) remove(ctx context.Context, id string, etag azcore.ETag) error {
	_, err := q.table.DeleteEntity(ctx, q.cfg.Queue, rowKey(id), &aztables.DeleteEntityOptions{IfMatch: &etag})
	return err
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// status returns the HTTP status and error code of an Azure error (0 and
// "" for others).
func status(err error) (int, string) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode
	}
	return 0, ""
}

func isNotFound(err error) bool { s, _ := status(err); return s == http.StatusNotFound }
func isConflict(err error) bool { s, _ := status(err); return s == http.StatusConflict }

// isChanged: a conditional write found the entity changed or gone.
func isChanged(err error) bool {
	s, _ := status(err)
	return s == http.StatusPreconditionFailed || s == http.StatusNotFound
}

// isPopLost: a message operation's pop receipt no longer holds (the
// message was dequeued again, or deleted).
func isPopLost(err error) bool {
	s, code := status(err)
	return s == http.StatusNotFound || (s == http.StatusBadRequest && code == "PopReceiptMismatch")
}
