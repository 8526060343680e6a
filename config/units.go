package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In the config file it is a whole number with an
// optional unit: KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers
// of 1000); units are matched without regard to case, and a space may separate
// the number from its unit ("4096", "64KiB", "256 MiB", "1GB"). A bare TOML
// integer is a number of bytes. Fractions ("1.5GiB"), negative numbers and
// sizes of 8 EiB or more are refused. Whether zero is acceptable is up to the
// field: [Config.Validate] refuses it where it is meaningless.
type Size int64

// Units of Size.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// unit is a unit a Size or a Duration is written in, and how many bytes or
// nanoseconds it is.
type unit struct {
	name string
	mult int64
}

// sizeUnits lists the accepted units; binary ones first, largest first, so
// that formatting picks the largest exact binary unit.
var sizeUnits = []unit{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

const unitHelp = "use KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000)"

// ParseSize parses a size as written in the config file. See [Size].
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size: write a number of bytes with an optional unit, e.g. \"256MiB\"")
	}
	rest := strings.TrimLeft(t, "0123456789.+-")
	num, unitName := t[:len(t)-len(rest)], strings.TrimSpace(rest)
	mult := int64(1)
	if unitName != "" {
		u := slices.IndexFunc(sizeUnits, func(u unit) bool { return strings.EqualFold(unitName, u.name) })
		if u < 0 {
			return 0, fmt.Errorf("size %q: unknown unit %q: %s", s, unitName, unitHelp)
		}
		mult = sizeUnits[u].mult
	}
	switch {
	case num == "":
		return 0, fmt.Errorf("size %q: no number: write e.g. \"256MiB\"", s)
	case strings.HasPrefix(num, "-"):
		return 0, fmt.Errorf("size %q: must not be negative", s)
	case strings.ContainsAny(num, "+-"):
		return 0, fmt.Errorf("size %q: not a number", s)
	case strings.Contains(num, "."):
		return 0, fractionError(s, num, mult)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large: sizes must be below 8 EiB", s)
	}
	return Size(n * mult), nil
}

// fractionError explains that fractions are refused and, when the value is
// a whole number of bytes, says how to write it.
func fractionError(s, num string, mult int64) error {
	r, ok := new(big.Rat).SetString(num)
	if ok {
		r.Mul(r, new(big.Rat).SetInt64(mult))
		if r.IsInt() && r.Num().IsInt64() && r.Num().Int64() > 0 {
			return fmt.Errorf("size %q: fractions are not accepted: write %s", s, Size(r.Num().Int64()))
		}
	}
	return fmt.Errorf("size %q: fractions are not accepted: write a whole number of bytes or of a smaller unit", s)
}

// String formats the size in the largest binary unit that holds it exactly
// ("256MiB", "1536MiB", "4KiB"), or as a plain number of bytes.
func (s Size) String() string {
	if s > 0 {
		for _, u := range sizeUnits[:4] {
			if int64(s)%u.mult == 0 {
				return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText implements encoding.TextMarshaler; see [Size.String].
func (s Size) MarshalText() ([]byte, error) {
	if s < 0 {
		return nil, fmt.Errorf("size %d: must not be negative", int64(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; see [ParseSize].
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err == nil {
		*s = v
	}
	return err
}

// Duration is a time.Duration written in Go's syntax: "20ms", "60s", "2m",
// "1h30m". A bare number has no unit and is refused.
type Duration time.Duration

// String formats the duration in a single unit that holds it exactly:
// "20ms", "60s", "1h", "1500ms".
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []unit{{"h", int64(time.Hour)}, {"s", int64(time.Second)}, {"ms", int64(time.Millisecond)}, {"us", int64(time.Microsecond)}} {
		if int64(d)%u.mult == 0 {
			return strconv.FormatInt(int64(d)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// MarshalText implements encoding.TextMarshaler; see [Duration.String].
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with time.ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("duration %q has no unit: write e.g. \"20ms\" or \"60s\"", s)
		}
		return fmt.Errorf("duration %q: not a duration: write e.g. \"20ms\", \"60s\" or \"2m\"", s)
	}
	*d = Duration(v)
	return nil
}
