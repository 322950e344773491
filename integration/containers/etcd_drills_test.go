package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hamgr/hamgr/integration/history"
	"github.com/hamgr/hamgr/localcluster"
)

// The etcd outage drills are integration/etcd_quorum_test.go's on
// containers: etcd loses its quorum, or every member, for three ttls while
// writers run, then comes back; the primary must stop taking writes by
// loop_wait + retry_timeout, nobody may take writes while etcd is out, and
// after etcd's return the old primary (it holds the most WAL) takes the
// lead again: no failover, nothing acknowledged lost, convergence within
// 30 s of the return.

// The drills' timing (nodeConfig) beyond the ttl.
const (
	drillLoopWait     = time.Second
	drillRetryTimeout = 3 * time.Second
)

// etcdFenceBound is when the primary must have stopped taking writes after
// etcd lost its quorum: its fence timer fires loop_wait + retry_timeout
// after its last renewal (before the loss); the margin covers the fast
// shutdown and a loaded machine, as in integration/etcd_quorum_test.go.
func etcdFenceBound(p profile) time.Duration {
	return p.loopWait + p.retryTimeout + 3*time.Second
}

// etcdOutageTTLs is how long etcd stays out, in ttls: every lease would
// have expired on an etcd that kept running.
const etcdOutageTTLs = 3

// TestDrillEtcdQuorumLoss: docker stop of the etcd leader and one more
// member (1 of 3 runs), held three ttls, then docker start of both.
func TestDrillEtcdQuorumLoss(t *testing.T) {
	runDrill(t, etcdQuorumLoss())
}

// etcdQuorumLoss is TestDrillEtcdQuorumLoss's fault.
func etcdQuorumLoss() fault { return etcdOutage("etcd quorum loss (leader + 1 stopped)", 2) }

// TestDrillEtcdFullOutage: docker stop of all three etcd members (the
// leader first), held three ttls, then docker start of all.
func TestDrillEtcdFullOutage(t *testing.T) {
	runDrill(t, etcdFullOutage())
}

// etcdFullOutage is TestDrillEtcdFullOutage's fault.
func etcdFullOutage() fault { return etcdOutage("etcd full outage (3 stopped)", 3) }

// etcdOutage is the fault that stops k etcd members, the leader first, for
// etcdOutageTTLs ttls and starts them again; it asserts the outage's
// particular safety on top of runDrill's checks.
func etcdOutage(name string, k int) fault {
	f := stopEtcdFault(name, k, verifyEtcdOutage)
	f.holdTTLs = etcdOutageTTLs
	return f
}

// stopEtcdFault is the fault that stops k etcd members, the leader first,
// and starts them again at the heal; no failover may follow, and verify
// gets when etcd lost its quorum. The caller sets the hold. Each drill
// needs a fault of its own (it remembers what it stopped).
func stopEtcdFault(name string, k int, verify func(t *testing.T, r drillResult, lost time.Time)) fault {
	var stopped []*member
	var lost time.Time // when the second member had stopped: no quorum
	return fault{
		name: name,
		inject: func(c *cluster, _ *member) {
			stopped, lost = c.stopEtcd(k)
		},
		heal: func(c *cluster, _ *member) {
			for _, m := range stopped {
				docker(c.t, "start", m.id())
			}
		},
		failovers: 0,
		verify:    func(t *testing.T, r drillResult) { verify(t, r, lost) },
	}
}

// verifyEtcdOutage checks that the old primary stopped taking writes by
// etcdFenceBound after etcd lost its quorum, that nobody took writes from
// then until the heal, and that the old primary leads again.
func verifyEtcdOutage(t *testing.T, r drillResult, lost time.Time) {
	t.Helper()
	bound := etcdFenceBound(r.timing)
	last := lastAck(r.acks, r.old, r.healed)
	var during []history.Ack
	for _, a := range r.acks {
		if a.At.After(lost.Add(bound)) && a.At.Before(r.healed) {
			during = append(during, a)
		}
	}
	switch {
	case last.IsZero():
		t.Errorf("%s acknowledged no write before the heal", r.old)
	case last.After(lost.Add(bound)):
		t.Errorf("%s last acknowledged a write %v after etcd lost its quorum, want at most %v (loop_wait + retry_timeout + margin)",
			r.old, last.Sub(lost).Round(time.Millisecond), bound)
	default:
		t.Logf("%s last acknowledged a write %v after etcd lost its quorum (bound %v); etcd out %v",
			r.old, last.Sub(lost).Round(time.Millisecond), bound, r.healed.Sub(lost).Round(time.Millisecond))
	}
	if len(during) > 0 {
		t.Errorf("%d writes acknowledged while etcd had no quorum, after the fence bound; first: %+v", len(during), during[0])
	}
	if r.primary != r.old {
		// The old primary holds the most WAL: taking the lead from it is a
		// needless failover (integration/etcd_quorum_test.go asserts the same).
		t.Errorf("primary after etcd's return is %s, want %s again (it holds the most WAL)", r.primary, r.old)
	}
}

// lastAck is when node last acknowledged a write before t (zero if it
// acknowledged none).
func lastAck(acks []history.Ack, node string, t time.Time) time.Time {
	var last time.Time
	for _, a := range acks {
		if a.Node == node && a.At.Before(t) && a.At.After(last) {
			last = a.At
		}
	}
	return last
}

// stopEtcd stops k (at least 2) etcd members with docker stop (SIGTERM,
// SIGKILL after 2 s: a member without quorum may not finish its close),
// the etcd leader first, and returns them in that order and when the
// second had stopped (etcd had lost its quorum by then).
func (c *cluster) stopEtcd(k int) ([]*member, time.Time) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lead int
	err := localcluster.Poll(ctx, 200*time.Millisecond, func() bool {
		var ok bool
		lead, ok = c.etcdLeader(ctx)
		return ok
	})
	if err != nil {
		c.t.Fatalf("no etcd leader: %v", err)
	}
	var stopped []*member
	var names []string
	var lost time.Time
	for i := range k {
		m := c.etcds[(lead+i)%len(c.etcds)]
		docker(c.t, "stop", "-t", "2", m.id())
		stopped = append(stopped, m)
		names = append(names, m.name)
		if i == 1 {
			lost = time.Now()
		}
	}
	c.t.Logf("stopped etcd members %v (the etcd leader first)", names)
	return stopped, lost
}

// etcdLeader returns the index in c.etcds of the member every member
// names as the etcd leader (the v3 maintenance status, through etcd's
// JSON gateway).
func (c *cluster) etcdLeader(ctx context.Context) (int, bool) {
	ids := make([]string, len(c.etcds))
	var leader string
	for i, m := range c.etcds {
		var st struct {
			Header struct {
				MemberID string `json:"member_id"`
			} `json:"header"`
			Leader string `json:"leader"`
		}
		if err := postJSON(ctx, fmt.Sprintf("http://%s:2379/v3/maintenance/status", m.ip), &st); err != nil {
			return 0, false
		}
		if leader != "" && st.Leader != leader {
			return 0, false
		}
		ids[i], leader = st.Header.MemberID, st.Leader
	}
	for i, id := range ids {
		if id == leader {
			return i, true
		}
	}
	return 0, false
}

// postJSON posts {} to url and decodes the JSON answer into v.
func postJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte("{}")))
	if err != nil {
		return fmt.Errorf("request %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode the answer of %s: %w", url, err)
	}
	return nil
}
