package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"

	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
	"github.com/hamgr/hamgr/lagmon"
)

// Timing profiles.
var (
	// DefaultTiming is hamgr's default timing.
	DefaultTiming = cluster.DynamicConfig{
		TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second),
		MaximumLagOnFailover: 1 << 20,
	}
	// FastTiming is the documented fast profile.
	FastTiming = cluster.DynamicConfig{
		TTL: cluster.Duration(5 * time.Second), LoopWait: cluster.Duration(time.Second),
		RetryTimeout: cluster.Duration(3 * time.Second), PrimaryStartTimeout: cluster.Duration(10 * time.Second),
		MaximumLagOnFailover: 1 << 20,
	}
)

// Options describe a local cluster.
type Options struct {
	// Dir holds everything (data dirs, configs, logs); it is created and,
	// on Close, left in place for inspection unless RemoveOnClose.
	Dir           string
	RemoveOnClose bool
	// Members is the number of members (default 3), named n1, n2, ...
	Members int
	// HamgrBin is the hamgr binary that runs the agents.
	HamgrBin string
	// BinDir holds PostgreSQL's binaries.
	BinDir string
	// Timing is the cluster's timing (default DefaultTiming).
	Timing cluster.DynamicConfig
	// Tags per member name (default: priority 1); noloadbalance and custom
	// tags are written to the config too.
	Tags map[string]cluster.Tags
	// Parameters are extra PostgreSQL settings for every member.
	Parameters map[string]string
	// Engine is the members' database: EnginePostgreSQL (default, from
	// BinDir) or EngineMariaDB (the system's mariadbd; Parameters are
	// then ignored).
	Engine Engine
	// APIToken, when set, enables the agents' operator endpoints with this
	// bearer token (written to a 0600 file named by api.token_file).
	APIToken string
	// EtcdMembers is the number of etcd members. 0 or 1 runs one embedded
	// etcd server (Cluster.Etcd); more run an embedded cluster of that many
	// members on fixed ports of 127.0.0.1 (Cluster.EtcdCluster), whose
	// members a test may stop and restart, every agent listing them all.
	EtcdMembers int
	// EtcdEndpoints, when set, are the client URLs of an etcd that runs
	// elsewhere (the soak's, on a slowed disk): no embedded etcd starts,
	// EtcdMembers is ignored, and Cluster.Etcd and EtcdCluster stay nil.
	EtcdEndpoints []string
	Logger        *slog.Logger
	// Fencing, if set, returns the fencing section (YAML, starting with
	// "fencing:") of member n's config file: how its agent powers the
	// other members off (see Node.PowerOffScript for a simulated BMC
	// whose power-off kills a member's processes). "" gives n none.
	Fencing func(n *Node) string
	// Prepare, if set, is called for each member after its directory and
	// config are written and before any agent starts (a test may break
	// the first start of a member, say). A non-nil error stops Start.
	Prepare func(n *Node) error
}

// Engine is a local cluster's database engine.
type Engine int

// Engines.
const (
	EnginePostgreSQL Engine = iota
	EngineMariaDB
)

// Cluster is a running local cluster.
type Cluster struct {
	opts Options
	// Etcd is the single embedded etcd server; nil when EtcdCluster runs.
	Etcd *etcdembed.Server
	// EtcdCluster is the embedded etcd cluster when Options.EtcdMembers
	// is above 1, else nil.
	EtcdCluster *etcdembed.Cluster
	// Store is a client of etcd (every member of EtcdCluster).
	Store *etcd.Store
	Nodes []*Node
	// SuperPassword is the postgres superuser's password.
	SuperPassword string
	log           *slog.Logger
}

// Start creates and starts a cluster and waits until it has a leader and
// every replica streams (bounded by ctx).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Timing.TTL == 0 {
		opts.Timing = DefaultTiming
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HamgrBin == "" {
		return nil, errors.New("localcluster: HamgrBin is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	if err := os.Chmod(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	c := &Cluster{opts: opts, log: opts.Logger}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	var err error
	c.Store, err = etcd.New(etcd.Options{Endpoints: c.EtcdEndpoints(), Cluster: "local", Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("localcluster: etcd client: %w", err)
	}
	c.SuperPassword = randomSecret()
	superFile := c.SuperPasswordFile()
	replFile := filepath.Join(opts.Dir, "replication.password")
	if err := os.WriteFile(superFile, []byte(c.SuperPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(replFile, []byte(randomSecret()+"\n"), 0o600); err != nil {
		return nil, err
	}
	if opts.APIToken != "" {
		if err := os.WriteFile(c.APITokenFile(), []byte(opts.APIToken+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(2 * opts.Members)
	if err != nil {
		return nil, err
	}
	for i := 0; i < opts.Members; i++ {
		n, err := c.newNode(i, ports[2*i], ports[2*i+1], superFile, replFile)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	if opts.Prepare != nil {
		for _, n := range c.Nodes {
			if err := opts.Prepare(n); err != nil {
				return nil, fmt.Errorf("localcluster: prepare %s: %w", n.Name, err)
			}
		}
	}
	// The first member bootstraps; the others clone from it.
	if err := c.Nodes[0].StartAgent(); err != nil {
		return nil, err
	}
	if _, err := c.WaitLeader(ctx, ""); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes[1:] {
		if err := n.StartAgent(); err != nil {
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// startEtcd starts the single etcd server or, with EtcdMembers above 1,
// the etcd cluster, each member's data in Dir/etcd/<name>; nothing with
// Options.EtcdEndpoints.
func (c *Cluster) startEtcd(ctx context.Context) error {
	dir := filepath.Join(c.opts.Dir, "etcd")
	switch {
	case len(c.opts.EtcdEndpoints) > 0:
		return nil
	case c.opts.EtcdMembers <= 1:
		var err error
		c.Etcd, err = etcdembed.Start(ctx, etcdembed.Options{Dir: dir, FastElection: true})
		if err != nil {
			return fmt.Errorf("localcluster: etcd: %w", err)
		}
		return nil
	}
	ports, err := freePorts(2 * c.opts.EtcdMembers)
	if err != nil {
		return err
	}
	var members []etcdembed.MemberURLs
	for i := range c.opts.EtcdMembers {
		members = append(members, etcdembed.MemberURLs{Name: fmt.Sprintf("e%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])})
	}
	c.EtcdCluster, err = etcdembed.StartCluster(ctx, etcdembed.ClusterOptions{Dir: dir, Members: members})
	if err != nil {
		return fmt.Errorf("localcluster: etcd cluster: %w", err)
	}
	return nil
}

// EtcdEndpoints lists the client URLs of etcd: Options.EtcdEndpoints,
// the single server's, or every member's of EtcdCluster.
func (c *Cluster) EtcdEndpoints() []string {
	if len(c.opts.EtcdEndpoints) > 0 {
		return c.opts.EtcdEndpoints
	}
	if c.EtcdCluster != nil {
		return c.EtcdCluster.Endpoints()
	}
	return c.Etcd.Endpoints()
}

// SuperPasswordFile is the file holding SuperPassword (mode 0600), which
// every member's config names as the superuser's password_file.
func (c *Cluster) SuperPasswordFile() string { return filepath.Join(c.opts.Dir, "superuser.password") }

// APITokenFile is the file holding Options.APIToken (mode 0600), which
// every member's config names as api.token_file; "" when the cluster was
// started without a token.
func (c *Cluster) APITokenFile() string {
	if c.opts.APIToken == "" {
		return ""
	}
	return filepath.Join(c.opts.Dir, "api.token")
}

// randomSecret returns 24 random hex characters.
func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 below 32768,
// outside the kernel's range of source ports.
func freePorts(n int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		r, _ := rand.Int(rand.Reader, big.NewInt(12000))
		p := 20000 + int(r.Int64())
		if seen[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		seen[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("localcluster: no free ports between 20000 and 32000")
	}
	return out, nil
}

// Close stops every agent and database (by process group) and etcd.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.KillNode()
		for _, p := range n.proxies {
			p.Close()
		}
	}
	if c.Store != nil {
		c.Store.Close()
	}
	if c.Etcd != nil {
		c.Etcd.Close()
	}
	if c.EtcdCluster != nil {
		c.EtcdCluster.Close()
	}
	if c.opts.RemoveOnClose {
		os.RemoveAll(c.opts.Dir)
	}
}

// Node returns the member called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Hosts lists every member's PostgreSQL address ("127.0.0.1:port").
func (c *Cluster) Hosts() []string {
	var hs []string
	for _, n := range c.Nodes {
		hs = append(hs, fmt.Sprintf("127.0.0.1:%d", n.PGPort))
	}
	return hs
}

// Snapshot reads the cluster from etcd.
func (c *Cluster) Snapshot(ctx context.Context) (cluster.Snapshot, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.store().Load(sctx)
}

func (c *Cluster) store() *etcd.Store { return c.Store }

// WaitLeader waits until a member other than except holds the leader key
// and answers /primary with 200, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context, except string) (*Node, error) {
	var last string
	err := Poll(ctx, 100*time.Millisecond, func() bool {
		s, err := c.Snapshot(ctx)
		if err != nil || s.Leader == nil || s.Leader.Name == except {
			last = fmt.Sprintf("snapshot err=%v leader=%v", err, s.Leader)
			return false
		}
		n := c.Node(s.Leader.Name)
		if n == nil {
			return false
		}
		code, _ := n.Check(ctx, "/primary")
		last = fmt.Sprintf("leader %s /primary=%d", n.Name, code)
		return code == 200
	})
	if err != nil {
		return nil, fmt.Errorf("wait for a leader (not %q): %w; last seen: %s", except, err, last)
	}
	s, err := c.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return c.Node(s.Leader.Name), nil
}

// WaitHealthy waits until there is a leader and every other running member
// answers /readiness with 200 (a replica that streams and has replayed to
// within maximum_lag_on_failover; unlike /replica, whatever its tags) and
// says so in its member record (role replica, state running, position
// within maximum_lag_on_failover of the leader's), which is what operator
// requests check.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	leader, err := c.WaitLeader(ctx, "")
	if err != nil {
		return err
	}
	var pending string
	err = Poll(ctx, 100*time.Millisecond, func() bool {
		s, err := c.Snapshot(ctx)
		if err != nil {
			pending = "a snapshot: " + err.Error()
			return false
		}
		for _, n := range c.Nodes {
			if n == leader || !n.AgentRunning() {
				continue
			}
			if code, _ := n.Check(ctx, "/readiness"); code != 200 {
				pending = n.Name + " to answer /readiness with 200"
				return false
			}
			m := s.Member(n.Name)
			if m == nil || m.Role != cluster.RoleReplica || m.State != cluster.StateRunning {
				pending = n.Name + "'s member record to say replica, running"
				return false
			}
			// Records are published once per round, so right after a
			// WAL segment switch (a clone ends with one) a replica's can
			// trail the leader's by a segment until its next round.
			if lm := s.Member(leader.Name); lm != nil && s.Config != nil && s.Config.MaximumLagOnFailover > 0 &&
				lagmon.Lag(lm.Position, m.Position) > s.Config.MaximumLagOnFailover {
				pending = fmt.Sprintf("%s's published position %s to come within maximum_lag_on_failover of %s's %s",
					n.Name, m.Position, leader.Name, lm.Position)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("wait for replicas to stream from %s: %w (still waiting for %s)", leader.Name, err, pending)
	}
	return nil
}

// Poll calls cond every interval until it holds (nil) or ctx ends (its
// error).
func Poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// WaitFor polls cond every 50 ms until it holds or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) error {
	return Poll(ctx, 50*time.Millisecond, cond)
}

// chownTree gives path to the database's OS user (postgres, or mysql for
// MariaDB) when running as root.
func (c *Cluster) chownTree(path string) error {
	owner := "postgres"
	if c.opts.Engine == EngineMariaDB {
		owner = "mysql"
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// processAlive reports whether pid exists (and is not a zombie).
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	st, ok := procState(pid)
	return ok && st != 'Z'
}

// procState is process pid's state letter from /proc/PID/stat (R, S, T,
// Z, ...); false when the process does not exist. The state follows the
// command name, which may hold spaces and parentheses, so it is read after
// the last ')'; '?' when the line cannot be parsed.
func procState(pid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2], true
	}
	return '?', true
}

// BlockEtcd cuts every agent off from etcd (their requests hang, as
// without an etcd quorum); UnblockEtcd heals them all.
func (c *Cluster) BlockEtcd() {
	for _, n := range c.Nodes {
		n.BlockEtcd()
	}
}

// UnblockEtcd lets every agent reach etcd again.
func (c *Cluster) UnblockEtcd() {
	for _, n := range c.Nodes {
		n.UnblockEtcd()
	}
}
