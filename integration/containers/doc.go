// Package containers holds hamgr's container failover drills: three
// hamgr-node containers (the agent and PostgreSQL 15, the Dockerfile's
// hamgr-node target) and three etcd containers (drilletcd) on a private
// Docker network of the test's own, each container with its own address,
// driven with testcontainers-go. A fault (docker kill, docker pause past the
// TTL, network disconnect, iptables cuts both ways or one way, a CPU quota,
// etcd losing its quorum or every member, a rolling restart with
// switchovers) hits the cluster while clients write through the
// multi-host target_session_attrs=read-write string and directly to every
// member; every acknowledgement is logged with the member and timeline that
// gave it, and integration/history checks the log: no split-brain write,
// no acknowledged write lost (synchronous mode), no failover without a
// fault, convergence within 30 s of the heal. The drills run in
// synchronous mode with the fast timing profile; TestFaultMatrix
// (HAMGR_FAULT_MATRIX=<runs per cell>) runs every fault with both timing
// profiles in both replication modes and writes the table of what they
// measured (HAMGR_FAULT_MATRIX_OUT=<file>).
//
// The images come from build-images.sh in this directory (Debian packages
// only, no registry). Without them, or without a Docker engine, the drills
// skip and say so. Testcontainers' Ryuk cannot be pulled either: the drills
// set TESTCONTAINERS_RYUK_DISABLED=true and remove what they create.
package containers
