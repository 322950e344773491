// Package discovery is the seam for telling clients where the primary is:
// a Publisher points a name (a Consul service, a DNS record, a hook's
// target) at the new primary and reads the change back.
//
// The agent runs its publishers, in order, in the publish step of a
// promotion (see package ha, "Promotions are level-triggered"): after the
// database is promoted and before the promotion is recorded as complete.
// A publisher that fails makes the step fail, and the next round runs it
// again; it never undoes the promotion. Package discovery/dns publishes
// in DNS (RFC 2136 with TSIG).
package discovery

import (
	"context"

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
