package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
)

func (a *app) listCmd() *cobra.Command {
	var asJSON, watch bool
	var interval time.Duration
	c := &cobra.Command{
		Use:   "list [--json] [--watch [--interval 1s]]",
		Short: "Show the cluster's members, leader and pending request",
		Long: `Show the cluster as the agents last published it in etcd.

The header line names the cluster, the leader (the member holding the
leader key) and its epoch, whether automatic failover is paused, and any
pending switchover or failover request. One line per member follows:

  MEMBER     the member's name
  ADDRESS    where clients and replicas reach its PostgreSQL
  ROLE       "leader" for the key holder; otherwise what its database is
             (replica, primary — a primary that is not the leader is being
             stopped or fenced — or unknown)
  STATE      what its agent is doing (running, starting, stopped, crashed,
             fenced, cannot_follow, ...); REASON says why
  TL, LSN    timeline and WAL position
  LAG        bytes behind the leader's last published position
  UPSTREAM   the member a replica follows and whether it is streaming
  TAGS       nofailover and a priority other than the default 1
  PROBLEM    the code of a condition an operator should look at, as its
             agent's last decision named it (durability_at_risk,
             no_failover_candidate, cannot_follow, ...: docs/design.md,
             "Problems"); "-" when none. REASON says it in words

A member whose agent is down disappears from the list when its etcd lease
expires (after ttl). Positions are as of each agent's last loop round.

Use --json for scripts (the document's fields are stable), --watch to
refresh every --interval until Ctrl-C. Safe at any time: it only reads.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.open()
			if err != nil {
				return err
			}
			render := func(ctx context.Context, out io.Writer) error {
				rctx, cancel := a.reqCtx(ctx)
				defer cancel()
				snap, err := s.Load(rctx)
				if err != nil {
					return a.storeErr(err)
				}
				if asJSON {
					return writeJSON(out, listDocument(a.target.Cluster, snap))
				}
				return writeList(out, a.target.Cluster, snap, a.now())
			}
			if !watch {
				return render(cmd.Context(), a.stdout)
			}
			if interval <= 0 {
				return usagef("--interval %v: must be positive", interval)
			}
			return a.watch(cmd.Context(), interval, render)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON document instead of a table")
	c.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every --interval until interrupted")
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval of --watch")
	return c
}

// watch renders every interval until ctx ends: in place on a terminal,
// otherwise as successive blocks separated by a blank line. A failed
// render is shown and retried, not fatal.
func (a *app) watch(ctx context.Context, interval time.Duration, render func(context.Context, io.Writer) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "Every %v: hamgrctl list    %s\n\n", interval, a.now().Format("2006-01-02 15:04:05"))
		if err := render(ctx, &buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(&buf, "hamgrctl: %v\n", err)
		}
		switch {
		case a.stdoutTTY:
			io.WriteString(a.stdout, "\x1b[H\x1b[2J")
		case !first:
			io.WriteString(a.stdout, "\n")
		}
		if _, err := a.stdout.Write(buf.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// listJSON is the stable document of list --json.
type listJSON struct {
	Cluster string `json:"cluster"`
	// Leader is the key holder's name, "" when none.
	Leader   string `json:"leader"`
	Epoch    int64  `json:"epoch"`
	Paused   bool   `json:"paused"`
	Revision int64  `json:"revision"`
	// SynchronousMode is off, on or strict; SyncStandbys the leader's
	// recorded synchronous standbys.
	SynchronousMode string       `json:"synchronous_mode"`
	SyncStandbys    []string     `json:"sync_standbys"`
	Request         *requestJSON `json:"request"`
	Members         []memberJSON `json:"members"`
	// Fenced lists the fences to show: the current promotion's fence step
	// and operators' fences of members that have not published a record
	// since.
	Fenced []cluster.FenceOutcome `json:"fenced"`
	// FenceOwed is the fence a promotion took the key for and has not
	// confirmed (its target may still run as a primary), nil when none.
	FenceOwed *cluster.FenceOwed `json:"fence_owed,omitempty"`
}

type requestJSON struct {
	Kind        string     `json:"kind"`
	From        string     `json:"from,omitempty"`
	To          string     `json:"to,omitempty"`
	At          *time.Time `json:"at,omitempty"`
	RequestedAt time.Time  `json:"requested_at"`
	RequestedBy string     `json:"requested_by,omitempty"`
	// Handoff is set once the old primary has stopped writes.
	Handoff *handoffJSON `json:"handoff,omitempty"`
}

type handoffJSON struct {
	Target    string    `json:"target"`
	FinalLSN  string    `json:"final_lsn"`
	StoppedAt time.Time `json:"stopped_at"`
}

type memberJSON struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
	// Role is "leader" for the key holder, else the database's role.
	Role   string `json:"role"`
	DBRole string `json:"db_role"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Problem is the member's problem code; absent when none.
	Problem  string `json:"problem,omitempty"`
	Timeline uint32 `json:"timeline"`
	LSN      string `json:"lsn"`
	// Position is the engine's position (a GTID set on MariaDB/MySQL,
	// where timeline and lsn are zero); Coordinates the database's own
	// log coordinates (a binary log file and offset), when it shows any.
	Position    cluster.Position `json:"position"`
	Coordinates string           `json:"coordinates,omitempty"`
	LagBytes    int64            `json:"lag_bytes"`
	LagSeconds  float64          `json:"lag_seconds"`
	Streaming   bool             `json:"streaming"`
	Upstream    string           `json:"upstream,omitempty"`
	NoFailover  bool             `json:"nofailover"`
	Priority    int              `json:"priority"`
	APIURL      string           `json:"api_url,omitempty"`
	UpdatedAt   time.Time        `json:"updated_at"`
}

func listDocument(name string, s cluster.Snapshot) listJSON {
	d := listJSON{Cluster: name, Revision: s.Revision, Members: []memberJSON{}, SynchronousMode: string(cluster.SyncOff), SyncStandbys: []string{}}
	if s.Config != nil && s.Config.SynchronousMode != "" {
		d.SynchronousMode = string(s.Config.SynchronousMode)
	}
	if s.Sync != nil {
		d.SyncStandbys = append(d.SyncStandbys, s.Sync.Members...)
	}
	if s.Leader != nil {
		d.Leader, d.Epoch = s.Leader.Name, int64(s.Leader.Epoch)
	}
	if s.Config != nil {
		d.Paused = s.Config.Paused
	}
	if r := s.Request; r != nil {
		rj := &requestJSON{Kind: string(r.Kind), From: r.From, To: r.To, RequestedAt: r.RequestedAt, RequestedBy: r.RequestedBy}
		if !r.At.IsZero() {
			at := r.At
			rj.At = &at
		}
		if h := r.Handoff; h != nil {
			rj.Handoff = &handoffJSON{Target: h.Target, FinalLSN: h.Final.String(), StoppedAt: h.StoppedAt}
		}
		d.Request = rj
	}
	d.Fenced = append([]cluster.FenceOutcome{}, fencedMembers(s)...)
	d.FenceOwed = s.FenceOwed
	for _, m := range s.Members {
		tl, lsn, _ := m.Position.PostgreSQL()
		d.Members = append(d.Members, memberJSON{
			Name: m.Name, Host: m.ConnHost, Port: m.ConnPort, Role: roleOf(s, m), DBRole: m.Role.String(),
			State: string(m.State), Reason: m.Reason, Problem: string(m.Problem), Timeline: tl, LSN: lsn.String(),
			Position: m.Position, Coordinates: m.Coordinates,
			LagBytes: m.LagBytes, LagSeconds: m.LagSeconds, Streaming: m.Streaming, Upstream: m.Upstream,
			NoFailover: m.Tags.NoFailover, Priority: m.Tags.Priority, APIURL: m.APIURL, UpdatedAt: m.UpdatedAt,
		})
	}
	return d
}

func writeJSON(out io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

func roleOf(s cluster.Snapshot, m cluster.Member) string {
	if s.Leader != nil && s.Leader.Name == m.Name {
		return "leader"
	}
	return m.Role.String()
}

// writeList prints the header lines and the member table.
func writeList(out io.Writer, name string, s cluster.Snapshot, now time.Time) error {
	leader := "none"
	if s.Leader != nil {
		leader = fmt.Sprintf("%s (epoch %d)", s.Leader.Name, s.Leader.Epoch)
	} else if s.LastLeader != nil {
		leader = fmt.Sprintf("none (last: %s, epoch %d)", s.LastLeader.Name, s.LastLeader.Epoch)
	}
	paused := "no"
	if s.Config != nil && s.Config.Paused {
		paused = "yes (no automatic failover)"
	}
	syncText := ""
	if s.Config != nil && s.Config.SynchronousMode.Enabled() {
		standbys := "none"
		if s.Sync != nil && len(s.Sync.Members) > 0 {
			standbys = strings.Join(s.Sync.Members, ",")
		}
		syncText = fmt.Sprintf("   Sync: %s (standbys: %s)", s.Config.SynchronousMode, standbys)
	}
	fmt.Fprintf(out, "Cluster: %s   Leader: %s   Paused: %s   Members: %d%s\n", name, leader, paused, len(s.Members), syncText)
	fmt.Fprintf(out, "Request: %s\n", describeRequest(s.Request, now))
	for _, f := range fencedMembers(s) {
		fmt.Fprintf(out, "Fenced: %s\n", describeFence(f))
	}
	if o := s.FenceOwed; o != nil {
		fmt.Fprintf(out, "Fence owed: %s (the primary of epoch %d; %s took the key to promote over it and has not confirmed its fence: the next promotion fences it first)\n",
			o.Target, o.Lost, o.By)
	}
	fmt.Fprintln(out)
	if len(s.Members) == 0 {
		fmt.Fprintln(out, "No member has published a record: no agent is running, or the cluster name or etcd prefix is wrong.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	wal := walPositions(s.Members)
	posHeader := "TL\tLSN"
	if !wal {
		posHeader = "POSITION"
	}
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tROLE\tSTATE\t"+posHeader+"\tLAG\tUPSTREAM\tTAGS\tPROBLEM\tREASON")
	for _, m := range s.Members {
		fmt.Fprintf(tw, "%s\t%s:%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.ConnHost, m.ConnPort, roleOf(s, m), m.State,
			positionCells(m, wal), lagText(s, m), upstreamText(m), tagsText(m.Tags), dash(string(m.Problem)), dash(m.Reason))
	}
	return tw.Flush()
}

// walPositions reports whether every member's position is a PostgreSQL
// one (or unknown): the list then shows timeline and LSN columns.
func walPositions(ms []cluster.Member) bool {
	for _, m := range ms {
		if _, _, ok := m.Position.PostgreSQL(); !ok && !m.Position.IsZero() {
			return false
		}
	}
	return true
}

// positionCells is m's position in the list's position columns: timeline
// and LSN when every member's position is PostgreSQL's (wal); otherwise
// the engine's notation (a GTID set), followed by the database's own log
// coordinates when it shows them.
func positionCells(m cluster.Member, wal bool) string {
	if wal {
		tl, lsn, _ := m.Position.PostgreSQL()
		return fmt.Sprintf("%d\t%s", tl, lsn)
	}
	if m.Coordinates != "" {
		return fmt.Sprintf("%s (%s)", m.Position, m.Coordinates)
	}
	return m.Position.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lagText(s cluster.Snapshot, m cluster.Member) string {
	if s.Leader != nil && s.Leader.Name == m.Name {
		return "-"
	}
	if m.LagBytes < 0 {
		return "unknown"
	}
	if m.LagSeconds > 0 {
		return fmt.Sprintf("%s, %.1fs", humanBytes(m.LagBytes), m.LagSeconds)
	}
	return humanBytes(m.LagBytes)
}

func upstreamText(m cluster.Member) string {
	if m.Role != cluster.RoleReplica {
		return "-"
	}
	up := m.Upstream
	if up == "" {
		up = "?"
	}
	if m.Streaming {
		return up + " (streaming)"
	}
	return up + " (not streaming)"
}

func tagsText(t cluster.Tags) string {
	var parts []string
	if t.NoFailover {
		parts = append(parts, "nofailover")
	}
	if t.Priority != 1 {
		parts = append(parts, fmt.Sprintf("priority=%d", t.Priority))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// humanBytes formats n with 1024-based units ("0 B", "1.5 KiB", "16 MiB").
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[i]
}

// describeRequest says in one line what a pending request is and where it
// stands.
func describeRequest(r *cluster.Request, now time.Time) string {
	if r == nil {
		return "none"
	}
	var b strings.Builder
	b.WriteString(string(r.Kind))
	switch {
	case r.From != "" && r.To != "":
		fmt.Fprintf(&b, " %s -> %s", r.From, r.To)
	case r.From != "":
		fmt.Fprintf(&b, " %s -> best replica", r.From)
	case r.To != "":
		fmt.Fprintf(&b, " to %s", r.To)
	}
	if h := r.Handoff; h != nil {
		fmt.Fprintf(&b, ", under way: %s stopped writes at %s %s ago, handing over to %s",
			r.From, h.Final, now.Sub(h.StoppedAt).Round(100*time.Millisecond), h.Target)
	} else if !r.At.IsZero() && r.At.After(now) {
		fmt.Fprintf(&b, ", scheduled at %s (in %s)", r.At.Local().Format("2006-01-02 15:04:05 MST"), r.At.Sub(now).Round(time.Second))
	} else {
		b.WriteString(", due now")
	}
	if r.RequestedBy != "" {
		fmt.Fprintf(&b, "; requested by %s", r.RequestedBy)
	}
	if !r.RequestedAt.IsZero() {
		fmt.Fprintf(&b, " at %s", r.RequestedAt.Local().Format("15:04:05"))
	}
	return b.String()
}

// fencedMembers are the fences list shows: the fence step of the current
// leader's promotion (confirmed or not), then every operator's fence
// (hamgrctl fence) of a member whose agent has not published a record
// since, by name.
func fencedMembers(s cluster.Snapshot) []cluster.FenceOutcome {
	var out []cluster.FenceOutcome
	if l := s.Leader; l != nil && l.Promotion != nil && l.Promotion.Fence != nil {
		out = append(out, *l.Promotion.Fence)
	}
	names := make([]string, 0, len(s.Fenced))
	for n := range s.Fenced {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := s.Fenced[n]
		if m := s.Member(n); m != nil && m.UpdatedAt.After(f.At) {
			continue // back since
		}
		out = append(out, f)
	}
	return out
}

// describeFence renders a fence on one line.
func describeFence(f cluster.FenceOutcome) string {
	s := fmt.Sprintf("%s (%s", f.Target, f.Result)
	if f.Driver != "" {
		s += ", " + f.Driver
	}
	if !f.At.IsZero() {
		s += ", " + f.At.UTC().Format("2006-01-02 15:04:05")
	}
	if f.By != "" {
		s += ", by " + f.By
	}
	return s + ")"
}
