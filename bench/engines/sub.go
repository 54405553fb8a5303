package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// Sub is one prepared submission. All byte slices are built before the
// timed phase so that the measurement covers the store, not the harness.
type Sub struct {
	ID    [16]byte // UUIDv7: 48-bit unix ms, version, random
	Op    []byte   // operation record, ~300 B of JSON
	Body  []byte   // request body, 1 KiB
	Ready int64    // ready time, unix ns
	QKey  []byte   // ready (8 B big endian) + ID: ordered by ready time
	QVal  []byte   // small queue payload (attempt, lease), 15 B -> entry ~40 B

	// Single-keyspace keys (Pebble, file baselines): one-byte prefix + key.
	PKOp, PKBody, PKQ []byte
}

func newUUIDv7(t time.Time) [16]byte {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	rand.Read(u[6:])
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	return u
}

func uuidString(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newSub builds a submission created at t.
func newSub(t time.Time) *Sub {
	s := &Sub{ID: newUUIDv7(t)}
	id := uuidString(s.ID)
	// A realistic operation record; padded to ~300 bytes.
	op := fmt.Sprintf(`{"id":%q,"state":"pending","method":"POST","path":"/v1/jobs/render","created_at":%q,`+
		`"updated_at":%q,"attempt":0,"max_attempts":5,"content_type":"application/json","body_size":1024,`+
		`"idempotency_key":"%x"}`,
		id, t.UTC().Format(time.RFC3339Nano), t.UTC().Format(time.RFC3339Nano), s.ID[8:])
	s.Op = []byte(op)
	// 1 KiB body: base64 of random bytes (roughly JSON-like entropy, not
	// trivially compressible).
	raw := make([]byte, 768)
	rand.Read(raw)
	s.Body = []byte(base64.StdEncoding.EncodeToString(raw))[:1024]
	s.Ready = t.UnixNano()
	s.QKey = make([]byte, 24)
	binary.BigEndian.PutUint64(s.QKey, uint64(s.Ready))
	copy(s.QKey[8:], s.ID[:])
	s.QVal = make([]byte, 15) // attempt(1) + lease deadline(8) + worker slot(6)
	s.PKOp = append([]byte{'o'}, s.ID[:]...)
	s.PKBody = append([]byte{'b'}, s.ID[:]...)
	s.PKQ = append([]byte{'q'}, s.QKey...)
	return s
}

func makeSubs(n int) []*Sub {
	subs := make([]*Sub, n)
	t := time.Now()
	for i := range subs {
		// Spread creation times a little so keys are time ordered across
		// milliseconds, as in production.
		subs[i] = newSub(t.Add(time.Duration(i) * 50 * time.Microsecond))
	}
	return subs
}

// appendRecord encodes s as length-prefixed key/value pairs (used by the
// plain-file baselines).
func appendRecord(b []byte, s *Sub) []byte {
	for _, kv := range [][2][]byte{{s.PKOp, s.Op}, {s.PKBody, s.Body}, {s.PKQ, s.QVal}} {
		b = binary.AppendUvarint(b, uint64(len(kv[0])))
		b = append(b, kv[0]...)
		b = binary.AppendUvarint(b, uint64(len(kv[1])))
		b = append(b, kv[1]...)
	}
	return b
}
