package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// summary aggregates the runs of one profile × fault.
type summary struct {
	profile, fault      string
	attempted, measured int
	median, min, max    time.Duration
	lostTotal, lostMax  int
	detect, promote     time.Duration
	timelines           int
	anomalies           int
	// rejoin is the median time to restore the member the fault hit,
	// rejoins the number of such restores, reclones the fallbacks to a
	// re-clone among them.
	rejoin            time.Duration
	rejoins, reclones int
}

// summarize aggregates results by profile and fault, in first-seen order.
func summarize(results []runResult) []summary {
	var out []summary
	idx := map[string]int{}
	outages := map[string][]time.Duration{}
	detects := map[string][]time.Duration{}
	promotes := map[string][]time.Duration{}
	rejoins := map[string][]time.Duration{}
	for _, r := range results {
		if faults[r.Fault].Latency {
			continue
		}
		k := r.Profile + "/" + r.Fault
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, summary{profile: r.Profile, fault: r.Fault})
		}
		s := &out[i]
		s.attempted++
		if len(r.Anomalies) > 0 || r.Error != "" {
			s.anomalies++
		}
		if r.Rejoin > 0 {
			rejoins[k] = append(rejoins[k], time.Duration(r.Rejoin))
		}
		if r.RejoinFallback {
			s.reclones++
		}
		if !r.Measured {
			continue
		}
		s.measured++
		outages[k] = append(outages[k], time.Duration(r.Outage))
		s.lostTotal += r.Lost
		s.lostMax = max(s.lostMax, r.Lost)
		if tl := r.Timeline; tl != nil && tl.Promoted > 0 {
			detects[k] = append(detects[k], time.Duration(tl.Detected))
			promotes[k] = append(promotes[k], time.Duration(tl.Promoted))
		}
	}
	for k, i := range idx {
		s := &out[i]
		s.median, s.min, s.max = writeclient.Stats(outages[k])
		s.detect, _, _ = writeclient.Stats(detects[k])
		s.promote, _, _ = writeclient.Stats(promotes[k])
		s.timelines = len(promotes[k])
		s.rejoin, _, _ = writeclient.Stats(rejoins[k])
		s.rejoins = len(rejoins[k])
	}
	return out
}

// writeReport prints the environment, the summary table, the per-run
// details and every anomaly.
func writeReport(w io.Writer, env environment, o options, results []runResult) {
	fmt.Fprintln(w, "hamgr failover drill")
	fmt.Fprintf(w, "command:   %s\n", env.Command)
	fmt.Fprintf(w, "machine:   nproc %s, kernel %s, %s, %s\n", env.CPUs, env.Kernel, env.Postgres, env.Go)
	switch {
	case env.HamgrVersion != "":
		fmt.Fprintf(w, "hamgr:     %s (%s)\n", env.HamgrBin, env.HamgrVersion)
	case env.HamgrRev != "":
		fmt.Fprintf(w, "hamgr:     built from the working tree at %s\n", env.HamgrRev)
	}
	fmt.Fprintf(w, "started:   %s, took %s; load average %s at the start, %s at the end\n", env.Started.Format(time.RFC3339),
		time.Duration(env.Duration).Round(time.Second), env.LoadStart, env.LoadEnd)
	for _, p := range o.profiles {
		t := p.Timing
		fmt.Fprintf(w, "profile:   %-8s ttl %s, loop_wait %s, retry_timeout %s, primary_start_timeout %s\n", p.Name,
			time.Duration(t.TTL), time.Duration(t.LoopWait), time.Duration(t.RetryTimeout), time.Duration(t.PrimaryStartTimeout))
	}
	fmt.Fprintf(w, "settings:  %s\n", o.settings)
	if o.engine == localcluster.EngineMariaDB {
		fmt.Fprintln(w, "load:      (faults) one client (go-sql-driver/mysql) trying the 3 members in order, keeping the first with read_only off, one INSERT every 10 ms")
	} else {
		fmt.Fprintln(w, "load:      (faults) one client, multi-host target_session_attrs=read-write over the 3 members, one INSERT every 10 ms")
	}
	for _, f := range o.faults {
		if f.Latency {
			fmt.Fprintf(w, "measure:   %s: %s, %d per run\n", f.Name, f.Describe, o.latencyWrites)
			continue
		}
		describe := f.Describe
		if d, ok := mariadbDescribe[f.Name]; ok && o.engine == localcluster.EngineMariaDB {
			describe = d
		}
		fmt.Fprintf(w, "fault:     %s: %s;\n           unavailability = %s\n", f.Name, describe, f.OutageMethod)
	}
	if env.Interrupt {
		fmt.Fprintln(w, "INTERRUPTED: the results below are partial")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tFAULT\tRUNS\tUNAVAIL MEDIAN\tMIN\tMAX\tLOST TOTAL\tLOST MAX/RUN\tDETECT MEDIAN\tPROMOTE MEDIAN\tREJOIN MEDIAN\tRECLONES\tANOMALIES")
	for _, s := range summarize(results) {
		det, prom := "-", "-"
		if s.timelines > 0 {
			det, prom = secs(s.detect).String(), secs(s.promote).String()
		}
		unavail := []string{"-", "-", "-"}
		if s.measured > 0 {
			unavail = []string{secs(s.median).String(), secs(s.min).String(), secs(s.max).String()}
		}
		rejoin, reclones := "-", "-"
		if s.rejoins > 0 {
			rejoin, reclones = secs(s.rejoin).String(), fmt.Sprintf("%d/%d", s.reclones, s.rejoins)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", s.profile, s.fault, s.measured, s.attempted,
			unavail[0], unavail[1], unavail[2], s.lostTotal, s.lostMax, det, prom, rejoin, reclones, s.anomalies)
	}
	tw.Flush()
	fmt.Fprintln(w, "RUNS = measured/attempted; detect = leader key seen gone, promote = new leader's /primary 200, both from the fault")
	fmt.Fprintln(w, "(for a switchover: from the request). REJOIN = node crash: agent restart until the old primary streams again;")
	fmt.Fprintln(w, "switchover: request until the old primary streams again. RECLONES = rejoins that needed the wipe-and-clone fallback.")

	fmt.Fprintln(w, "\nPer run (times from the fault; timeline columns for failovers only):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tFAULT\tRUN\tCLUSTER\tPRIMARY\tEPOCH\tUNAVAIL\tACKED\tLOST\tDETECT\tELECTED\tPROMOTED\tFOLLOWING\tNOTE")
	for _, r := range results {
		if faults[r.Fault].Latency {
			continue
		}
		prim, epoch := r.OldPrimary, fmt.Sprint(r.OldEpoch)
		if r.NewPrimary != "" && (r.NewPrimary != r.OldPrimary || r.NewEpoch != r.OldEpoch) {
			prim += "->" + r.NewPrimary
			epoch += "->" + fmt.Sprint(r.NewEpoch)
		}
		tlc := []string{"-", "-", "-", "-"}
		if tl := r.Timeline; tl != nil {
			tlc = []string{tl.Detected.String(), tl.Elected.String(), tl.Promoted.String(), tl.Following.String()}
		}
		unavail := "-"
		if r.Measured {
			unavail = r.Outage.String()
		}
		var notes []string
		switch {
		case r.Error != "":
			notes = append(notes, "error: "+r.Error)
		case len(r.Anomalies) > 0:
			notes = append(notes, "ANOMALY: "+strings.Join(r.Anomalies, "; "))
		}
		if r.OutageBy != "" {
			notes = append(notes, "by "+r.OutageBy)
		}
		if len(r.SyncMembers) > 0 {
			notes = append(notes, "sync "+strings.Join(r.SyncMembers, ","))
		}
		if r.Evidence != "" {
			notes = append(notes, "evidence "+r.Evidence)
		}
		if r.Rejoin > 0 || r.RejoinFallback {
			rj := fmt.Sprintf("rejoin %s (%s)", r.Rejoin, r.RejoinHow)
			if r.RejoinFallback {
				rj += ", RE-CLONED after: " + r.RejoinError
			}
			notes = append(notes, rj)
		}
		note := strings.Join(notes, "; ")
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Profile, r.Fault, r.Run, r.Cluster,
			prim, epoch, unavail, r.Acked, r.Lost, tlc[0], tlc[1], tlc[2], tlc[3], note)
	}
	tw.Flush()

	writeLatency(w, results)

	var bad []runResult
	for _, r := range results {
		if len(r.Anomalies) > 0 || r.Error != "" {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		fmt.Fprintln(w, "\nMisbehaving runs (agent logs in <dir>/n*/agent.log):")
		for _, r := range bad {
			fmt.Fprintf(w, "  %s %s run %d (cluster %s):\n", r.Profile, r.Fault, r.Run, r.ClusterDir)
			if r.Error != "" {
				fmt.Fprintf(w, "    error: %s\n", r.Error)
			}
			for _, a := range r.Anomalies {
				fmt.Fprintf(w, "    %s\n", a)
			}
		}
	}
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// writeLatency prints the commit latency rows: per profile and row the
// median, 99th percentile and maximum over all commits of all its runs,
// the range of the per-run medians and p99s, and then, per profile, the
// cost of synchronous mode.
func writeLatency(w io.Writer, results []runResult) {
	type agg struct {
		profile, fault      string
		attempted, measured int
		samples             []time.Duration
		runMed, runP99      []time.Duration
		standbys            map[string]bool
		anomalies           int
	}
	var order []*agg
	byKey := map[string]*agg{}
	for _, r := range results {
		if !faults[r.Fault].Latency {
			continue
		}
		k := r.Profile + "/" + r.Fault
		a := byKey[k]
		if a == nil {
			a = &agg{profile: r.Profile, fault: r.Fault, standbys: map[string]bool{}}
			byKey[k] = a
			order = append(order, a)
		}
		a.attempted++
		if len(r.Anomalies) > 0 || r.Error != "" {
			a.anomalies++
		}
		if !r.Measured || r.Latency == nil {
			continue
		}
		a.measured++
		a.samples = append(a.samples, r.samples...)
		a.runMed = append(a.runMed, time.Duration(r.Latency.Median))
		a.runP99 = append(a.runP99, time.Duration(r.Latency.P99))
		a.standbys[fmt.Sprintf("%q", r.Latency.SyncStandbyNames)] = true
	}
	if len(order) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCommit latency (one client, single-row autocommit INSERTs back to back over one connection to the primary;")
	fmt.Fprintln(w, "each from sending the INSERT to its acknowledgement; healthy 3-member cluster, synchronous_commit=on):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tROW\tRUNS\tCOMMITS\tMEDIAN\tP99\tMAX\tRUN MEDIANS\tRUN P99S\tSYNCHRONOUS_STANDBY_NAMES\tANOMALIES")
	type key struct{ profile, fault string }
	med := map[key][2]time.Duration{}
	for _, a := range order {
		m, p, mx := latencyStats(a.samples)
		med[key{a.profile, a.fault}] = [2]time.Duration{m, p}
		_, mlo, mhi := writeclient.Stats(a.runMed)
		_, plo, phi := writeclient.Stats(a.runP99)
		var sn []string
		for n := range a.standbys {
			sn = append(sn, n)
		}
		sort.Strings(sn)
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s–%s\t%s–%s\t%s\t%d\n", a.profile, a.fault, a.measured, a.attempted,
			len(a.samples), ms(m), ms(p), ms(mx), ms(mlo), ms(mhi), ms(plo), ms(phi), strings.Join(sn, " "), a.anomalies)
	}
	tw.Flush()
	var profs []string
	for _, a := range order {
		if !slices.Contains(profs, a.profile) {
			profs = append(profs, a.profile)
		}
	}
	for _, p := range profs {
		as, okA := med[key{p, "commit-latency-async"}]
		sy, okS := med[key{p, "commit-latency-sync"}]
		if !okA || !okS || as[0] == 0 || as[1] == 0 {
			continue
		}
		fmt.Fprintf(w, "%s: synchronous mode costs %+.2fms at the median (%.1f×) and %+.2fms at p99 (%.1f×)\n", p,
			float64(sy[0]-as[0])/float64(time.Millisecond), float64(sy[0])/float64(as[0]),
			float64(sy[1]-as[1])/float64(time.Millisecond), float64(sy[1])/float64(as[1]))
	}
}
