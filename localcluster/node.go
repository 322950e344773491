package localcluster

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/localcluster/faultproxy"
)

// Node is one member: a hamgr agent process and the PostgreSQL it manages.
type Node struct {
	Name    string
	Dir     string
	DataDir string
	PGPort  int
	APIPort int
	// Config is the agent's config file.
	Config string
	// AgentLog is where the agent's output goes.
	AgentLog string
	c        *Cluster
	proxies  []*faultproxy.Proxy // one per etcd member

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *Cluster) newNode(i, pgPort, apiPort int, superFile, replFile string) (*Node, error) {
	name := fmt.Sprintf("n%d", i+1)
	dir := filepath.Join(c.opts.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := c.chownTree(dir); err != nil {
		return nil, err
	}
	n := &Node{Name: name, Dir: dir, DataDir: filepath.Join(dir, "data"), PGPort: pgPort, APIPort: apiPort,
		Config: filepath.Join(dir, "hamgr.yml"), AgentLog: filepath.Join(dir, "agent.log"), c: c}
	for _, ep := range c.EtcdEndpoints() {
		p, err := faultproxy.New(strings.TrimPrefix(ep, "http://"))
		if err != nil {
			for _, p := range n.proxies {
				p.Close()
			}
			return nil, fmt.Errorf("localcluster: etcd proxy for %s: %w", name, err)
		}
		n.proxies = append(n.proxies, p)
	}
	if err := os.WriteFile(n.Config, []byte(n.configYAML(superFile, replFile)), 0o600); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) configYAML(superFile, replFile string) string {
	o := n.c.opts
	t := o.Timing
	tags := o.Tags[n.Name]
	prio := tags.Priority
	if prio == 0 && !tags.NoFailover {
		prio = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: local\nname: %s\n", n.Name)
	var eps []string
	for _, p := range n.proxies {
		eps = append(eps, p.URL())
	}
	fmt.Fprintf(&b, "etcd:\n  endpoints: [%s]\n", strings.Join(eps, ", "))
	fmt.Fprintf(&b, "api:\n  listen: 127.0.0.1:%d\n", n.APIPort)
	if f := n.c.APITokenFile(); f != "" {
		fmt.Fprintf(&b, "  token_file: %s\n", f)
	}
	if o.Engine == EngineMariaDB {
		n.mariaDBSection(&b, superFile, replFile)
	} else {
		n.postgresSection(&b, superFile, replFile)
	}
	fmt.Fprintf(&b, "timing:\n  ttl: %s\n  loop_wait: %s\n  retry_timeout: %s\n  primary_start_timeout: %s\n  maximum_lag_on_failover: %d\n",
		time.Duration(t.TTL), time.Duration(t.LoopWait), time.Duration(t.RetryTimeout),
		time.Duration(t.PrimaryStartTimeout), t.MaximumLagOnFailover)
	if t.Fencing != "" {
		fmt.Fprintf(&b, "  fencing: %s\n", t.Fencing)
	}
	if o.Fencing != nil {
		if f := o.Fencing(n); f != "" {
			b.WriteString(strings.TrimSuffix(f, "\n") + "\n")
		}
	}
	fmt.Fprintf(&b, "tags:\n  nofailover: %t\n  noloadbalance: %t\n  priority: %d\n", tags.NoFailover, tags.NoLoadBalance, prio)
	if len(tags.Custom) > 0 {
		b.WriteString("  custom:\n")
		for _, k := range slices.Sorted(maps.Keys(tags.Custom)) {
			fmt.Fprintf(&b, "    %s: %q\n", k, tags.Custom[k])
		}
	}
	b.WriteString("log:\n  level: info\n")
	return b.String()
}

// mariaDBSection writes the mysql section: server_id from the member's
// number, small InnoDB buffers.
func (n *Node) mariaDBSection(b *strings.Builder, superFile, replFile string) {
	id := strings.TrimPrefix(n.Name, "n")
	fmt.Fprintf(b, "mysql:\n  data_dir: %s\n  listen_host: 127.0.0.1\n  port: %d\n  socket: %s/my.sock\n  server_id: %s\n",
		n.DataDir, n.PGPort, n.Dir, id)
	fmt.Fprintf(b, "  superuser:\n    username: root\n    password_file: %s\n", superFile)
	fmt.Fprintf(b, "  replication:\n    username: repl\n    password_file: %s\n", replFile)
	b.WriteString("  parameters:\n    innodb-buffer-pool-size: 32M\n    innodb-log-file-size: 16M\n" +
		"    innodb-flush-log-at-trx-commit: \"2\"\n    performance-schema: \"OFF\"\n")
}

func (n *Node) postgresSection(b *strings.Builder, superFile, replFile string) {
	o := n.c.opts
	fmt.Fprintf(b, "postgresql:\n  data_dir: %s\n  bin_dir: %s\n  listen_host: 127.0.0.1\n  port: %d\n  socket_dir: %s\n",
		n.DataDir, o.BinDir, n.PGPort, n.Dir)
	fmt.Fprintf(b, "  superuser:\n    username: postgres\n    password_file: %s\n", superFile)
	fmt.Fprintf(b, "  replication:\n    username: replicator\n    password_file: %s\n", replFile)
	params := map[string]string{"fsync": "off", "shared_buffers": "32MB", "max_connections": "50"}
	for k, v := range o.Parameters {
		params[k] = v
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("  parameters:\n")
	for _, k := range keys {
		fmt.Fprintf(b, "    %s: %q\n", k, params[k])
	}
}

// StartAgent starts the member's agent process in a process group of its
// own (which its PostgreSQL joins), appending its output to AgentLog.
func (n *Node) StartAgent() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("localcluster: agent %s already running (pid %d)", n.Name, n.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(n.AgentLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.c.opts.HamgrBin, "agent", "--config", n.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("localcluster: start agent %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

// AgentPID is the agent's process id (0 when not running).
func (n *Node) AgentPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// AgentRunning reports whether the agent process runs.
func (n *Node) AgentRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// KillNode kills the agent and every process of its PostgreSQL in one call
// (SIGKILL to the agent's process group), as a dying host would, and waits
// for the agent to be reaped and the postmaster to be gone.
func (n *Node) KillNode() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	pm := n.PostmasterPID()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if pm > 0 && processAlive(pm) {
		// A postmaster adopted from an earlier agent is in that agent's group.
		_ = syscall.Kill(pm, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pm > 0 && processAlive(pm) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// KillAgent sends sig to the agent process only; its PostgreSQL keeps
// running. After SIGKILL it waits for the process to be reaped.
func (n *Node) KillAgent(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if sig == syscall.SIGKILL {
		n.cmd = nil
	}
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("localcluster: agent %s is not running", n.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("localcluster: signal agent %s: %w", n.Name, err)
	}
	if sig == syscall.SIGKILL {
		<-done
	}
	return nil
}

// PostmasterPID reads the server's main pid from its pid file (0 if
// none): PostgreSQL's postmaster (postmaster.pid) or, for EngineMariaDB,
// mysqld (mysqld.pid), which PostgresPIDs and CrashPostgres then mean.
func (n *Node) PostmasterPID() int {
	file := "postmaster.pid"
	if n.c.opts.Engine == EngineMariaDB {
		file = "mysqld.pid"
	}
	b, err := os.ReadFile(filepath.Join(n.DataDir, file))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// KillPostmaster sends SIGKILL to the postmaster only (its backends stay
// until they notice), leaving the agent alive.
func (n *Node) KillPostmaster() error {
	pid := n.PostmasterPID()
	if pid == 0 || !processAlive(pid) {
		return fmt.Errorf("localcluster: %s has no running postmaster", n.Name)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// PostgresPIDs lists the postmaster and its children.
func (n *Node) PostgresPIDs() []int {
	pm := n.PostmasterPID()
	if pm == 0 {
		return nil
	}
	pids := []int{pm}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pm, pm))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// CrashPostgres SIGKILLs the postmaster and all its children in one pass:
// the database dies while its agent lives.
func (n *Node) CrashPostgres() error {
	pids := n.PostgresPIDs()
	if len(pids) == 0 {
		return fmt.Errorf("localcluster: %s has no running postmaster", n.Name)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	return nil
}

// BlockEtcd cuts the agent off from etcd (its requests hang); UnblockEtcd heals.
func (n *Node) BlockEtcd() {
	for _, p := range n.proxies {
		p.Block()
	}
}

// UnblockEtcd lets the agent reach etcd again.
func (n *Node) UnblockEtcd() {
	for _, p := range n.proxies {
		p.Unblock()
	}
}

// APIURL is the agent's API base URL.
func (n *Node) APIURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.APIPort) }

// Check GETs path on the agent's API and returns the status code (0 when
// the agent does not answer).
func (n *Node) Check(ctx context.Context, path string) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, n.APIURL()+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WipeData removes the member's data directory (the agent must be
// stopped); a restarted agent then clones from the leader.
func (n *Node) WipeData() error {
	if n.AgentRunning() {
		return fmt.Errorf("localcluster: stop agent %s before wiping its data", n.Name)
	}
	return os.RemoveAll(n.DataDir)
}

// SignalAgentGroup sends sig to the agent's process group: the agent and
// the postmaster it started (PostgreSQL's backends and WAL senders run in
// sessions of their own and are not reached). SIGSTOP then freezes the
// agent and the postmaster while existing sessions keep committing.
func (n *Node) SignalAgentGroup(sig syscall.Signal) error {
	pid := n.AgentPID()
	if pid == 0 {
		return fmt.Errorf("localcluster: agent %s is not running", n.Name)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("localcluster: signal process group of agent %s: %w", n.Name, err)
	}
	return nil
}

// SignalPostmaster sends sig to the postmaster only.
func (n *Node) SignalPostmaster(sig syscall.Signal) error {
	pid := n.PostmasterPID()
	if pid == 0 || !processAlive(pid) {
		return fmt.Errorf("localcluster: %s has no running postmaster", n.Name)
	}
	return syscall.Kill(pid, sig)
}

// SignalNode sends sig to every process of the node: the agent and every
// postgres process working in its data directory. SIGSTOP freezes the
// whole node (a paused VM, as seen from outside: connections stay open and
// silent, new ones time out); SIGCONT thaws it.
//
// A process list read once is not enough: the postmaster may fork a
// backend (for a connection it accepted a moment earlier) after the list
// was read and before its own signal lands, and that backend would go on
// serving — a live backend of a "frozen" node, which the drill saw
// answering as a writable primary after a failover. So the list is read
// again, after every signalled process has taken a SIGSTOP (or a SIGKILL
// has been sent), until it holds no process not yet signalled: a stopped
// or killed postmaster forks no more.
func (n *Node) SignalNode(sig syscall.Signal) error {
	signalled := map[int]bool{}
	for range 20 {
		var fresh []int
		for _, pid := range n.nodePIDs() {
			if !signalled[pid] {
				fresh = append(fresh, pid)
			}
		}
		if len(fresh) == 0 {
			break
		}
		for _, pid := range fresh {
			_ = syscall.Kill(pid, sig)
			signalled[pid] = true
		}
		if sig == syscall.SIGSTOP {
			for _, pid := range fresh {
				waitStopped(pid, time.Second)
			}
		}
	}
	if len(signalled) == 0 {
		return fmt.Errorf("localcluster: %s has no processes", n.Name)
	}
	return nil
}

// waitStopped waits, at most d, until process pid is stopped (or gone):
// a signal is delivered asynchronously.
func waitStopped(pid int, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		switch st, ok := procState(pid); {
		case !ok, st == 'T', st == 't', st == 'Z', st == '?':
			return
		}
	}
}

// nodePIDs lists the agent and every process whose working directory is
// the node's data directory (the postmaster and all its children).
func (n *Node) nodePIDs() []int {
	var pids []int
	if pid := n.AgentPID(); pid > 0 {
		pids = append(pids, pid)
	}
	dir := n.DataDir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// PowerOffScript is a sh script that kills, with SIGKILL, every process
// of the member as a power-off would: its agent (found by its config
// file in its command line, so a restarted agent too) and every process
// whose working directory is its data directory (the postmaster and its
// children), stopped or not. A simulated BMC runs it when its chassis is
// powered off (ipmisim.BMC.OnPowerOff).
func (n *Node) PowerOffScript() string {
	dir := n.DataDir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	// Two passes over /proc with one process each (grep, find) rather than
	// two forks per process: a power-off must not take seconds on a busy
	// machine.
	return fmt.Sprintf(`for f in $(grep -alF -- "--config %s" /proc/[0-9]*/cmdline 2>/dev/null) $(find /proc -mindepth 2 -maxdepth 2 -name cwd -lname %q 2>/dev/null); do
  pid=${f#/proc/}
  pid=${pid%%%%/*}
  [ "$pid" = "$$" ] && continue
  kill -KILL "$pid" 2>/dev/null && echo "power off: killed $pid"
done
echo "power off: done $(date +%%T.%%N)"
`, n.Config, dir)
}
