package azurequeue

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// The text of an Azure queue message the driver writes, owned by this file:
// the standard base64 (what the Azure SDKs and Functions read and write by
// default) of
//
//	0x01 uvarint(len(id)) id uvarint(due) uvarint(skips) body
//
// due: Unix milliseconds before which the message must not be delivered
// (0: none; set only for delays beyond Azure's 7-day visibility cap);
// skips: dequeues that were not deliveries (a long-delayed message taken
// early and hidden again), subtracted from Azure's DequeueCount to give the
// attempt number.
const frameV1 = 0x01

// maxContent is Azure's limit on a message's text (64 KiB).
const maxContent = 64 << 10

type frame struct {
	id    string
	body  []byte
	due   int64 // Unix ms, 0: none
	skips int64
}

func (f frame) encode() string {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(f.id)+len(f.body))
	b = append(b, frameV1)
	b = binary.AppendUvarint(b, uint64(len(f.id)))
	b = append(b, f.id...)
	b = binary.AppendUvarint(b, uint64(max(f.due, 0)))
	b = binary.AppendUvarint(b, uint64(max(f.skips, 0)))
	b = append(b, f.body...)
	return base64.StdEncoding.EncodeToString(b)
}

var errFrame = errors.New("azqueue: a queue message arr did not write (or of a later format)")

func decodeFrame(s string) (frame, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != frameV1 {
		return frame{}, errFrame
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return frame{}, errFrame
	}
	f := frame{id: string(b[k : k+int(n)])}
	b = b[k+int(n):]
	due, k := binary.Uvarint(b)
	if k <= 0 {
		return frame{}, errFrame
	}
	b = b[k:]
	skips, k := binary.Uvarint(b)
	if k <= 0 {
		return frame{}, errFrame
	}
	f.due, f.skips, f.body = int64(due), int64(skips), b[k:]
	return f, nil
}

// maxVisibility is Azure's cap on a message's visibility timeout.
const maxVisibility = 7 * 24 * time.Hour

// visibility is d in whole seconds for Azure, rounded up (a lease or
// delay is never shorter than asked) and capped at maxVisibility.
func visibility(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	d = min(d, maxVisibility)
	return int32((d + time.Second - 1) / time.Second)
}
