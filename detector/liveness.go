package detector

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Liveness is what is known about an old primary's ability to take
// writes.
type Liveness int

// Liveness values.
const (
	_ Liveness = iota
	// Alive: it answered as a writable primary.
	Alive
	// Dead: there is proof it takes no writes (see OldPrimary).
	Dead
	// Unknown: no proof either way: it may be alive and taking writes.
	Unknown
)

// String names the liveness for logs.
func (l Liveness) String() string {
	switch l {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	case Unknown:
		return "unknown"
	}
	return "not probed"
}

// StreamSilenceBound is how long a witness's stream from the old primary
// must have been silent for the silence to count: at least the time the
// leader key took to be lost (ttl - loop_wait: a vanished primary has been
// silent at least that long when its key expires, so this costs nothing),
// and at least the witness's receiver timeout (its receiver pinged the
// sender at half of it and got nothing back for as long again).
func StreamSilenceBound(w cluster.WALStream, cfg cluster.DynamicConfig) time.Duration {
	return max(time.Duration(cfg.TTL)-time.Duration(cfg.LoopWait), time.Duration(w.Timeout))
}

// OldPrimary is the liveness rule: only proof counts as dead, never a
// timeout. Given what the old primary's database at host:port answered
// (a; the agent logs its error) and the member records of every other
// member (witnesses):
//
//   - AnswerWritable: Alive.
//
//   - AnswerRefused (nothing listens at the port: the postmaster is gone,
//     and with it every way in; backends of a dead postmaster exit at their
//     next wait) or AnswerReadOnly (it is in recovery): Dead.
//
//   - AnswerNone (a timeout, an authentication error, too many
//     connections, a server still starting): Dead only when the replicas
//     themselves say its WAL stopped, and stopped while its agent could
//     still fence it: no witness has heard from it within
//     StreamSilenceBound, and at least one witness saw the silence on a
//     live connection (its receiver connected, the last message older
//     than the ping interval plus half a second) that began no later than two
//     loop_waits after that witness last saw the old primary's agent
//     alive (its member record change: it republishes every loop_wait).
//
//     A live primary's WAL senders answer every ping at once, even when
//     its postmaster and agent are frozen or the machine is overloaded,
//     so while any of its backends can take writes some witness hears
//     from it. A witness whose own stream broke for its own reasons (its
//     database restarted, it follows another sender, its agent has not
//     heard anything, or not seen the key, since it started) abstains: the
//     streams of a primary whose postmaster hangs cannot reconnect, and
//     their silence proves nothing. And a stream that kept going after the
//     old primary's agent stopped publishing belongs to a primary whose
//     agent was dead or hung: a silence that comes later (its machine
//     frozen or cut off) says nothing of its backends, and no agent fenced
//     them; that blocks. When the silence came first, its agent went quiet
//     with it, so either the machine is gone or the agent fenced its
//     database before the lease could run out (rule 2). What this cannot
//     tell apart is an agent that died within those two loop_waits before
//     its machine froze or was cut off: only fencing (STONITH) closes
//     that. Otherwise Unknown.
//
// The evidence says which proof held, in words fit for the log and the
// history entry.
func OldPrimary(a db.Answer, host string, port int, witnesses []cluster.Member, cfg cluster.DynamicConfig) (Liveness, cluster.Evidence) {
	switch a {
	case db.AnswerWritable:
		return Alive, cluster.Evidence{}
	case db.AnswerRefused:
		return Dead, cluster.Evidence{Kind: cluster.EvidenceRefused, Detail: fmt.Sprintf("%s:%d refused the connection", host, port)}
	case db.AnswerReadOnly:
		return Dead, cluster.Evidence{Kind: cluster.EvidenceReadOnly, Detail: fmt.Sprintf("%s:%d answered in recovery (read-only)", host, port)}
	case db.AnswerNone:
	default:
		return Unknown, cluster.Evidence{}
	}
	var seen, abstain []string
	names := make([]cluster.Member, len(witnesses))
	copy(names, witnesses)
	sort.Slice(names, func(i, j int) bool { return names[i].Name < names[j].Name })
	for _, m := range names {
		w := m.WAL
		if w == nil || w.Host != host || w.Port != port || !w.Heard {
			abstain = append(abstain, m.Name)
			continue
		}
		bound := StreamSilenceBound(*w, cfg)
		if time.Duration(w.Silent) < bound {
			return Unknown, cluster.Evidence{}
		}
		if !w.SilenceSeen || !w.LeaderSeen {
			abstain = append(abstain, m.Name)
			continue
		}
		if time.Duration(w.Silent)+2*time.Duration(cfg.LoopWait) < time.Duration(w.SinceLeader) {
			// The stream outlived the agent: it was not there to fence.
			return Unknown, cluster.Evidence{}
		}
		seen = append(seen, fmt.Sprintf("%s silent %s (bound %s)", m.Name, time.Duration(w.Silent).Round(100*time.Millisecond), bound))
	}
	if len(seen) == 0 {
		return Unknown, cluster.Evidence{}
	}
	detail := fmt.Sprintf("%s:%d gave no answer; WAL stream silence seen by %s", host, port, strings.Join(seen, ", "))
	if len(abstain) > 0 {
		detail += "; no stream evidence from " + strings.Join(abstain, ", ")
	}
	return Dead, cluster.Evidence{Kind: cluster.EvidenceStreamsSilent, Detail: detail}
}
