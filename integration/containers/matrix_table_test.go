package containers

import (
	"strings"
	"testing"
	"time"
)

// TestMatrixTable checks the table's arithmetic without a cluster: median
// and range over the runs that returned a record, counts summed, a failed
// run counted in "runs passed", cells -run filtered out left out.
func TestMatrixTable(t *testing.T) {
	rec := func(unavail, conv time.Duration, lost int) drillRecord {
		return drillRecord{unavailability: unavail, measured: true, converge: conv, lost: lost, failovers: 1}
	}
	cells := []*matrixCell{
		{fault: "docker pause", timing: "fast", mode: asyncMode, runs: []matrixRun{
			{rec: rec(3*time.Second, time.Second, 2), done: true, passed: true},
			{rec: rec(5*time.Second, 2*time.Second, 0), done: true, passed: true},
			{rec: rec(4*time.Second, 4*time.Second, 1), done: true, passed: true},
			{passed: false}, // fatal: no record
		}},
		{fault: "docker pause", timing: "default", mode: syncMode, fencing: redfishFencing, runs: []matrixRun{{passed: true}}},
	}
	got := matrixTable(cells)
	want := "| docker pause | fast | async | off | 3/4 | 4.00 s (3.00 s–5.00 s) | 0 | 3 | 0 | 3 | 2.00 s (1.00 s–4.00 s) |"
	if !strings.Contains(got, want) {
		t.Errorf("table:\n%s\nwant the row\n%s", got, want)
	}
	if strings.Contains(got, "default") {
		t.Errorf("a cell -run filtered out is in the table:\n%s", got)
	}
	if got := spread([]time.Duration{time.Second, 3 * time.Second}); got != "2.00 s (1.00 s–3.00 s)" {
		t.Errorf("spread of two = %q, want the mean of both as the median", got)
	}
}
