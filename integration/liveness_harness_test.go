package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// writers is one write client over every member (target_session_attrs=
// read-write, as applications connect) and one straight to each member,
// each into a table of its own. The direct ones show split brain: a write
// acknowledged by an old primary after the new primary's first.
type writers struct {
	c      *localcluster.Cluster
	all    *writeclient.Client
	allOpt writeclient.Options
	direct map[string]*writeclient.Client
	opts   map[string]writeclient.Options
}

// startWriters starts the writers and waits until writes flow through
// the multi-host one.
func startWriters(t *testing.T, c *localcluster.Cluster, table string) *writers {
	t.Helper()
	w := &writers{c: c, direct: map[string]*writeclient.Client{}, opts: map[string]writeclient.Options{}}
	w.all, w.allOpt = writer(t, c, table+"_all")
	for _, n := range c.Nodes {
		// A replica refuses every attempt: retry at a gentler pace.
		o := writeclient.Options{Hosts: []string{fmt.Sprintf("127.0.0.1:%d", n.PGPort)}, User: "postgres",
			Password: c.SuperPassword, Table: table + "_" + n.Name, Interval: 50 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)}
		// The table is created through the primary and replicated.
		setup := o
		setup.Hosts = c.Hosts()
		if err := writeclient.New(setup).Setup(ctxFor(t, time.Minute)); err != nil {
			t.Fatalf("create %s: %v", o.Table, err)
		}
		cl := writeclient.New(o)
		cl.Start(ctxFor(t, 10*time.Minute))
		t.Cleanup(func() { cl.Stop() })
		w.direct[n.Name], w.opts[n.Name] = cl, o
	}
	return w
}

// acks is every write acknowledged by any writer, with the member whose
// port acknowledged it.
type acks struct {
	byMember map[string][]writeclient.Ack
	all      writeclient.Result
	// direct is each direct writer's result, by the member it writes to.
	direct map[string]writeclient.Result
}

// stop stops every writer and collects their acknowledgements.
func (w *writers) stop() acks {
	a := acks{byMember: map[string][]writeclient.Ack{}, all: w.all.Stop(), direct: map[string]writeclient.Result{}}
	port := map[int]string{}
	for _, n := range w.c.Nodes {
		port[n.PGPort] = n.Name
	}
	add := func(r writeclient.Result) {
		for _, k := range r.Acks {
			a.byMember[port[k.Port]] = append(a.byMember[port[k.Port]], k)
		}
	}
	add(a.all)
	for name, cl := range w.direct {
		r := cl.Stop()
		a.direct[name] = r
		add(r)
	}
	return a
}

// splitBrain counts writes acknowledged by old after newName's first
// acknowledgement after t0, and says when that first one was.
func (a acks) splitBrain(old, newName string, t0 time.Time) (int, time.Time) {
	var first time.Time
	for _, k := range a.byMember[newName] {
		if k.At.After(t0) && (first.IsZero() || k.At.Before(first)) {
			first = k.At
		}
	}
	if first.IsZero() {
		return 0, first
	}
	n := 0
	for _, k := range a.byMember[old] {
		if k.At.After(first) {
			n++
		}
	}
	return n, first
}

// between counts old's acknowledgements in [from, to).
func (a acks) between(old string, from, to time.Time) int {
	n := 0
	for _, k := range a.byMember[old] {
		if !k.At.Before(from) && k.At.Before(to) {
			n++
		}
	}
	return n
}

// noLeaderBut fails the test if, for the whole of d, any member other than
// allowed holds the leader key; it polls every 200ms (an observation
// window, not a wait for a condition).
func noLeaderBut(t *testing.T, c *localcluster.Cluster, allowed string, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if s, err := c.Snapshot(context.Background()); err == nil && s.Leader != nil && s.Leader.Name != allowed {
			t.Fatalf("%s took the leader key (epoch %d) while %s may still take writes", s.Leader.Name, s.Leader.Epoch, allowed)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// saturate keeps every core busy for d with 8 busy processes per core,
// as on the loaded machine of issue 7 (load average 15-30). Each is killed
// after d, when the test ends, or when the test process dies (Pdeathsig),
// whichever comes first.
func saturate(t *testing.T, d time.Duration) {
	t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { null.Close() })
	for range 8 * runtime.NumCPU() {
		cmd := exec.Command("yes")
		cmd.Stdout = null
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start load: %v", err)
		}
		stop := time.AfterFunc(d, func() { _ = cmd.Process.Kill() })
		t.Cleanup(func() {
			stop.Stop()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
}
