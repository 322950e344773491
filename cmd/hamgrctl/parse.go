package main

import (
	"fmt"
	"strings"
	"time"
)

// parseAt parses the --at of a scheduled switchover: an RFC 3339 time
// ("2025-03-01T02:30:00+01:00"), or a clock time "15:04" or "15:04:05"
// meaning today in now's location. A clock time already past today is an
// error (give a full date for tomorrow), as is an RFC 3339 time in the
// past.
func parseAt(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("--at %s is in the past (now %s)", s, now.Format(time.RFC3339))
		}
		return t, nil
	}
	for _, layout := range []string{"15:04", "15:04:05"} {
		c, err := time.ParseInLocation(layout, s, now.Location())
		if err != nil {
			continue
		}
		t := time.Date(now.Year(), now.Month(), now.Day(), c.Hour(), c.Minute(), c.Second(), 0, now.Location())
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("--at %s is already past today (now %s); for another day give a full time like %s",
				s, now.Format("15:04:05"), t.Add(24*time.Hour).Format(time.RFC3339))
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--at %q: want an RFC 3339 time like %s, or HH:MM or HH:MM:SS for today (local time)",
		s, now.Add(time.Hour).Truncate(time.Minute).Format(time.RFC3339))
}

// assignment is one KEY=VALUE of config set.
type assignment struct {
	Key, Value string
}

// parseAssignments splits KEY=VALUE arguments. Keys are trimmed and
// lower-cased; values are trimmed and may contain '='. A key given twice
// is an error, as is an argument without '=' or with an empty key or value.
func parseAssignments(argv []string) ([]assignment, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("config set needs at least one KEY=VALUE")
	}
	seen := map[string]bool{}
	out := make([]assignment, 0, len(argv))
	for _, a := range argv {
		k, v, ok := strings.Cut(a, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("%q: want KEY=VALUE, like maximum_lag_on_failover=16MB", a)
		case k == "":
			return nil, fmt.Errorf("%q: empty key", a)
		case v == "":
			return nil, fmt.Errorf("%q: empty value for %s", a, k)
		case seen[k]:
			return nil, fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		out = append(out, assignment{Key: k, Value: v})
	}
	return out, nil
}
