package api

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// lagForms describes the accepted forms of the lag parameter, for errors.
const lagForms = "as a whole number of bytes optionally followed by a unit B, kB, MB or GB (powers of 1024), e.g. lag=1048576 or lag=16MB"

// lagUnits maps each accepted unit, lower-cased, to its size in bytes.
var lagUnits = map[string]int64{
	"":   1,
	"b":  1,
	"kb": 1 << 10,
	"mb": 1 << 20,
	"gb": 1 << 30,
}

// parseLag parses a lag bound such as "16MB" or "1048576" into bytes. Units
// are matched case-insensitively; spaces around the number and the unit are
// ignored. Negative, fractional and overflowing values are errors.
func parseLag(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := lagUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid value %q for parameter lag: give it %s", s, lagForms)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("value %q for parameter lag is too large: give it %s", s, lagForms)
	}
	return n * mult, nil
}
