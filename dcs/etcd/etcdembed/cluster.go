package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
)

// Election timing of a multi-member cluster's members: a 50ms heartbeat
// and a 500ms election timeout, so a quorum that returns elects a leader
// in about a second, yet a member on a busy test machine does not call
// needless elections (FastElection's 100ms would).
const (
	ClusterTickMs     = 50
	ClusterElectionMs = 500
)

// MemberURLs are one member's fixed URLs. They must name a port (not 0):
// the other members and the clients find a restarted member there.
type MemberURLs struct {
	// Name is the member's etcd name, unique in the cluster.
	Name string
	// ClientURL is its client listen and advertise URL, http only.
	ClientURL string
	// PeerURL is its peer listen and advertise URL, http only.
	PeerURL string
}

// ClusterOptions configure a multi-member cluster.
type ClusterOptions struct {
	// Dir holds every member's data directory, Dir/<name>; required, and
	// kept by Close.
	Dir string
	// Members lists the members; at least one.
	Members []MemberURLs
}

// Cluster is an etcd cluster of several members running in this process,
// each of which can be stopped (as if its machine crashed) and restarted
// on its data directory. It is safe for concurrent use.
type Cluster struct {
	opts    ClusterOptions
	initial string // etcd's initial cluster, "name=peerURL,..."

	mu      sync.Mutex
	running []*Server // nil for a stopped member
	// closing[i] is closed once stopped member i's listeners are closed
	// (nil: nothing pending).
	closing []chan struct{}
}

// StartCluster starts every member and waits until each serves clients,
// for at most ctx's deadline (DefaultStartTimeout when ctx has none). On
// failure every member started is stopped.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.Dir == "" || len(opts.Members) == 0 {
		return nil, errors.New("embedded etcd cluster: Dir and Members are required")
	}
	var peers []string
	for _, m := range opts.Members {
		for _, u := range []string{m.ClientURL, m.PeerURL} {
			pu, err := url.Parse(u)
			if err != nil || pu.Port() == "" || pu.Port() == "0" {
				return nil, fmt.Errorf("embedded etcd cluster: member %s: URL %q must name a fixed port", m.Name, u)
			}
		}
		peers = append(peers, m.Name+"="+m.PeerURL)
	}
	c := &Cluster{opts: opts, initial: strings.Join(peers, ","), running: make([]*Server, len(opts.Members)),
		closing: make([]chan struct{}, len(opts.Members))}
	all := make([]int, len(opts.Members))
	for i := range all {
		all[i] = i
	}
	if err := c.Restart(ctx, all...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Size is the number of members, running or stopped.
func (c *Cluster) Size() int { return len(c.opts.Members) }

// Name returns member i's name.
func (c *Cluster) Name(i int) string { return c.opts.Members[i].Name }

// Endpoints returns every member's client URL, running or not, in member
// order (what a client is configured with).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.opts.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Running reports whether member i runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running[i] != nil
}

// Leader returns the index of the running member that is the etcd
// leader, as it sees itself; false when none is.
func (c *Cluster) Leader() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.running {
		if s != nil && uint64(s.e.Server.MemberID()) == s.e.Server.Lead() {
			return i, true
		}
	}
	return 0, false
}

// Stop stops member i at once, as a crash would: its raft node stops
// before Stop returns (no leadership transfer), so a quorum that needed it
// is lost by then; its listeners close in the background (etcd waits up to
// its request timeout for open client streams), and Restart and Close wait
// for that. Its data directory is kept. Stopping a stopped member does
// nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.running[i]
	c.running[i] = nil
	var done chan struct{}
	if s != nil {
		done = make(chan struct{})
		c.closing[i] = done
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	s.e.Server.HardStop() // before Close, which would hand leadership over
	go func() {
		defer close(done)
		s.Close()
	}()
}

// closed waits until stopped member i's listeners are closed.
func (c *Cluster) closed(i int) {
	c.mu.Lock()
	done := c.closing[i]
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Restart starts the given stopped members on their data directories and
// waits until each serves clients, for at most ctx's deadline
// (DefaultStartTimeout when ctx has none). Members that only form a quorum
// together must be restarted in one call. Running members are skipped.
func (c *Cluster) Restart(ctx context.Context, members ...int) error {
	var started []*Server
	var idx []int
	for _, i := range members {
		if c.Running(i) {
			continue
		}
		c.closed(i) // its ports must be free again
		m := c.opts.Members[i]
		s, err := launch(Options{Dir: filepath.Join(c.opts.Dir, m.Name), ClientURL: m.ClientURL, PeerURL: m.PeerURL},
			member{name: m.Name, initialCluster: c.initial, tickMs: ClusterTickMs, electionMs: ClusterElectionMs})
		if err != nil {
			for _, j := range idx {
				c.Stop(j)
			}
			return fmt.Errorf("embedded etcd cluster: %w", err)
		}
		started, idx = append(started, s), append(idx, i)
		c.mu.Lock()
		c.running[i] = s
		c.mu.Unlock()
	}
	var errs []error
	for _, s := range started {
		if err := s.waitReady(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		for _, i := range idx {
			c.Stop(i)
		}
		return fmt.Errorf("embedded etcd cluster: restart %v: %w", members, errors.Join(errs...))
	}
	return nil
}

// Close stops every running member. The data directories are kept.
func (c *Cluster) Close() {
	for i := range c.opts.Members {
		c.Stop(i)
	}
	for i := range c.opts.Members {
		c.closed(i)
	}
}
