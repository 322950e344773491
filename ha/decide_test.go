package ha

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/db/postgres"
	"github.com/hamgr/hamgr/detector"
)

// TestDecide runs the scenarios in testdata/*.txt. Regenerate the expected
// output with: go test ./ha -run TestDecide -rewrite
//
// Commands (times are offsets from a fixed origin, like 10s or 1m2s; an
// unset time stays zero, and "none" sets it back to zero):
//
//	view self=n2 now=10s [lease=7] [renew=8s] [lost=5s] [down-since=3s]
//	     [failed-starts=N] [store=down] [uninitialized]
//	     [old-primary=alive|dead|refused|read-only|timeout|unknown]
//	     [last-lsn=0/5000000] [released=E] [cannot-follow=E]
//	     [nofailover] [paused] [max-lag=N]
//	     [open=T] [handoff-seen=T] [gone=refused|renewed|accepted|short|stale|none] [link-lost=T]
//	     [loss-since=T]
//	     [ttl=30s] [loop-wait=10s] [retry-timeout=10s] [start-timeout=20s]
//	<lines describing the world, see below>
//	----
//	health=<detector.Local> leader=<detector.Leader>
//
//	  db empty | db stopped [lsn=..] [tl=N]
//	  db running [accepting] role=primary|replica lsn=.. [tl=N] [streaming] [upstream=n1] [diverged]
//	  leader n1 epoch=4 lease=9 | leader none [last=n1@4 [addr=host:port]]
//	  member n1 role=primary|replica|unknown lsn=.. [tl=N] [state=running]
//	         [after=E] [nofailover] [priority=N] [noaddr] [streaming] [upstream=n1] [rev=N]
//	         [wal=n1 [silent=8s] [seen] [connected] [timeout=6s] [key-seen=1s]]
//	  request switchover [from=n1] [to=n2] [at=T] [by=who]
//	  request failover to=n2 [by=who]
//	  request none
//	  handoff target=n2 final=0/5000000 epoch=4    (adds to the request)
//
// open= is View.ElectionOpenAt (when the agent first saw the old primary
// not writable) and handoff-seen= View.HandoffSeenAt. A leader line's
// last_leader gets the leader's address (name:5432); addr= sets the
// last_leader address of "leader none" (Decide never reads it: the agent
// probes there and reports old-primary=).
//
//	slots none | slots n2,n3            which members have a replication slot
//	                                  (default: all of them)
//	set <any view or db argument>     changes the view in place
//	decide [<view arguments>]         applies the arguments, prints Plan.String()
//	                                  and soon=<Plan.Soon> when set
func TestDecide(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var s scenario
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return s.run(t, d)
		})
	})
}

var origin = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type scenario struct {
	v       View
	noSlots bool // the scenario set Slots.Members itself
	// gone is the leader-ports check of the take-over (gone=...), made at
	// decide time against the leader key then in the view.
	gone string
}

// leaderGone builds the take-over's check of the current leader's ports:
// refused (3 checks over 300ms, both refusing), accepted (the API port
// answered at the second check), short (only 2 checks), stale (made when
// the leader's record was at an older revision), renewed (both refused,
// but the lease was renewed a second ago).
func (s *scenario) leaderGone(t *testing.T) LeaderGoneProbe {
	l := s.v.Snap.Leader
	if s.gone == "" || s.gone == "none" || l == nil {
		return LeaderGoneProbe{}
	}
	var rev int64
	if m := s.v.Snap.Member(l.Name); m != nil {
		rev = m.Revision
	}
	p := LeaderGoneProbe{Leader: *l, MemberRev: rev, DB: l.Name + ":5432", API: l.Name + ":8008",
		Refused: TakeOverChecks, Over: TakeOverCheckSpan, Unrenewed: TakeOverUnrenewed(s.v.Config)}
	switch s.gone {
	case "refused":
	case "renewed":
		p.Unrenewed = time.Second
	case "accepted":
		p.Refused, p.Over, p.Answer = 1, 150*time.Millisecond, l.Name+":8008 accepted a connection"
	case "short":
		p.Refused, p.Over = 2, 150*time.Millisecond
	case "stale":
		p.MemberRev--
	default:
		t.Fatalf("unknown gone=%q", s.gone)
	}
	return p
}

func (s *scenario) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "view":
		s.gone = ""
		s.v = View{
			StoreOK: true,
			Config: cluster.DynamicConfig{
				TTL: cluster.Duration(30 * time.Second), LoopWait: cluster.Duration(10 * time.Second),
				RetryTimeout: cluster.Duration(10 * time.Second), PrimaryStartTimeout: cluster.Duration(20 * time.Second),
			},
			LeaseID: 1,
			Snap:    cluster.Snapshot{Initialized: "n1"},
			Engine:  postgres.Capabilities(0),
		}
		s.applyArgs(t, d.CmdArgs)
		for _, line := range strings.Split(d.Input, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				s.world(t, line)
			}
		}
		return s.classify()
	case "set":
		s.applyArgs(t, d.CmdArgs)
		for _, line := range strings.Split(d.Input, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				s.world(t, line)
			}
		}
		return s.classify()
	case "decide":
		s.applyArgs(t, d.CmdArgs)
		v := s.v
		if v.Slots.Members == nil && !s.noSlots {
			// Unless a scenario says otherwise, every member has its slot.
			for _, m := range v.Snap.Members {
				v.Slots.Members = append(v.Slots.Members, m.Name)
			}
		}
		if v.OldPrimary.Answer != 0 && v.OldPrimary.Host == "" && v.Snap.LastLeader != nil {
			// The agent probes at last_leader's address (name:5432 by
			// default in these scenarios).
			v.OldPrimary.Host, v.OldPrimary.Port = v.Snap.LastLeader.ConnHost, v.Snap.LastLeader.ConnPort
			if v.OldPrimary.Host == "" {
				v.OldPrimary.Host, v.OldPrimary.Port = v.Snap.LastLeader.Name, 5432
			}
		}
		v.LeaderGone = s.leaderGone(t)
		p := Decide(v)
		if p.Soon != 0 {
			return p.String() + " soon=" + p.Soon.String()
		}
		return p.String()
	}
	if d.Cmd == "slots" {
		s.v.Slots.Members, s.noSlots = nil, true
		for _, a := range d.CmdArgs {
			if a.Key != "none" {
				s.v.Slots.Members = append(s.v.Slots.Members, a.Key)
			}
		}
		return "ok"
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

func (s *scenario) classify() string {
	h := detector.Local(s.v.DB, s.v.Now, s.v.DBDownSince, time.Duration(s.v.Config.PrimaryStartTimeout), s.v.FailedStarts)
	return fmt.Sprintf("health=%s leader=%s", h, detector.Leader(s.v.Snap.Leader, s.v.Self, s.v.LeaseID))
}

func at(t *testing.T, s string) time.Time {
	if s == "none" {
		return time.Time{}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return origin.Add(d)
}

func dur(t *testing.T, s string) cluster.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return cluster.Duration(d)
}

func num(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

// allow adds method to m when x is "on", else removes it.
func allow(m, method db.RejoinMethods, x string) db.RejoinMethods {
	if x == "on" {
		return m | method
	}
	return m &^ method
}

func lsn(t *testing.T, s string) cluster.LSN {
	l, err := cluster.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func val(a datadriven.CmdArg) string {
	if len(a.Vals) == 0 {
		return ""
	}
	return a.Vals[0]
}

func (s *scenario) applyArgs(t *testing.T, args []datadriven.CmdArg) {
	v := &s.v
	for _, a := range args {
		x := val(a)
		switch a.Key {
		case "self":
			v.Self = x
		case "now":
			v.Now = at(t, x)
		case "lease":
			v.LeaseID = num(t, x)
		case "renew":
			v.LastRenewSent = at(t, x)
		case "lost":
			v.LeaderLostAt = at(t, x)
		case "down-since":
			v.DBDownSince = at(t, x)
		case "failed-starts":
			v.FailedStarts = int(num(t, x))
		case "store":
			v.StoreOK = x != "down"
		case "uninitialized":
			v.Snap.Initialized = ""
		case "old-primary":
			// The probe's answer; dead is a refused connection, unknown
			// no probe at all (no address known).
			v.OldPrimary = OldPrimaryProbe{Answer: map[string]db.Answer{"alive": db.AnswerWritable, "dead": db.AnswerRefused,
				"refused": db.AnswerRefused, "read-only": db.AnswerReadOnly, "timeout": db.AnswerNone, "unknown": 0}[x]}
			if x == "timeout" {
				v.OldPrimary.Err = "timeout: context deadline exceeded"
			}
		case "last-lsn":
			v.LastLeaderPosition = cluster.PGPosition(1, lsn(t, x))
		case "released":
			v.ReleasedEpoch = cluster.Epoch(num(t, x))
		case "rewind":
			v.Engine = postgres.Capabilities(allow(v.Engine.Rejoin, db.RejoinResync, x))
		case "reclone":
			v.Engine = postgres.Capabilities(allow(v.Engine.Rejoin, db.RejoinReclone, x))
		case "rewind-epoch":
			v.RejoinEpoch = cluster.Epoch(num(t, x))
		case "rewind-error":
			v.RejoinError = x
		case "cannot-follow":
			v.CannotFollowEpoch = cluster.Epoch(num(t, x))
		case "open":
			v.ElectionOpenAt = at(t, x)
		case "handoff-seen":
			v.HandoffSeenAt = at(t, x)
		case "nofailover":
			v.Tags.NoFailover = true
		case "priority":
			v.Tags.Priority = int(num(t, x))
		case "paused":
			v.Config.Paused = x != "false"
		case "max-lag":
			v.Config.MaximumLagOnFailover = num(t, x)
		case "ttl":
			v.Config.TTL = dur(t, x)
		case "loop-wait":
			v.Config.LoopWait = dur(t, x)
		case "retry-timeout":
			v.Config.RetryTimeout = dur(t, x)
		case "start-timeout":
			v.Config.PrimaryStartTimeout = dur(t, x)
		case "backoff":
			v.Config.FailoverBackoff = dur(t, x)
		case "refused":
			v.RefusedEpoch = cluster.Epoch(num(t, x))
		case "fencing":
			v.Config.Fencing = cluster.FencingPolicy(x)
		case "gone":
			s.gone = x
		case "link-lost":
			v.LeaderLinkLost = at(t, x)
		case "loss-since":
			v.StreamLossSince = at(t, x)
		case "lease-lost":
			v.LeaseLostAt = at(t, x)
		case "fencer":
			// all: a fencer for every member; none; or the names it covers.
			v.Fencing, v.FenceTargets = x != "none", nil
			if x != "all" && x != "none" {
				v.FenceTargets = strings.Split(x, ",")
			}
		case "fence-failures":
			v.FenceFailures = int(num(t, x))
			v.FenceError = ""
			if v.FenceFailures > 0 {
				v.FenceError = "ipmi: connection timed out"
			}
		default:
			t.Fatalf("unknown view argument %q", a.Key)
		}
	}
}

// world parses one line describing the database, the leader key or a member record.
func (s *scenario) world(t *testing.T, line string) {
	f := strings.Fields(line)
	kv := map[string]string{}
	for _, w := range f[1:] {
		k, v, _ := strings.Cut(w, "=")
		kv[k] = v
	}
	has := func(k string) bool { _, ok := kv[k]; return ok }
	position := func() cluster.Position {
		tl := uint32(1)
		if has("tl") {
			tl = uint32(num(t, kv["tl"]))
		}
		return cluster.PGPosition(tl, lsn(t, kv["lsn"]))
	}
	role := func() cluster.Role {
		var r cluster.Role
		_ = r.UnmarshalText([]byte(kv["role"]))
		return r
	}
	switch f[0] {
	case "db":
		st := db.Status{HasData: true, Position: position()}
		switch {
		case has("empty"):
			st = db.Status{}
		case has("was-primary"):
			st.WasPrimary = true
		case has("running"):
			st.Running = true
			if has("accepting") {
				st.Accepting = true
				st.Role = role()
			}
			if has("streaming") {
				st.Streaming = true
			}
			if up := kv["upstream"]; up != "" {
				st.UpstreamHost, st.UpstreamPort = up, 5432
			}
			if has("diverged") {
				st.Diverged = "timeline 2 forked off timeline 1 at 0/5000000, before this server's position 0/6000000"
			}
		}
		s.v.DB = st
	case "leader":
		if f[1] == "none" {
			s.v.Snap.Leader = nil
			if last := kv["last"]; last != "" {
				name, epoch, _ := strings.Cut(last, "@")
				ll := &cluster.LastLeader{Name: name, Epoch: cluster.Epoch(num(t, epoch))}
				if a := kv["addr"]; a != "" {
					host, port, _ := strings.Cut(a, ":")
					ll.ConnHost, ll.ConnPort = host, int(num(t, port))
				}
				if fa := kv["failover-at"]; fa != "" {
					ll.FailoverAt = at(t, fa)
				}
				if has("fenced") || s.v.Snap.Fenced == nil {
					s.v.Snap.Fenced = nil
				}
				if has("fenced") {
					// fenced: for last_leader's epoch; fenced=E: for epoch E.
					fe := ll.Epoch
					if kv["fenced"] != "" {
						fe = cluster.Epoch(num(t, kv["fenced"]))
					}
					s.v.Snap.Fenced = map[string]cluster.FenceOutcome{name: {Target: name, Result: cluster.FenceConfirmed,
						Driver: "ipmi power off", By: "hamgrctl on ops1", Epoch: fe}}
				}
				s.v.Snap.LastLeader = ll
			} else {
				s.v.Snap.LastLeader = nil
			}
			return
		}
		l := &cluster.Leader{Name: f[1], Epoch: cluster.Epoch(num(t, kv["epoch"])), Lease: num(t, kv["lease"])}
		if old := kv["promotion-over"]; old != "" {
			// A failover's record with only the key taken, at elected=T,
			// on the evidence given (default refused).
			ev := &cluster.Evidence{Kind: cluster.EvidenceRefused}
			if e := kv["evidence"]; e != "" {
				_ = ev.Kind.UnmarshalText([]byte(e))
			}
			l.Promotion = &cluster.Promotion{Kind: cluster.HistoryFailover, OldPrimary: old, Lost: l.Epoch - 1,
				Evidence: ev, ElectedAt: at(t, kv["elected"]), Done: []cluster.PromotionStep{cluster.StepKey}}
		}
		s.v.Snap.Leader = l
		s.v.Snap.LastLeader = &cluster.LastLeader{Name: l.Name, Epoch: l.Epoch, ConnHost: l.Name, ConnPort: 5432}
	case "member":
		m := cluster.Member{
			Name: f[1], Role: role(), State: cluster.StateRunning, Position: position(),
			ConnHost: f[1], ConnPort: 5432, Streaming: has("streaming"), LagBytes: -1,
		}
		if has("state") {
			m.State = cluster.MemberState(kv["state"])
		}
		if has("after") {
			m.MeasuredAfterLossOf = cluster.Epoch(num(t, kv["after"]))
		}
		if has("nofailover") {
			m.Tags.NoFailover = true
		}
		if has("priority") {
			m.Tags.Priority = int(num(t, kv["priority"]))
		}
		if has("noaddr") {
			m.ConnHost, m.ConnPort = "", 0
		}
		m.Upstream = kv["upstream"]
		if has("rev") {
			m.Revision = num(t, kv["rev"])
		}
		if has("wal") {
			// wal=n1 [silent=8s] [seen] [connected] [timeout=6s]: the
			// member's WAL stream report (silent= also means heard).
			m.WAL = &cluster.WALStream{Host: kv["wal"], Port: 5432, Connected: has("connected"), SilenceSeen: has("seen"),
				Timeout: cluster.Duration(6 * time.Second)}
			if has("silent") {
				m.WAL.Heard, m.WAL.Silent = true, dur(t, kv["silent"])
			}
			if has("timeout") {
				m.WAL.Timeout = dur(t, kv["timeout"])
			}
			if has("key-seen") {
				m.WAL.LeaderSeen, m.WAL.SinceLeader = true, dur(t, kv["key-seen"])
			}
		}
		for i := range s.v.Snap.Members {
			if s.v.Snap.Members[i].Name == m.Name {
				s.v.Snap.Members[i] = m
				return
			}
		}
		s.v.Snap.Members = append(s.v.Snap.Members, m)
	case "request":
		switch f[1] {
		case "none":
			s.v.Snap.Request = nil
		case "switchover", "failover":
			r := &cluster.Request{Kind: cluster.RequestKind(f[1]), From: kv["from"], To: kv["to"],
				RequestedAt: origin, RequestedBy: "hamgrctl on ops1"}
			if has("at") {
				r.At = at(t, kv["at"])
			}
			if has("by") {
				r.RequestedBy = kv["by"]
			}
			s.v.Snap.Request = r
		default:
			t.Fatalf("unknown request kind in %q", line)
		}
	case "handoff":
		if s.v.Snap.Request == nil {
			t.Fatalf("%q: no request to add a handoff to", line)
		}
		r := *s.v.Snap.Request
		r.Handoff = &cluster.Handoff{Target: kv["target"], Final: cluster.PGPosition(1, lsn(t, kv["final"])), Epoch: cluster.Epoch(num(t, kv["epoch"]))}
		s.v.Snap.Request = &r
	default:
		t.Fatalf("unknown world line %q", line)
	}
}
