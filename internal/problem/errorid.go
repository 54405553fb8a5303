package problem

import (
	"crypto/rand"
	"encoding/hex"
)

// ErrorID returns a new random id of one error occurrence,
// "urn:arr:error:<16 hex digits>": the instance of a problem whose cause
// goes to the log (with the id, as attribute error_id) and not to the
// client, so that an operator can find the one from the other.
func ErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go ≥ 1.24)
	return "urn:arr:error:" + hex.EncodeToString(b[:])
}
