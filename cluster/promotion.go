package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// PromotionStep is one step of a promotion. The steps run in the order of
// their values; a step never runs before every earlier one is done.
type PromotionStep int

// The steps of a promotion, in order.
const (
	// StepKey: the leader key was taken, with the promotion record in its
	// value (one transaction), so a key taken to promote never exists
	// without its record.
	StepKey PromotionStep = 1 + iota
	// StepFence: the old primary was dealt with: fenced by the configured
	// fencer and the record updated, or, with no fencer (or nobody to
	// fence), the liveness evidence taken before the key stands alone.
	StepFence
	// StepSync: in synchronous mode, the database was made to require a
	// standby's confirmation of every commit before it promotes.
	StepSync
	// StepPromote: the database was promoted.
	StepPromote
	// StepPublish: the publishers (discovery) were told, and read back.
	StepPublish
	// StepRecord: the history entry was written and the operator request
	// it served cleared; the promotion is complete.
	StepRecord
)

var stepNames = map[PromotionStep]string{
	StepKey: "key", StepFence: "fence", StepSync: "sync", StepPromote: "promote",
	StepPublish: "publish", StepRecord: "record",
}

// AllPromotionSteps lists every step in order.
var AllPromotionSteps = []PromotionStep{StepKey, StepFence, StepSync, StepPromote, StepPublish, StepRecord}

// String names the step.
func (s PromotionStep) String() string {
	if n, ok := stepNames[s]; ok {
		return n
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// MarshalText writes the step's name.
func (s PromotionStep) MarshalText() ([]byte, error) {
	if _, ok := stepNames[s]; !ok {
		return nil, fmt.Errorf("unknown promotion step %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a step's name.
func (s *PromotionStep) UnmarshalText(b []byte) error {
	for k, n := range stepNames {
		if n == string(b) {
			*s = k
			return nil
		}
	}
	return fmt.Errorf("unknown promotion step %q", b)
}

// Promotion is the record of a promotion, kept in the value of the leader
// key it was taken with (so it exists exactly as long as that key, and
// belongs to its epoch). The new leader's agent marks the steps that
// cannot be observed (the key, the fence, the end) as it completes them;
// every round until it is Complete, ha.Decide plans only the steps not
// done yet, in order, so a failure or an agent restart between any two
// steps resumes at the right one and never skips one. A step that can be
// observed (the database promoted) or repeated harmlessly (the synchronous
// pre-step, publishing, the history entry) is planned again until the
// record says the promotion is complete.
type Promotion struct {
	// Kind is the history kind the promotion records ("failover",
	// "switchover", "manual failover"); "" records no history entry (the
	// last leader leading again after its own restart).
	Kind HistoryKind `json:"kind,omitempty"`
	// Reason is the history entry's reason ("": the loss of epoch Lost).
	Reason string `json:"reason,omitempty"`
	// Lost is the epoch taken over from (0: none); OldPrimary its leader.
	Lost       Epoch  `json:"lost,omitempty"`
	OldPrimary string `json:"old_primary,omitempty"`
	// OldEpoch is the epoch OldPrimary led when it is not Lost's leader:
	// the fence owed by an unfinished earlier promotion (FenceOwed),
	// carried over; 0 otherwise.
	OldEpoch Epoch `json:"old_epoch,omitempty"`
	// Evidence is what proved, before the key was taken, that the old
	// primary takes no writes.
	Evidence *Evidence `json:"evidence,omitempty"`
	// Fenced says how the fence step was done (a fencer's confirmation,
	// or why none was needed).
	Fenced string `json:"fenced,omitempty"`
	// Fence is the fence step's outcome when a fencer ran (nil: the step
	// was done without one, Fenced says why).
	Fence *FenceOutcome `json:"fence,omitempty"`
	// ClearRequest: the pending operator request is the one this
	// promotion serves, and is cleared when it is recorded.
	ClearRequest bool `json:"clear_request,omitempty"`
	// DetectedAt is when the candidate saw the leader key gone; ElectedAt
	// when it took the key.
	DetectedAt time.Time `json:"detected_at,omitzero"`
	ElectedAt  time.Time `json:"elected_at,omitzero"`
	// OldPosition and NewPosition are the old primary's last known
	// position and the candidate's own, measured before it promoted;
	// DataLoss what the history records of the difference.
	OldPosition Position  `json:"old_position,omitzero"`
	NewPosition Position  `json:"new_position,omitzero"`
	DataLoss    *DataLoss `json:"data_loss,omitempty"`
	// Errant is what the election found held beyond the winner's or the
	// old primary's history when the candidates' positions were not
	// ordered (election.Result.Errant); copied to the history entry.
	Errant []Errant `json:"errant,omitempty"`
	// Done lists the steps completed, in order.
	Done []PromotionStep `json:"done"`
}

// Has reports whether step s is done.
func (p Promotion) Has(s PromotionStep) bool { return slices.Contains(p.Done, s) }

// Complete reports whether every step is done.
func (p Promotion) Complete() bool { return p.Has(StepRecord) }

// With returns p with steps marked done (each once, kept in step order).
func (p Promotion) With(steps ...PromotionStep) Promotion {
	done := slices.Clone(p.Done)
	for _, s := range steps {
		if !slices.Contains(done, s) {
			done = append(done, s)
		}
	}
	slices.Sort(done)
	p.Done = done
	return p
}

// String renders the record's progress for logs: kind, old primary and
// the steps done.
func (p Promotion) String() string {
	parts := make([]string, 0, len(p.Done))
	for _, s := range p.Done {
		parts = append(parts, s.String())
	}
	kind := string(p.Kind)
	if kind == "" {
		kind = "promotion"
	}
	s := kind
	if p.OldPrimary != "" {
		s += " over " + p.OldPrimary
	}
	return s + " done=[" + strings.Join(parts, ",") + "]"
}
