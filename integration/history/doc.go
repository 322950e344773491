// Package history checks what a failover drill's clients saw against
// hamgr's safety and availability targets. The drills log every
// acknowledged write with the member and the timeline that acknowledged it
// (Ack), the faults they injected and healed (Fault), and the cluster's
// state over time (Sample); the checks here turn those logs into numbers
// and violations:
//
//   - SplitBrain: acknowledgements from an old primary (a lower timeline)
//     received after the first acknowledgement on a newer timeline. Two
//     primaries took writes at once; the old one's are about to be
//     rewound away. Target: none, ever.
//   - Lost: acknowledged writes missing from the final primary. Target:
//     none in synchronous mode.
//   - Unavailability: the longest time without any acknowledgement that
//     overlaps a fault (from the last before writes stopped to the first
//     after they resumed).
//   - FalseFailovers: timeline changes (failovers) that no fault explains.
//   - ConvergeTime: from a heal to the first sample from which every member
//     streams from one primary and keeps doing so. Target: within 30 s.
//
// The package only computes: it reads no clock and does no I/O, so each
// check is unit-tested on hand-made histories that violate it.
package history
