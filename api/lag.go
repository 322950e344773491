package api

import (
	"fmt"

	"github.com/hamgr/hamgr/config"
)

// lagForms describes the accepted forms of the lag parameter, for errors.
const lagForms = "give a whole number of bytes optionally followed by a unit B, kB, MB, GB or TB (powers of 1024, as in the config file), e.g. lag=1048576 or lag=16MB"

// parseLag parses a lag bound such as "16MB" or "1048576" into bytes. It
// accepts exactly what the config file accepts for a byte size
// (config.ParseByteSize): units B, kB, MB, GB, TB and KiB..TiB, any case,
// optional spaces. Negative, fractional and overflowing values are errors.
func parseLag(s string) (int64, error) {
	n, err := config.ParseByteSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid value for parameter lag: %w; %s", err, lagForms)
	}
	return int64(n), nil
}
