package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/localcluster"
)

// HAProxy with Patroni's recommended configuration (testdata/
// haproxy-patroni.cfg.tmpl) in front of a real 3-member cluster: writes go
// through the primary pool (bare "option httpchk", i.e. OPTIONS /), reads
// through the read pool (HEAD /replica). The primary's node crashes.
//
//   - Only the primary is ever in the primary pool: no INSERT through
//     HAProxy fails read-only, and before the crash every write is
//     acknowledged by the primary.
//   - Writes through HAProxy reach the new primary within the failover
//     (as observed: /primary 200 on the new leader) plus HAProxy's rise checks
//     ((rise+1) × inter) and a margin, and the old primary leaves the pool
//     within (fall+1) × inter.
//   - No write is acknowledged by the old primary after the new primary's
//     first acknowledgement.
//   - The running replicas stay in the read pool while the primary fails,
//     and reads keep being served.
func TestHAProxyPatroniConfig(t *testing.T) {
	requireHAProxy(t)
	checkPatroniTiming(t)
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	h := startHAProxy(t, c)
	start := time.Now()
	h.waitPools(t, old.Name, time.Minute)
	t.Logf("haproxy pools settled on %s after %v", old.Name, time.Since(start).Round(time.Millisecond))

	cl := startClients(t, c, h, 2)
	oldSrv := h.server(old.Name)
	cl.waitFor(t, 30*time.Second, "writes and reads through haproxy", func(acks []hapAck, reads []hapRead) bool {
		return len(acks) >= 50 && len(reads) >= 20
	})
	watch := h.watchPools()
	acks, _, reads, _ := cl.snapshot()
	for _, a := range acks {
		if a.port != oldSrv.PGPort {
			t.Fatalf("write %d acknowledged by port %d, not the primary %s (%d)", a.id, a.port, old.Name, oldSrv.PGPort)
		}
	}
	for _, r := range reads {
		if !r.inRecovery || r.port == oldSrv.PGPort {
			t.Fatalf("read served by port %d (in recovery %t): the read pool must hold replicas only", r.port, r.inRecovery)
		}
	}

	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObserveFailover(ctxFor(t, ttl+30*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.Epoch <= lead.Epoch {
		t.Fatalf("new epoch %d not above %d", tl.Epoch, lead.Epoch)
	}
	newSrv := h.server(tl.New)
	// Counted from the promotion as observed (how fast the failover is
	// belongs to the drill): HAProxy needs rise checks in a row to admit
	// the new primary, plus a margin for a loaded machine.
	bound := tl.Promoted + (hapRise+1)*hapInter + 2*time.Second
	cl.waitFor(t, bound+30*time.Second, "writes acknowledged by the new primary "+tl.New, func(acks []hapAck, _ []hapRead) bool {
		n := 0
		for _, a := range acks {
			if a.port == newSrv.PGPort {
				n++
			}
		}
		return n >= 50
	})
	h.waitDown(t, "batman", oldSrv, time.Until(t0.Add((hapFall+2)*hapInter)))
	samples := watch()
	cl.Stop()

	acks, writeErrs, reads, readErrs := cl.snapshot()
	checkWrites(t, acks, writeErrs, oldSrv, newSrv, t0, bound)
	checkOldDown(t, samples, oldSrv, t0, (hapFall+1)*hapInter+2*time.Second)
	checkPools(t, samples, h, old.Name, tl.New, t0, t0.Add(tl.Promoted))
	checkReads(t, reads, readErrs, oldSrv, t0, t0.Add(tl.Promoted))
	t.Logf("failover to %s: promoted +%v; %d writes acknowledged, %d write attempts failed; %d reads, %d failed",
		tl.New, tl.Promoted.Round(time.Millisecond), len(acks), len(writeErrs), len(reads), len(readErrs))
}

// checkPatroniTiming fails the test if the config no longer has the check
// timing the bounds are derived from.
func checkPatroniTiming(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("testdata/haproxy-patroni.cfg.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "default-server {{.Check}} on-marked-down shutdown-sessions"); n != 2 {
		t.Fatalf("testdata/haproxy-patroni.cfg.tmpl: %d pools with the check timing of the test ({{.Check}}), want 2", n)
	}
	if patroniCheck != fmt.Sprintf("inter %v fall %d rise %d", hapInter, hapFall, hapRise) {
		t.Fatalf("patroniCheck %q does not match the bounds' timing", patroniCheck)
	}
	if !strings.Contains(string(b), "    option httpchk\n") || !strings.Contains(string(b), "option httpchk HEAD /replica\n") {
		t.Fatal("testdata/haproxy-patroni.cfg.tmpl no longer has Patroni's checks (bare option httpchk; HEAD /replica)")
	}
}

// checkWrites: no write failed read-only; every write acknowledged before
// the crash came from the old primary; the new primary acknowledged one
// within bound of the crash; none came from the old primary after it.
func checkWrites(t *testing.T, acks []hapAck, errs []error, oldSrv, newSrv haproxyServer, t0 time.Time, bound time.Duration) {
	t.Helper()
	for _, err := range errs {
		if isReadOnlyError(err) {
			t.Errorf("a write through the primary pool reached a replica: %v", err)
			break
		}
	}
	var firstNew time.Time
	for _, a := range acks {
		switch {
		case a.port != oldSrv.PGPort && a.port != newSrv.PGPort:
			t.Errorf("write %d acknowledged by port %d, neither the old nor the new primary", a.id, a.port)
		case a.port == newSrv.PGPort && a.at.Before(t0):
			t.Errorf("write %d acknowledged by %s before the crash", a.id, newSrv.Name)
		case a.port == newSrv.PGPort && (firstNew.IsZero() || a.at.Before(firstNew)):
			firstNew = a.at
		}
	}
	if firstNew.IsZero() {
		t.Fatal("no write acknowledged by the new primary")
	}
	t.Logf("first write through haproxy acknowledged by %s at +%v (bound %v)", newSrv.Name, firstNew.Sub(t0).Round(time.Millisecond), bound)
	if d := firstNew.Sub(t0); d > bound {
		t.Errorf("writes reached the new primary %v after the crash, want within ttl + 3s + (rise+1) × inter + 2s = %v", d, bound)
	}
	for _, a := range acks {
		if a.port == oldSrv.PGPort && a.at.After(firstNew) {
			t.Errorf("write %d acknowledged by the old primary %s at +%v, after the new primary's first at +%v",
				a.id, oldSrv.Name, a.at.Sub(t0), firstNew.Sub(t0))
		}
	}
}

// checkPools: the primary pool never holds anyone but the old primary
// (until marked down) and the new one; the surviving replica passes every
// read pool check throughout, and the new primary stays in the read pool
// until its promotion. Each kind of violation is reported once per server,
// at its first sample, with the number of samples that showed it.
func checkPools(t *testing.T, samples []statusSample, h *haproxy, old, newName string, t0, promoted time.Time) {
	t.Helper()
	if len(samples) == 0 {
		t.Fatal("no haproxy stats sampled")
	}
	type violation struct {
		first string
		n     int
	}
	found := map[string]*violation{}
	var order []string
	report := func(key, format string, args ...any) {
		if v := found[key]; v != nil {
			v.n++
			return
		}
		found[key] = &violation{first: fmt.Sprintf(format, args...), n: 1}
		order = append(order, key)
	}
	for _, s := range samples {
		at := s.at.Sub(t0)
		for _, srv := range h.Servers {
			rs := s.ps["replicas"][srv.serverName()]
			switch {
			case s.ps.up("batman", srv) && srv.Name != old && srv.Name != newName:
				report(srv.Name+" batman", "+%v: replica %s is in the primary pool (%s)", at, srv.Name, s.ps["batman"][srv.serverName()])
			case s.ps.up("batman", srv) && srv.Name == newName && s.at.Before(promoted):
				report(srv.Name+" batman", "+%v: %s is in the primary pool before its promotion at +%v", at, srv.Name, promoted.Sub(t0))
			case srv.Name == old:
			case srv.Name == newName:
				if !s.ps.up("replicas", srv) && s.at.Before(promoted) {
					report(srv.Name+" replicas", "+%v: replica %s left the read pool before its promotion (%s)", at, srv.Name, rs)
				}
			case rs != "UP":
				// Not even one failed check: a 503 from /replica shows
				// as "UP 1/3" long before fall marks it down.
				report(srv.Name+" replicas", "+%v: running replica %s failed a read pool check (%s)", at, srv.Name, rs)
			}
		}
	}
	for _, k := range order {
		t.Errorf("%s (in %d of %d samples)", found[k].first, found[k].n, len(samples))
	}
}

// checkReads: reads kept being served during the primary's failure, none
// of them failed, and none came from the old primary.
func checkReads(t *testing.T, reads []hapRead, errs []time.Time, oldSrv haproxyServer, t0, promoted time.Time) {
	t.Helper()
	during := 0
	for _, r := range reads {
		if r.port == oldSrv.PGPort {
			t.Errorf("a read was served by the old primary %s", oldSrv.Name)
		}
		if r.at.After(t0) && r.at.Before(promoted) {
			during++
		}
	}
	for _, at := range errs {
		if at.After(t0) && at.Before(promoted) {
			t.Errorf("a read through the read pool failed at +%v, while the primary was down", at.Sub(t0))
		}
	}
	t.Logf("%d reads served between the crash and the promotion (%v)", during, promoted.Sub(t0).Round(time.Millisecond))
	if during == 0 {
		t.Error("no read was served while the primary was down: the read pool was empty")
	}
}

// checkOldDown: the old primary was marked down in the primary pool within
// bound of the crash (the first sample that shows it DOWN).
func checkOldDown(t *testing.T, samples []statusSample, oldSrv haproxyServer, t0 time.Time, bound time.Duration) {
	t.Helper()
	for _, s := range samples {
		if s.at.After(t0) && s.ps["batman"][oldSrv.serverName()] == "DOWN" {
			t.Logf("old primary %s marked down in the primary pool at +%v (bound %v)", oldSrv.Name, s.at.Sub(t0).Round(time.Millisecond), bound)
			if d := s.at.Sub(t0); d > bound {
				t.Errorf("old primary marked down %v after the crash, want within (fall+1) × inter + 2s = %v", d, bound)
			}
			return
		}
	}
	t.Errorf("old primary %s never seen DOWN in the primary pool", oldSrv.Name)
}

// waitDown waits until server's status in pool is DOWN, and fails the test
// if that takes longer than d.
func (h *haproxy) waitDown(t *testing.T, pool string, s haproxyServer, d time.Duration) {
	t.Helper()
	var last string
	err := localcluster.WaitFor(ctxFor(t, max(d, time.Second)), func() bool {
		ps, err := h.stats(context.Background())
		if err != nil {
			return false
		}
		last = ps[pool][s.serverName()]
		return last == "DOWN"
	})
	if err != nil {
		t.Errorf("%s still %q in %s after %v: %v", s.Name, last, pool, d, err)
	}
}
