package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// The etcd outage rows: the cluster runs a 3-member etcd; the fault stops
// the etcd leader and one more member (quorum loss) or all three (full
// outage) for etcdHold, then starts them again on their data. Without
// failsafe_mode the primary fences itself and writes stop until etcd is
// back and it leads again; with it (failsafe- rows) every member's agent
// confirms the primary and writes go on. Either way the same member leads
// afterwards and no acknowledged write is lost.

// etcdOutageKind says which etcd members an outage stops.
type etcdOutageKind int

const (
	quorumLoss etcdOutageKind = iota + 1
	fullOutage
)

// etcdHold is how long etcd stays out.
const etcdHold = 30 * time.Second

// drillAPIToken is the API token of the failsafe rows' clusters (failsafe
// requests between agents carry it).
const drillAPIToken = "drill-failsafe-token"

// etcdOutageRow builds an etcd outage row.
func etcdOutageRow(kind etcdOutageKind, failsafe bool) fault {
	name, what := "etcd-quorum-loss", "the etcd leader and one more of the 3 etcd members stopped"
	if kind == fullOutage {
		name, what = "etcd-full-outage", "all 3 etcd members stopped"
	}
	f := fault{
		Name: name,
		Describe: fmt.Sprintf("%s for %s, then started again on their data; asynchronous replication; without failsafe_mode "+
			"the primary fences itself until etcd is back", what, etcdHold),
		KeepLeader: true,
		ZeroLoss:   true,
		Configure:  func(o *localcluster.Options) { o.EtcdMembers = 3 },
		Inject: func(ctx context.Context, c *localcluster.Cluster, _ *localcluster.Node) error {
			return etcdOutage(ctx, c, kind)
		},
		// The fence comes up to loop_wait + retry_timeout after the
		// fault, later than OutageAround looks: the longest interval
		// between acknowledged writes is the outage.
		Outage:       longestGap,
		OutageMethod: "the longest interval between consecutive acknowledged writes of the run (Result.LongestGap; one fault per run)",
	}
	if failsafe {
		f.Name = "failsafe-" + name
		f.Describe = fmt.Sprintf("%s for %s with failsafe_mode on and every member up: the primary keeps writing; asynchronous replication",
			what, etcdHold)
		f.Configure = func(o *localcluster.Options) { o.EtcdMembers, o.APIToken = 3, drillAPIToken }
		f.Setup = func(ctx context.Context, c *localcluster.Cluster) error {
			_, err := newOperator(c).SetConfig(ctx, "failsafe_mode", "true")
			return err
		}
		f.Ready = waitFailsafeRecord
	}
	return f
}

// etcdOutage stops the etcd members kind names, the etcd leader first,
// waits etcdHold and starts them again.
func etcdOutage(ctx context.Context, c *localcluster.Cluster, kind etcdOutageKind) error {
	ec := c.EtcdCluster
	if ec == nil {
		return fmt.Errorf("the cluster runs no etcd cluster (EtcdMembers)")
	}
	var lead int
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := localcluster.WaitFor(lctx, func() bool {
		var ok bool
		lead, ok = ec.Leader()
		return ok
	})
	if err != nil {
		return fmt.Errorf("no etcd leader: %w", err)
	}
	stop := []int{lead, (lead + 1) % ec.Size()}
	if kind == fullOutage {
		stop = append(stop, (lead+2)%ec.Size())
	}
	for _, i := range stop {
		ec.Stop(i)
	}
	t := time.NewTimer(etcdHold)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer rcancel()
	if err := ec.Restart(rctx, stop...); err != nil {
		return fmt.Errorf("restart etcd members %v: %w", stop, err)
	}
	return ctx.Err()
}

// waitFailsafeRecord waits until the leader's failsafe record names every
// member.
func waitFailsafeRecord(ctx context.Context, c *localcluster.Cluster) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last *cluster.FailsafeState
	err := localcluster.WaitFor(wctx, func() bool {
		s, err := c.Snapshot(wctx)
		if err != nil || s.Leader == nil {
			return false
		}
		last = s.Failsafe
		return last != nil && last.Epoch == s.Leader.Epoch && len(last.Members) == len(c.Nodes)
	})
	if err != nil {
		return fmt.Errorf("no failsafe record naming the %d members (last %+v): %w", len(c.Nodes), last, err)
	}
	return nil
}
