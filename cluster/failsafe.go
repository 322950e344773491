package cluster

import "slices"

// FailsafeState is the leader's failsafe record, kept under failsafe
// while failsafe_mode is on: the members (every member record the leader
// saw, itself included) whose agents must all confirm, over the API, for
// the leader to keep its primary writable while it cannot reach the
// store. Only the holder of the leader key of Epoch writes it (in a
// transaction on that key), and a member it does not name may not take
// the leader key over Epoch (the leader never asks it).
type FailsafeState struct {
	Leader  string           `json:"leader"`
	Epoch   Epoch            `json:"epoch"`
	Members []FailsafeMember `json:"members"`
	// TTL is the leader's lease TTL when it wrote the record: the bound
	// on its fence stop after a confirmed round, which a member's hold
	// after a restart must cover (its own ttl may differ while a ttl
	// change waits for the leader's next lease).
	TTL Duration `json:"ttl,omitempty"`
}

// FailsafeMember is one member of a failsafe record: its name and the URL
// of its agent's API.
type FailsafeMember struct {
	Name   string `json:"name"`
	APIURL string `json:"api_url"`
}

// Has reports whether the record names member.
func (f *FailsafeState) Has(member string) bool {
	return f != nil && slices.ContainsFunc(f.Members, func(m FailsafeMember) bool { return m.Name == member })
}

// Equal reports whether f and o hold the same leader, epoch and members
// (in order); two nil records are equal.
func (f *FailsafeState) Equal(o *FailsafeState) bool {
	if f == nil || o == nil {
		return f == o
	}
	return f.Leader == o.Leader && f.Epoch == o.Epoch && f.TTL == o.TTL && slices.Equal(f.Members, o.Members)
}

// FailsafeMembers is the failsafe member list a leader keeps for the
// snapshot's member records, sorted by name (as Snapshot.Members is).
func FailsafeMembers(ms []Member) []FailsafeMember {
	out := make([]FailsafeMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, FailsafeMember{Name: m.Name, APIURL: m.APIURL})
	}
	return out
}

// FailsafeRequest is what a leader that cannot reach the store sends each
// member of its failsafe record (POST /failsafe): who it is and the epoch
// it leads at. The member confirms only if it knows this leader at this
// epoch as the latest, and then takes part in no election for a ttl.
type FailsafeRequest struct {
	Cluster string `json:"cluster"`
	Leader  string `json:"leader"`
	Epoch   Epoch  `json:"epoch"`
	// TTL is the leader's lease TTL: it stops writing before the round's
	// send time plus TTL, so a confirmation promises at least that long
	// (the member's own ttl may differ while a ttl change waits for the
	// leader's next lease).
	TTL Duration `json:"ttl,omitempty"`
}

// FailsafeAnswer is a member's answer to a FailsafeRequest. Confirmed is
// true only when the member promised to take part in no election for a
// ttl from when it answered; Reason says why not otherwise.
type FailsafeAnswer struct {
	Member    string `json:"member"`
	Leader    string `json:"leader"`
	Epoch     Epoch  `json:"epoch"`
	Confirmed bool   `json:"confirmed"`
	Reason    string `json:"reason,omitempty"`
}
