package hasim

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// The take-over on proof of death (ha/takeover.go) in the simulator: each
// agent publishes an API URL (apiPort) and checks the leader's ports with
// simReach, which answers from the world's state as TCP connects would on
// real machines.

// apiPort is every simulated agent's API port.
const apiPort = 8008

// apiURL is the API URL of the agent on node name.
func apiURL(name string) string { return "http://" + net.JoinHostPort(name, strconv.Itoa(apiPort)) }

// simReach is the agents' ha Reacher twin. The simulated clock does not
// move during a call, so the checks are all made at one instant and
// reported as spread over the span asked for.
type simReach struct {
	w *World
	n *node
}

// Refusals implements agent.Reacher.
func (r simReach) Refusals(_ context.Context, addrs []string, n int, span time.Duration) (int, time.Duration, string) {
	r.n.portChecks++
	for _, a := range addrs {
		if why := r.answer(a); why != "" {
			return 0, 0, why
		}
	}
	return n, span, ""
}

// AgentAnswers implements agent.Reacher: the agent on the URL's host
// answers when its process runs (not stopped, not frozen, machine up) and
// neither its API nor the asker's is cut off; a rejecting firewall resets
// the request.
func (r simReach) AgentAnswers(_ context.Context, apiURL string, timeout time.Duration) string {
	u, err := url.Parse(apiURL)
	if err != nil {
		return err.Error()
	}
	var t *node
	for _, x := range r.w.nodes {
		if x.spec.Name == u.Hostname() {
			t = x
		}
	}
	switch {
	case t == nil:
		return apiURL + ": no such host"
	case t.rejecting && t != r.n:
		return apiURL + ": connection refused"
	case !t.agentRuns() || r.n.apiCut || t.apiCut:
		return fmt.Sprintf("%s: no answer within %s", apiURL, timeout)
	}
	return ""
}

// answer is "" when a connect to addr is refused now, else what it got: a
// machine powered off, frozen or cut off gives timeouts; a live machine
// refuses on a port nothing listens on (a stopped database, a dead agent
// process), and the kernel accepts on one a process listens on, even a
// stopped (SIGSTOP) or hung one.
func (r simReach) answer(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr + ": " + err.Error()
	}
	var t *node
	for _, x := range r.w.nodes {
		if x.spec.Name == host {
			t = x
		}
	}
	switch {
	case t == nil:
		return addr + ": no such host"
	case !t.alive || t.frozen:
		return addr + ": timeout"
	case t.rejecting && t != r.n:
		return "" // the firewall resets the connection: a refusal
	case port == strconv.Itoa(apiPort):
		if r.n.apiCut || t.apiCut {
			return addr + ": timeout"
		}
		if t.agentDown {
			return ""
		}
		return addr + " accepted a connection"
	case t.overloaded:
		return addr + ": timeout"
	case t.db.running:
		return addr + " accepted a connection"
	}
	return ""
}

// TakeOverLeader takes the key over as the store does, and checks the
// take-over's invariant when it succeeds.
func (s faultyStore) TakeOverLeader(ctx context.Context, who cluster.LastLeader, old cluster.Leader, memberRev int64, p *cluster.Promotion) (cluster.Leader, bool, error) {
	if err := s.w.callFault(s.n, CallAcquire); err != nil {
		return cluster.Leader{}, false, err
	}
	l, ok, err := s.Client.TakeOverLeader(ctx, who, old, memberRev, p)
	if err == nil && ok {
		if p != nil && p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceFence {
			s.w.checkFenceTakeOver(s.n, old, l)
		} else {
			s.w.checkTakeOver(s.n, old, l)
		}
	}
	return l, ok, err
}

// checkTakeOver: a take-over of old's key by n happens only while old's
// agent process is gone (so nothing renews old's lease) and its database
// does not run, on a machine that is up and not frozen (both ports
// refuse); never while old's agent runs or is merely stopped. Behind a
// rejecting firewall (fault Reject) the ports refuse anyway: then never
// while old's agent runs and reaches the store (it renews its lease).
func (w *World) checkTakeOver(n *node, old, l cluster.Leader) {
	t := w.node(old.Name)
	w.TakeOvers = append(w.TakeOvers, n.spec.Name+"<-"+old.Name+"@"+strconv.FormatInt(int64(l.Epoch), 10))
	switch {
	case t.rejecting && t.agentRuns() && !t.partitioned && !w.storeDown:
		w.violate("%s took the key of epoch %d over from %s while its agent renews its lease (behind a rejecting firewall)", n.spec.Name, old.Epoch, old.Name)
	case t.alive && !t.agentDown && !t.rejecting:
		w.violate("%s took the key of epoch %d over from %s while its agent process exists (running or stopped) and can renew its lease", n.spec.Name, old.Epoch, old.Name)
	case t.db.running && !t.rejecting:
		w.violate("%s took the key of epoch %d over from %s while its database runs", n.spec.Name, old.Epoch, old.Name)
	case !t.alive || t.frozen:
		w.violate("%s took the key of epoch %d over from %s whose machine is down or frozen (no refusal is possible)", n.spec.Name, old.Epoch, old.Name)
	}
}

// checkFenceTakeOver: a take-over of old's key by n to fence old (fencing
// require; the promotion waits for the confirmed power-off, which
// checkPromotionSteps checks) happens only while old's agent does not
// renew its lease: not while it runs and reaches the store.
func (w *World) checkFenceTakeOver(n *node, old, l cluster.Leader) {
	t := w.node(old.Name)
	w.TakeOvers = append(w.TakeOvers, n.spec.Name+"<-"+old.Name+"@"+strconv.FormatInt(int64(l.Epoch), 10)+" (fence)")
	if t.agentRuns() && !t.partitioned && !w.storeDown {
		w.violate("%s took the key of epoch %d over from %s to fence it while its agent renews its lease", n.spec.Name, old.Epoch, old.Name)
	}
}
