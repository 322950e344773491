// Package cluster is hamgr's shared vocabulary: members, roles, positions,
// the leader record and its epoch, history entries and the dynamic cluster
// configuration. It does no I/O and imports nothing of hamgr's own, so every
// other package can speak it.
//
// Positions are engine-neutral: a Position carries its engine's tag and is
// compared (Compare, Cmp) and measured (LagTo) by that engine's rules,
// which live in engine_<name>.go, the only files here that know an engine.
package cluster
