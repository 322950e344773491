// Package election ranks failover candidates. It is pure: every agent that
// sees the same member records computes the same order, so only the best
// candidate needs to try for the leader key.
package election

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hamgr/hamgr/cluster"
)

// Options are the inputs of a ranking besides the member records.
type Options struct {
	// LostEpoch is the epoch whose loss is being decided; only records
	// measured after that loss (Member.MeasuredAfterLossOf == LostEpoch)
	// are compared, so no candidate wins on a stale position.
	LostEpoch cluster.Epoch
	// OldPrimary is the name of the member that held LostEpoch; it is never a
	// candidate.
	OldPrimary string
	// MaximumLag excludes candidates more than this far behind the
	// reference position, in the engine's lag unit (0: no limit).
	MaximumLag int64
	// Reference is the last position known of the old primary (zero:
	// none); lag is measured against the further of it and the best
	// candidate's position.
	Reference cluster.Position
}

// Exclusion says why a member is not a candidate.
type Exclusion struct {
	Name   string
	Reason string
}

// Result is a ranking: Candidates best first, and every other member with
// the reason it was left out.
type Result struct {
	Candidates []cluster.Member
	Excluded   []Exclusion
	// Errant is set when the best candidate's position and another
	// eligible member's, or the old primary's last known one (Reference),
	// are not ordered and the engine can name the difference (GTID sets):
	// what each held that the other lacked. Empty otherwise.
	Errant []cluster.Errant
}

// Diverged says, for reasons and logs, that the positions were not
// ordered and what each held beyond the other; "" when they were.
func (r Result) Diverged() string {
	if len(r.Errant) == 0 {
		return ""
	}
	s := make([]string, len(r.Errant))
	for i, e := range r.Errant {
		s[i] = e.String()
	}
	return "positions not ordered (errant transactions): " + strings.Join(s, "; ")
}

// Best returns the best candidate, or false when there is none.
func (r Result) Best() (cluster.Member, bool) {
	if len(r.Candidates) == 0 {
		return cluster.Member{}, false
	}
	return r.Candidates[0], true
}

// Index returns name's place among the candidates, or -1.
func (r Result) Index(name string) int {
	for i, m := range r.Candidates {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// Rank orders the members: on an engine whose positions are sets of
// transactions (GTIDs), those holding every transaction of the old
// primary's last known position (Reference) first; then the most advanced
// position (Position.Cmp, the engine's ranking order), then higher
// priority, then name. Members tagged nofailover, not running as
// replicas, measured before the loss, or lagging more than MaximumLag are
// excluded with a reason.
//
// Holding the reference decides only between positions that are not
// ordered: of two ordered positions the more advanced one holds whatever
// the other holds. So a member with errant transactions (some the old
// primary never had) loses to one that holds all of the old primary's,
// however many transactions it counts; Result.Errant names them.
func Rank(members []cluster.Member, opts Options) Result {
	var res Result
	var eligible []cluster.Member
	for _, m := range members {
		if why := ineligible(m, opts); why != "" {
			res.Excluded = append(res.Excluded, Exclusion{Name: m.Name, Reason: why})
			continue
		}
		eligible = append(eligible, m)
	}
	sort.SliceStable(eligible, func(i, j int) bool { return better(eligible[i], eligible[j], opts.Reference) })
	res.Errant = errant(eligible, opts)
	if len(eligible) > 0 && opts.MaximumLag > 0 {
		ref := opts.Reference.Max(eligible[0].Position)
		for _, m := range eligible {
			if lag, ok := m.Position.LagTo(ref); ok && lag > opts.MaximumLag {
				res.Excluded = append(res.Excluded, Exclusion{Name: m.Name, Reason: fmt.Sprintf(
					"%d %s behind %s, more than maximum_lag_on_failover (%d)", lag, ref.Engine().LagUnit(), ref, opts.MaximumLag)})
				continue
			}
			res.Candidates = append(res.Candidates, m)
		}
	} else {
		res.Candidates = eligible
	}
	sort.Slice(res.Excluded, func(i, j int) bool { return res.Excluded[i].Name < res.Excluded[j].Name })
	return res
}

func ineligible(m cluster.Member, opts Options) string {
	switch {
	case m.Name == opts.OldPrimary:
		return "it is the primary that was lost"
	case m.Tags.NoFailover:
		return "tagged nofailover"
	case m.Role != cluster.RoleReplica || !usable(m.State):
		return fmt.Sprintf("not a running replica (role %s, state %s)", m.Role, m.State)
	case m.MeasuredAfterLossOf != opts.LostEpoch:
		return fmt.Sprintf("no position measured since epoch %d was lost", opts.LostEpoch)
	}
	return ""
}

// errant compares the best of eligible (ranked) with the others and with
// the old primary's last known position: what each held beyond the other,
// for every pair the engine says diverged and can name the difference of.
func errant(eligible []cluster.Member, opts Options) []cluster.Errant {
	if len(eligible) == 0 {
		return nil
	}
	best := eligible[0]
	var out []cluster.Errant
	add := func(member, against string, p, q cluster.Position) {
		if beyond, named := p.Beyond(q); named && !beyond.IsZero() {
			out = append(out, cluster.Errant{Member: member, Against: against, Holds: beyond})
		}
	}
	if !opts.Reference.IsZero() && best.Position.Compare(opts.Reference) == cluster.Diverged {
		add(best.Name, opts.OldPrimary, best.Position, opts.Reference)
	}
	for _, m := range eligible[1:] {
		if m.Position.Compare(best.Position) == cluster.Diverged {
			add(m.Name, best.Name, m.Position, best.Position)
		}
	}
	return out
}

// holdsReference reports whether m's position holds every transaction of
// ref, the old primary's last known position. It is true when ref is
// unknown, and on an engine that cannot name the transactions one
// position lacks (a log position: the ranking order alone decides there).
func holdsReference(m cluster.Member, ref cluster.Position) bool {
	if ref.IsZero() {
		return true
	}
	missing, named := ref.Beyond(m.Position)
	return !named || missing.IsZero()
}

// better reports whether a should rank before b, given the old primary's
// last known position ref.
func better(a, b cluster.Member, ref cluster.Position) bool {
	if ha, hb := holdsReference(a, ref), holdsReference(b, ref); ha != hb {
		return ha
	}
	if c := a.Position.Cmp(b.Position); c != 0 {
		return c > 0
	}
	if a.Tags.Priority != b.Tags.Priority {
		return a.Tags.Priority > b.Tags.Priority
	}
	return a.Name < b.Name
}

// usable reports whether a replica in state st may be elected. Role comes
// from the member's last probe (a replica role means its database answered);
// the state is the agent's last decision, which lags one round behind for
// a freshly started agent ("unknown") — that must not exclude it.
func usable(st cluster.MemberState) bool {
	switch st {
	case cluster.StateRunning, cluster.StateUnknown, cluster.StateStarting:
		return true
	}
	return false
}
