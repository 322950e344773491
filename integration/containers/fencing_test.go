package containers

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hamgr/hamgr/integration/history"
	"github.com/hamgr/hamgr/stonith/redfishtest"
)

// fencing is whether a drill cluster fences its old primaries.
type fencing int

const (
	// noFencing: fencing off, no BMC.
	noFencing fencing = iota
	// redfishFencing: fencing require; every node has a simulated Redfish
	// BMC (package stonith/redfishtest) served on the drill network's
	// gateway, whose power-off kills the node's container (powerOff)
	// before it answers, and whose power state reads Off from then until
	// the drill powers it on again.
	redfishFencing
)

func (f fencing) String() string {
	if f == redfishFencing {
		return "require"
	}
	return "off"
}

// bmcPasswordEnv is the node containers' environment variable holding the
// BMCs' password (fencing.members.*.password_env).
const bmcPasswordEnv = "HAMGR_BMC_PASSWORD"

// bmcUser is the BMCs' user name.
const bmcUser = "hamgr-fence"

// startBMCs starts one Redfish BMC per node on gateway (the host's address
// on the drill network, which the containers reach), closed when the test
// ends, and returns what the nodes' hamgr.yml gets appended: the policy
// require, which continues the timing section nodeConfig ends with, and
// the fencing section (every node may fence every other). A power-off
// kills the node's container; one that is not running (killed already)
// stays so.
func (c *cluster) startBMCs(gateway netip.Addr) string {
	c.t.Helper()
	c.bmcs = map[string]*redfishtest.Server{}
	var b strings.Builder
	b.WriteString("  fencing: require\nfencing:\n  members:\n")
	for i := range nodeCount {
		name := fmt.Sprintf("n%d", i+1)
		srv := redfishtest.Start(redfishtest.Options{
			Username: bmcUser, Password: c.password + "-b",
			Listen:     net.JoinHostPort(gateway.String(), "0"),
			OnPowerOff: func() { c.powerOff(name) },
		})
		c.t.Cleanup(srv.Close)
		c.bmcs[name] = srv
		// The BMC's certificate is self-signed for 127.0.0.1, not the
		// gateway: the agents skip its verification, as sites with
		// self-signed BMC certificates do (nothing sits between them here).
		fmt.Fprintf(&b, "    %s:\n      driver: redfish\n      address: %s\n      port: %s\n      username: %s\n"+
			"      password_env: %s\n      insecure_skip_verify: true\n      timeout: 10s\n",
			name, srv.Host(), srv.Port(), bmcUser, bmcPasswordEnv)
	}
	return b.String()
}

// powerOff is a BMC's power-off of node name, as immediate as a real one
// whatever the container's state: SIGKILL from here to every process of
// the container (one that is frozen or CPU-throttled has it pending and
// never returns to its own code), then its CPU quota lifted so that the
// killed processes finish dying at once (a throttled container took
// long, and docker kill waited on it), then docker kill, which also
// thaws a paused container. A container that is not running stays so.
func (c *cluster) powerOff(name string) {
	n := c.node(name)
	out, err := dockerErr("top", n.id(), "-eo", "pid")
	if err != nil {
		if !strings.Contains(err.Error(), "is not running") {
			c.t.Errorf("BMC of %s: power off (docker top): %v", name, err)
		}
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				c.t.Errorf("BMC of %s: power off (kill %d): %v", name, pid, err)
			}
		}
	}
	// Fails once the container's init has died (runc: not running); the
	// fault's healOff lifts a quota then.
	_, _ = dockerErr("update", "--cpu-quota", "-1", n.id())
	if _, err := dockerErr("kill", n.id()); err != nil && !strings.Contains(err.Error(), "is not running") &&
		!strings.Contains(err.Error(), "is zombie") {
		c.t.Errorf("BMC of %s: power off (docker kill): %v", name, err)
	}
}

// powerOn is the heal of a fenced node: its BMC's power back on, then its
// container started again.
func (c *cluster) powerOn(n *member) {
	c.bmcs[n.name].SetPower("On")
	docker(c.t, "start", n.id())
}

// TestDrillKillFenced: docker kill of the primary's container under
// fencing require. Its sockets close and its address vanishes, so the
// replicas lose their streams and its ports time out rather than refuse,
// and without fencing nobody promotes (TestDrillKill). Here, once its lease
// has gone unrenewed for loop_wait + 1s and its agent gives no answer, the
// best replica takes the key over, has the BMC power the node off (the
// container is dead already: the BMC confirms), and promotes, with no
// operator. The node comes back as a replica after the heal (power on,
// docker start).
func TestDrillKillFenced(t *testing.T) {
	runDrillWith(t, fenced(killFault()), drillOptions{timing: fastProfile, mode: syncMode, fencing: redfishFencing})
}

// TestDrillPauseFenced: docker pause of the primary under fencing require.
// Its frozen agent answers none of the replicas' stream-loss reports, so
// the best replica takes the key over, has the BMC power the node off
// (powerOff: SIGKILL queued to every frozen process, then the thaw, so
// no instruction of theirs runs again) and
// promotes. Without fencing, the thawed primary can acknowledge writes to
// the clients connected straight to it before its fence timer stops it in
// asynchronous mode (the fault matrix's unfenced pause row); fenced, it
// never thaws, so asynchronous mode is the drill's.
func TestDrillPauseFenced(t *testing.T) {
	runDrillWith(t, fenced(pauseFault()), drillOptions{timing: fastProfile, mode: asyncMode, fencing: redfishFencing})
}

// fenced is f under fencing require: its name says so, a node its BMC
// powered off is healed by f.healOff (if any), then power on and docker
// start, and the BMCs must have seen a ForceOff of the old primary for
// every failover and no reset of any other node.
func fenced(f fault) fault {
	heal, healOff := f.heal, f.healOff
	verify := f.verify
	f.name += ", fenced"
	f.heal = func(c *cluster, n *member) {
		if c.bmcs[n.name].PowerState() != "Off" {
			heal(c, n)
			return
		}
		// The processes the BMC killed may still be dying; the
		// container's settings change once it has stopped.
		docker(c.t, "wait", n.id())
		if healOff != nil {
			healOff(c, n)
		}
		c.powerOn(n)
	}
	f.verify = func(t *testing.T, r drillResult) {
		verifyFences(t, r)
		if verify != nil {
			verify(t, r)
		}
	}
	return f
}

// verifyFences checks the BMCs' resets against the failovers the clients
// saw: a ForceOff of the old primary if there was one (fencing require
// promotes nobody before it), none if not, and no reset of another node.
func verifyFences(t *testing.T, r drillResult) {
	t.Helper()
	c := r.cluster
	resets := c.bmcs[r.old].Resets()
	failovers := len(history.Failovers(r.acks))
	switch off := slices.Contains(resets, "ForceOff"); {
	case failovers > 0 && !off:
		t.Errorf("%d failover(s), but the BMC of %s saw resets %v: want a ForceOff (the fence before the promotion)", failovers, r.old, resets)
	case failovers == 0 && len(resets) > 0:
		t.Errorf("no failover, but the BMC of %s saw resets %v", r.old, resets)
	}
	for name, b := range c.bmcs {
		if name != r.old && len(b.Resets()) > 0 {
			t.Errorf("the BMC of %s, not the old primary, saw resets %v", name, b.Resets())
		}
	}
}
