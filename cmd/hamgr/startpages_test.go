package main

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFileKB is this process's RssFile (kB) from /proc/self/status.
func rssFileKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssFile:" {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// releaseStartupPages unmaps the pages of this test binary that its start
// touched, and the process runs on (its code faults back in).
func TestReleaseStartupPages(t *testing.T) {
	before := rssFileKB(t)
	releaseStartupPages(slog.New(slog.DiscardHandler))
	after := rssFileKB(t)
	t.Logf("RssFile %d kB before, %d kB after", before, after)
	if after >= before {
		t.Fatalf("RssFile %d kB after releasing, want below the %d kB before", after, before)
	}
}

func TestParseRange(t *testing.T) {
	lo, hi, err := parseRange("00400000-011cf000")
	if err != nil || lo != 0x400000 || hi != 0x11cf000 {
		t.Errorf("parseRange = %x, %x, %v", lo, hi, err)
	}
	for _, bad := range []string{"", "400000", "zz-11", "2000-1000"} {
		if _, _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
}
