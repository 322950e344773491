// Package stonith is the seam for fencing ("shoot the other node in the
// head"): before a replica is promoted over an old primary, a Fencer makes
// sure the old primary cannot write, by powering its machine off and
// reading the power state back.
//
// The agent calls the Fencer in the fence step of a promotion (see
// package ha, "Promotions are level-triggered"): after the new leader
// holds the leader key and before its database is promoted, at most once
// per epoch (the step is recorded in the leader key's promotion record),
// when the cluster's fencing policy is require or best-effort (package
// ha, fencing.go). An agent without a Fencer, or with the policy off,
// relies on the liveness evidence alone. hamgrctl fence calls a Fencer
// built the same way (package fromconfig) for an operator.
//
// Drivers, each in its own package: bmc (IPMI through bmclib's ipmitool
// provider, Redfish through its gofish provider), fenceagent (Pacemaker
// fence agents such as fence_ipmilan and fence_redfish) and command (a
// program of the operator's). Members dispatches by member name to the
// driver configured for that member, and refuses a member with none.
// redfishtest is a Redfish service for tests. No driver puts a password
// in an error, a log line or a Confirmation.
package stonith

import "context"

// Target is the member to fence: its name and its database's address as
// the last leader record gave them. A driver maps the name to the
// machine's BMC from its own configuration.
type Target struct {
	Name string
	Host string
	Port int
}

// Confirmation is a fencer's account of a completed fence, for the log and
// the promotion record.
type Confirmation struct {
	// Method names the driver and action ("ipmi power off", say).
	Method string
	// Detail is what confirmed it (the power state read back, say).
	Detail string
}

// String renders the confirmation on one line.
func (c Confirmation) String() string {
	if c.Detail == "" {
		return c.Method
	}
	return c.Method + ": " + c.Detail
}

// Fencer fences members.
type Fencer interface {
	// Fence makes target unable to write (power off) and returns once
	// that is confirmed. It must be safe to call again for a target
	// already fenced, and must return an error — never a confirmation —
	// when it cannot tell that the target is off. It must respect ctx's
	// deadline.
	Fence(ctx context.Context, target Target) (Confirmation, error)
}
