package resultstore

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrInvalidKey is returned (wrapped) for keys a store refuses.
var ErrInvalidKey = errors.New("resultstore: invalid key")

// DefaultContentType is what stores record for a Put given no content
// type.
const DefaultContentType = "application/octet-stream"

const (
	maxPathKeyLen     = 1024
	maxPathSegmentLen = 200 // leaves room in a 255-byte file name for a temporary suffix
	maxContentTypeLen = 1024
)

var tempName = regexp.MustCompile(`\.[0-9a-f]+\.tmp$`)

// ValidatePathKey returns nil if key is a path key, else an error wrapping
// ErrInvalidKey. The stores that keep results under file-system-like
// names accept exactly the path keys (resultstore/fileresult, embedded),
// so that a key valid in one is valid in the other. A path key is valid
// UTF-8 of at most 1024 bytes without control characters or backslashes,
// made of "/"-separated non-empty segments of at most 200 bytes other than
// "." and ".."; its last segment does not end in ".attrs" and does not look
// like a temporary file (".<hex>.tmp"), names the file store's layout
// reserves.
func ValidatePathKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > maxPathKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, maxPathKeyLen)
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\\' {
			return bad("control character or backslash")
		}
	}
	segs := strings.Split(key, "/")
	for _, seg := range segs {
		switch {
		case seg == "":
			return bad("empty path segment (leading, trailing or double slash)")
		case seg == "." || seg == "..":
			return bad(`"." or ".." segment`)
		case len(seg) > maxPathSegmentLen:
			return bad(fmt.Sprintf("segment longer than %d bytes", maxPathSegmentLen))
		}
	}
	last := segs[len(segs)-1]
	if strings.HasSuffix(last, ".attrs") || tempName.MatchString(last) {
		return bad("name reserved by the storage layout")
	}
	return nil
}

// CheckContentType returns the content type a store that keeps its own
// attributes (resultstore/fileresult, embedded) records for a Put given
// ct: ct itself, or DefaultContentType when ct is empty. It refuses a
// content type longer than 1024 bytes or holding a control character, so
// that a stored type can never inject a header when it is served.
func CheckContentType(ct string) (string, error) {
	if ct == "" {
		return DefaultContentType, nil
	}
	if len(ct) > maxContentTypeLen {
		return "", errors.New("content type too long")
	}
	for _, r := range ct {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control character in content type")
		}
	}
	return ct, nil
}
