package containers

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// matrixFault is a fault of the matrix: a short name for the subtest, a
// constructor (each drill needs a fault of its own) and the name of the
// fault in the table (the fencing is a column of its own).
type matrixFault struct {
	slug string
	make func() fault
	name string
}

// matrixFaults are every drill's faults but the rolling restart (a
// sequence of switchovers, not a fault with a heal), and four with
// failsafe_mode on, for the cells with fencing f. docker kill is among
// them under fencing require; without fencing it is not failed over
// without an operator, and is included only with
// HAMGR_CONTAINER_DRILLS=all.
func matrixFaults(f fencing) []matrixFault {
	fs := []matrixFault{
		{slug: "pause", make: pauseFault},
		{slug: "disconnect", make: disconnectFault},
		{slug: "cut-etcd", make: cutFromEtcdFault},
		{slug: "cut-etcd-replicas", make: cutFromAllButClientsFault},
		{slug: "cut-replicas", make: cutFromReplicasFault},
		{slug: "oneway-to-etcd", make: func() fault { return oneWayFault("OUTPUT") }},
		{slug: "oneway-from-etcd", make: func() fault { return oneWayFault("INPUT") }},
		{slug: "etcd-quorum-loss", make: etcdQuorumLoss},
		{slug: "etcd-full-outage", make: etcdFullOutage},
		{slug: "cpu-5pct", make: func() fault { return cpuThrottle(100*time.Millisecond, 5*time.Millisecond) }},
		{slug: "cpu-0.1pct", make: func() fault { return cpuThrottle(time.Second, time.Millisecond) }},
		{slug: "failsafe-etcd-quorum-loss", make: func() fault { return failsafeEtcdOutage("etcd quorum loss (leader + 1 stopped)", 2) }},
		{slug: "failsafe-etcd-full-outage", make: func() fault { return failsafeEtcdOutage("etcd full outage (3 stopped)", 3) }},
		{slug: "failsafe-cut-etcd", make: failsafeCutFromEtcd},
		{slug: "failsafe-cut-etcd-replicas", make: failsafeCutFromAllButClients},
	}
	if f == redfishFencing || os.Getenv("HAMGR_CONTAINER_DRILLS") == "all" {
		fs = append(fs, matrixFault{slug: "kill", make: killFault})
	}
	for i, mf := range fs {
		fs[i].name = mf.make().name
		if f == redfishFencing {
			fs[i].make = func() fault { return fenced(mf.make()) }
		}
	}
	return fs
}

// matrixFencings are the fencing settings HAMGR_FAULT_MATRIX_FENCING
// names: "off" (the default), "require" or "both".
func matrixFencings() ([]fencing, error) {
	switch v := os.Getenv("HAMGR_FAULT_MATRIX_FENCING"); v {
	case "", "off":
		return []fencing{noFencing}, nil
	case "require":
		return []fencing{redfishFencing}, nil
	case "both":
		return []fencing{noFencing, redfishFencing}, nil
	default:
		return nil, fmt.Errorf("HAMGR_FAULT_MATRIX_FENCING=%q: want off, require or both", v)
	}
}

// matrixRun is one drill of a cell: its record once it returned one.
type matrixRun struct {
	rec    drillRecord
	done   bool // runDrillWith returned
	passed bool
}

// matrixCell is one fault × timing profile × replication mode × fencing.
type matrixCell struct {
	fault, timing string
	mode          replication
	fencing       fencing
	runs          []matrixRun
}

// TestFaultMatrix runs every matrix fault × {fast, default} timing ×
// {sync, async} replication × the fencing settings of
// HAMGR_FAULT_MATRIX_FENCING HAMGR_FAULT_MATRIX times each, as subtests
// TestFaultMatrix/<fault>/<profile>/<mode>/<fencing>/run<i> (so -run
// selects cells, e.g. -run 'TestFaultMatrix/.*/fast/'), and writes the
// table of what they measured with t.Log and, if HAMGR_FAULT_MATRIX_OUT
// names a file, to it. Each run asserts what the single drill asserts
// (lost acknowledgements only in synchronous mode; under fencing, the
// BMC resets too).
func TestFaultMatrix(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("HAMGR_FAULT_MATRIX"))
	if err != nil || n < 1 {
		t.Skip("the fault matrix runs every container drill fault × {fast, default} timing × {sync, async} replication " +
			"(about a minute a run, two for the failsafe faults held 60 s; 60 cells without fencing, 64 with); HAMGR_FAULT_MATRIX=<runs per cell> runs it, " +
			"HAMGR_FAULT_MATRIX_FENCING=off|require|both picks fencing (off by default), HAMGR_FAULT_MATRIX_OUT=<file> " +
			"also writes the markdown table there, -run 'TestFaultMatrix/.*/fast/' selects cells")
	}
	fencings, err := matrixFencings()
	if err != nil {
		t.Fatal(err)
	}
	requireEngine(t)
	begin := time.Now()
	loadBefore := loadAvg()
	var cells []*matrixCell
	for _, fe := range fencings {
		for _, mf := range matrixFaults(fe) {
			t.Run(mf.slug, func(t *testing.T) {
				cells = append(cells, runMatrixFault(t, n, mf, fe)...)
			})
		}
	}
	table := matrixTable(cells)
	header := fmt.Sprintf("fault matrix: %d run(s) per cell, %s to %s (%v), load average %s before, %s after\n\n",
		n, begin.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339),
		time.Since(begin).Round(time.Second), loadBefore, loadAvg())
	t.Log("\n" + header + table)
	if out := os.Getenv("HAMGR_FAULT_MATRIX_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(header+table), 0o644); err != nil {
			t.Errorf("write the fault matrix to %s: %v", out, err)
		}
	}
}

// runMatrixFault runs fault mf's cells with fencing fe, n runs each.
func runMatrixFault(t *testing.T, n int, mf matrixFault, fe fencing) []*matrixCell {
	var cells []*matrixCell
	for _, p := range []profile{fastProfile, defaultProfile} {
		t.Run(p.name, func(t *testing.T) {
			for _, m := range []replication{syncMode, asyncMode} {
				t.Run(m.String(), func(t *testing.T) {
					t.Run(fe.String(), func(t *testing.T) {
						cell := &matrixCell{fault: mf.name, timing: p.name, mode: m, fencing: fe}
						cells = append(cells, cell)
						for i := range n {
							cell.runs = append(cell.runs, runMatrixDrill(t, i+1, mf, drillOptions{timing: p, mode: m, fencing: fe}))
						}
					})
				})
			}
		})
	}
	return cells
}

// runMatrixDrill runs one drill of a cell as subtest run<i>.
func runMatrixDrill(t *testing.T, i int, mf matrixFault, o drillOptions) matrixRun {
	var r matrixRun
	r.passed = t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
		r.rec = runDrillWith(t, mf.make(), o)
		r.done = true
	})
	return r
}

// loadAvg is /proc/loadavg's three load averages, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// matrixTable renders the cells that ran as a markdown table: durations
// as median (min–max) over the runs that returned a record, counts summed.
func matrixTable(cells []*matrixCell) string {
	var b strings.Builder
	b.WriteString("| fault | timing | replication | fencing | runs passed | write unavailability, median (min–max) | split-brain writes | acked writes lost | false failovers | failovers | converge after heal, median (min–max) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cells {
		if allSkippedOrFiltered(c.runs) {
			continue
		}
		var unavail, conv []time.Duration
		var sb, lost, ff, fo, passed, done int
		for _, r := range c.runs {
			if r.passed {
				passed++
			}
			if !r.done {
				continue
			}
			done++
			if r.rec.measured {
				unavail = append(unavail, r.rec.unavailability)
			}
			conv = append(conv, r.rec.converge)
			sb += r.rec.splitBrain
			lost += r.rec.lost
			ff += r.rec.falseFailovers
			fo += r.rec.failovers
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |\n",
			c.fault, c.timing, c.mode, c.fencing, passed, len(c.runs), spread(unavail),
			count(sb, done), count(lost, done), count(ff, done), count(fo, done), spread(conv))
	}
	return b.String()
}

// allSkippedOrFiltered tells whether no run of the cell returned a record
// and none failed: -run filtered the cell out (or every run skipped).
func allSkippedOrFiltered(runs []matrixRun) bool {
	for _, r := range runs {
		if r.done || !r.passed {
			return false
		}
	}
	return true
}

// count is a sum over the runs that returned a record, "–" without one.
func count(sum, done int) string {
	if done == 0 {
		return "–"
	}
	return strconv.Itoa(sum)
}

// spread is "median (min–max)" of ds, rounded to 10 ms, or "–".
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	r := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Round(10*time.Millisecond).Seconds()) }
	if len(s) == 1 {
		return r(med)
	}
	return fmt.Sprintf("%s (%s–%s)", r(med), r(s[0]), r(s[len(s)-1]))
}
