package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string ("90s",
// "10m", "1h30m") or as whole days, alone or followed by a Go duration
// ("7d", "1d12h"). A bare number is refused: its unit would be a guess.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d the way ParseDuration reads it: "7d" for whole days,
// time.Duration's form otherwise.
func (d Duration) String() string {
	const day = 24 * time.Hour
	if t := time.Duration(d); t > 0 && t%day == 0 {
		return strconv.FormatInt(int64(t/day), 10) + "d"
	}
	return time.Duration(d).String()
}

var daysRE = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// ParseDuration reads a Duration: a Go duration string, optionally
// preceded by a whole number of days ("7d", "1d12h").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if m := daysRE.FindStringSubmatch(s); m != nil {
		days, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || days > int64(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("%q is too long a duration", s)
		}
		d := time.Duration(days) * 24 * time.Hour
		if m[2] != "" {
			rest, err := time.ParseDuration(m[2])
			if err != nil || rest < 0 || d > math.MaxInt64-rest {
				return 0, fmt.Errorf("%q is not a duration", s)
			}
			d += rest
		}
		return Duration(d), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML reads a scalar with ParseDuration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return nodeError(n, "%s is not a duration (use e.g. 30s, 10m, 24h, 7d)", describeNode(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, "%q is not a duration (use e.g. 30s, 10m, 24h, 7d)", n.Value)
	}
	*d = v
	return nil
}

// MarshalYAML writes d as String does.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a number of bytes, written as a whole number ("1048576") or
// with a unit: B, KiB, MiB, GiB (powers of 1024) or kB, MB, GB (powers of
// 1000), case-insensitive, e.g. "512KiB", "1 MiB", "10MB".
type ByteSize int64

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
}

var byteSizeRE = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)

// ParseByteSize reads a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	m := byteSizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	unit, ok := byteUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large a size", s)
	}
	return ByteSize(n * unit), nil
}

// String writes b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b > 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a scalar with ParseByteSize.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return nodeError(n, "%s is not a size (use e.g. 1048576, 512KiB, 1MiB)", describeNode(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return nodeError(n, "%q is not a size (use e.g. 1048576, 512KiB, 1MiB)", n.Value)
	}
	*b = v
	return nil
}

// MarshalYAML writes b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// nodeError is a decoding error that yaml.v3 collects with the others
// instead of stopping; the column lets Parse find the key it belongs to.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{
		fmt.Sprintf("line %d: column %d: ", n.Line, n.Column) + fmt.Sprintf(format, args...),
	}}
}

func describeNode(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	case n.ShortTag() == "!!null":
		return "an empty value"
	}
	return strconv.Quote(n.Value)
}
