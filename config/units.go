package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration read from YAML as a Go duration string ("10s",
// "500ms", "1m30s") or as a bare integer meaning seconds (10).
type Duration time.Duration

// String formats the duration like time.Duration ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML encodes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML decodes a Go duration string or an integer number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(n *yaml.Node) (Duration, error) {
	const want = `want a Go duration such as "10s" or "500ms", or a whole number of seconds`
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("a %s is not a duration: %s", kindName(n), want)
	}
	s := strings.TrimSpace(n.Value)
	if n.ShortTag() == "!!int" || isDigits(s) {
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil && n.ShortTag() == "!!int" {
			secs, err = strconv.ParseInt(s, 0, 64) // 0x10, 0o17
		}
		if err != nil || secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration: too large", n.Value)
		}
		return Duration(time.Duration(secs) * time.Second), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: %s", n.Value, want)
	}
	return Duration(v), nil
}

// isDigits reports whether s is a non-empty string of ASCII digits, with an
// optional sign.
func isDigits(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ByteSize is a number of bytes, read from YAML as an integer (bytes) or as a
// string with a unit: "64B", "512kB", "16MB", "1GB", "2TB". Units are powers
// of 1024 and case-insensitive; "KiB", "MiB", "GiB" and "TiB" are accepted too.
type ByteSize int64

var byteUnits = []struct {
	name string
	size int64
}{
	{"TB", 1 << 40},
	{"GB", 1 << 30},
	{"MB", 1 << 20},
	{"kB", 1 << 10},
	{"B", 1},
}

// String formats the size with the largest unit that divides it exactly
// ("1MB", "1536kB", "0B").
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B" // unreachable: size 1 divides all
}

// MarshalYAML encodes the size as a string with a unit.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML decodes an integer number of bytes or a size with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("a %s is not a byte size: want an integer number of bytes or a size such as \"16MB\"", kindName(n))
	}
	if n.ShortTag() == "!!int" {
		v, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			return fmt.Errorf("%q is not a byte size: too large", n.Value)
		}
		*b = ByteSize(v)
		return nil
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize parses a non-negative integer followed by an optional unit:
// B, kB, MB, GB or TB (powers of 1024, case-insensitive, also KiB..TiB). A
// bare integer means bytes. Space between number and unit is allowed.
func ParseByteSize(s string) (ByteSize, error) {
	const want = `want a whole number with an optional unit B, kB, MB, GB or TB, such as "16MB"`
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a byte size: %s", s, want)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte size: number too large", s)
	}
	unit := strings.ToUpper(strings.TrimSpace(t[i:]))
	if len(unit) == 3 && unit[1:] == "IB" {
		unit = unit[:1] + "B" // KiB, MiB, ...: the same powers of 1024
	}
	mult := int64(-1)
	switch unit {
	case "", "B":
		mult = 1
	default:
		for _, u := range byteUnits {
			if strings.ToUpper(u.name) == unit {
				mult = u.size
			}
		}
	}
	if mult < 0 {
		return 0, fmt.Errorf("%q is not a byte size: unknown unit %q; %s", s, strings.TrimSpace(t[i:]), want)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a byte size: too large", s)
	}
	return ByteSize(n * mult), nil
}

// kindName names a YAML node kind for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	default:
		return "scalar"
	}
}
