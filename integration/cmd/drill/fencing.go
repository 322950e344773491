package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/internal/ipmisim"
	"github.com/hamgr/hamgr/localcluster"
)

// Rows with fencing: each cluster gets one simulated BMC per member
// (internal/ipmisim: OpenIPMI's ipmi_sim, driven by the real ipmi driver
// through ipmitool), whose chassis power-off kills that member's agent and
// PostgreSQL (Node.PowerOffScript), and fencing require. ipmisim wants a
// testing.TB; drillTB is the drill's, whose cleanups run when the drill
// ends.

// drillTB is the testing.TB ipmisim needs, outside a test: failures end
// the drill with the message.
type drillTB struct {
	testing.TB // nil: only the methods below are called
	mu         sync.Mutex
	cleanups   []func()
	dir        string
}

var tb = &drillTB{}

func (*drillTB) Helper()                    {}
func (*drillTB) Logf(string, ...any)        {}
func (*drillTB) Errorf(f string, a ...any)  { fmt.Fprintf(os.Stderr, "drill: bmc: "+f+"\n", a...) }
func (t *drillTB) Fatal(a ...any)           { t.Fatalf("%s", fmt.Sprint(a...)) }
func (*drillTB) Fatalf(f string, a ...any)  { panic(fmt.Sprintf("drill: bmc: "+f, a...)) }
func (t *drillTB) Skipf(f string, a ...any) { t.Fatalf("BMC simulator missing: "+f, a...) }
func (t *drillTB) Cleanup(f func())         { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *drillTB) TempDir() string          { d, _ := os.MkdirTemp(t.dir, "bmc"); return d }

// runCleanups stops every BMC the drill started (at its end).
func runCleanups(t *drillTB) {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// rigs holds each fenced cluster's BMCs, by cluster directory.
var (
	rigsMu sync.Mutex
	rigs   = map[string]map[string]*ipmisim.BMC{}
)

// configureFencing starts a BMC per member and gives every member a
// fencer for the others (ipmi driver) and fencing require.
func configureFencing(o *localcluster.Options) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		panic(err)
	}
	tb.dir = o.Dir
	bmcs := map[string]*ipmisim.BMC{}
	names := []string{"n1", "n2", "n3"}
	for _, n := range names {
		bmcs[n] = ipmisim.Start(tb)
	}
	pw := filepath.Join(o.Dir, "bmc.pw")
	if err := os.WriteFile(pw, []byte(ipmisim.Password+"\n"), 0o600); err != nil {
		panic(err)
	}
	o.Timing.Fencing = cluster.FencingRequire
	o.Fencing = func(n *localcluster.Node) string {
		var b strings.Builder
		b.WriteString("fencing:\n  members:\n")
		for _, other := range names {
			if other != n.Name {
				fmt.Fprintf(&b, "    %s:\n      driver: ipmi\n      address: 127.0.0.1\n      port: %d\n      username: %s\n      password_file: %s\n      timeout: 5s\n",
					other, bmcs[other].Port, ipmisim.User, pw)
			}
		}
		return b.String()
	}
	rigsMu.Lock()
	rigs[o.Dir] = bmcs
	rigsMu.Unlock()
}

// bmcsOf returns the BMCs of the cluster whose first member lives in dir's
// n1 (Node.DataDir is under the cluster directory).
func bmcsOf(c *localcluster.Cluster) map[string]*ipmisim.BMC {
	rigsMu.Lock()
	defer rigsMu.Unlock()
	for dir, b := range rigs {
		if strings.HasPrefix(c.Nodes[0].DataDir, dir+string(filepath.Separator)) {
			return b
		}
	}
	return nil
}

// armPowerOff makes each BMC's power-off kill its member's processes.
func armPowerOff(_ context.Context, c *localcluster.Cluster) error {
	b := bmcsOf(c)
	if b == nil {
		return errors.New("no BMCs for this cluster")
	}
	for _, n := range c.Nodes {
		b[n.Name].OnPowerOff(tb, n.PowerOffScript())
	}
	return nil
}

// withEvidence wraps a Restore: it first records the evidence of the
// newest history entry (what the promotion relied on) in the run's
// result, then powers the old member's BMC on again (a fenced machine
// comes back), then restores.
func withEvidence(restore func(context.Context, *localcluster.Cluster, *localcluster.Node, *runResult) error) func(context.Context, *localcluster.Cluster, *localcluster.Node, *runResult) error {
	return func(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error {
		if hist, err := c.Store.History(ctx); err == nil && len(hist) > 0 {
			h := hist[len(hist)-1]
			if h.Evidence != nil {
				r.Evidence = h.Evidence.Kind.String()
			}
			if h.Fence != nil {
				r.Evidence += fmt.Sprintf(", fence %s in %s", h.Fence.Result, time.Duration(h.Fence.Duration).Round(10*time.Millisecond))
			}
		}
		if b := bmcsOf(c); b != nil {
			b[old.Name].PowerOn(tb)
		}
		return restore(ctx, c, old, r)
	}
}

// killAgent kills only the primary's agent (SIGKILL); its PostgreSQL runs on.
func killAgent(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
	return p.KillAgent(syscall.SIGKILL)
}
