// Package cluster is hamgr's shared vocabulary: members, roles, positions,
// the leader record and its epoch, history entries and the dynamic cluster
// configuration. It does no I/O and imports nothing of hamgr's own, so every
// other package can speak it.
package cluster
