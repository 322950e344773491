// Package discovery is the seam for telling clients where the primary is:
// a Publisher points a name (a Consul service, a DNS record, a hook's
// target) at the new primary and reads the change back.
//
// The agent runs its publishers, in order, in the publish step of a
// promotion (see package ha, "Promotions are level-triggered"): after the
// database is promoted and before the promotion is recorded, each with a
// timeout. A publisher that fails there neither blocks nor undoes the
// promotion: the history entry's steps say which publisher failed, and
// the agent keeps publishing level-triggered: it remembers what each
// publisher last published successfully, and whenever that differs from
// what this member is (the leader of epoch E; a replica; a member
// publishers of this member's own role know), at start-up, after a role
// change or after a failure (with exponential back-off), it publishes
// again. Package discovery/dns publishes in DNS (RFC 2136 with TSIG),
// discovery/consul in Consul, discovery/hook runs the operator's hooks.
package discovery

import (
	"context"
	"fmt"

	"github.com/hamgr/hamgr/cluster"
)

// Primary is what a publisher publishes: the primary's name, its epoch
// (the fencing token, so that consumers can reject a stale primary) and
// its database's address.
type Primary struct {
	Cluster string
	Name    string
	Epoch   cluster.Epoch
	Host    string
	Port    int
	// OldPrimary is the member this one was promoted over ("": none, or
	// not a promotion).
	OldPrimary string
}

// Publisher publishes the primary.
type Publisher interface {
	// Name names the publisher in logs and history ("consul", "dns").
	Name() string
	// Publish points the publisher's name at p and returns once it has
	// read the change back. It must be idempotent (it runs again after
	// a failure or an agent restart) and respect ctx's deadline.
	Publish(ctx context.Context, p Primary) error
}

// Self is what a MemberPublisher publishes about this member at start-up
// and on every change of its role.
type Self struct {
	Cluster string
	Name    string
	// Role is cluster.RolePrimary (this member leads at Epoch and its
	// promotion is complete), cluster.RoleReplica (its database runs as
	// a replica) or cluster.RoleUnknown (neither: stopped, starting,
	// promoting).
	Role cluster.Role
	// Epoch is the leader key's epoch this role is under (0: no leader).
	Epoch cluster.Epoch
	// Leader names the leader this role is under ("": none).
	Leader string
	Host   string
	Port   int
	// LagBytes is a replica's lag behind the leader when the role was
	// published (-1: unknown).
	LagBytes int64
}

// Key is what distinguishes one publication of s from another: the agent
// publishes again when it changes (the lag alone does not).
func (s Self) Key() string {
	return fmt.Sprintf("%s@%d/%s", s.Role, s.Epoch, s.Leader)
}

// MemberPublisher is a Publisher that also publishes every member's own
// role (a Consul service per member, the operator's hooks), not only the
// primary's address.
type MemberPublisher interface {
	Publisher
	// PublishSelf publishes this member as s says and returns once the
	// change is read back. Idempotent, and it respects ctx's deadline.
	PublishSelf(ctx context.Context, s Self) error
	// Withdraw removes what PublishSelf published, on a clean stop of
	// the agent.
	Withdraw(ctx context.Context, s Self) error
}

// PrePromoter runs before this member's database is promoted (the
// operator's pre_promote hook). An error stops the promotion at its
// promote step, which is retried.
type PrePromoter interface {
	PrePromote(ctx context.Context, p Primary) error
}
