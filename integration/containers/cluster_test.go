package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/stonith/redfishtest"
)

// The images build-images.sh builds.
const (
	nodeImage   = "local/hamgr-drill-node:dev" // hamgr-node plus iptables
	etcdImage   = "local/hamgr-drill-etcd:dev"
	buildScript = "integration/containers/build-images.sh"
)

// drillTTL is the fast timing profile's ttl, the one every drill but the
// fault matrix's default-profile cells runs with: the drills wait multiples
// of the TTL.
const (
	drillTTL  = 5 * time.Second
	pgPort    = 5432
	apiPort   = 8008
	nodeCount = 3
)

func TestMain(m *testing.M) {
	// Ryuk (testcontainers' reaper) is an image from a registry; the drills
	// remove what they create themselves.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	os.Exit(m.Run())
}

// requireEngine skips the test unless the docker CLI reaches an engine that
// has both images.
func requireEngine(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skipf("container drills: no docker CLI (%v); install Docker and run %s", err, buildScript)
	}
	for _, img := range []string{nodeImage, etcdImage} {
		if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", img).CombinedOutput(); err != nil {
			t.Skipf("container drills: image %s not available (%v: %s); build the images with %s",
				img, err, strings.TrimSpace(string(out)), buildScript)
		}
	}
}

// docker runs the docker CLI and fails the test on error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// member is one container of the drill.
type member struct {
	name string
	ip   netip.Addr
	ctr  testcontainers.Container
}

func (m *member) id() string { return m.ctr.GetContainerID() }

// cluster is a drill's three nodes and three etcd members on a private
// network.
type cluster struct {
	t        *testing.T
	timing   profile
	netName  string
	nodes    []*member
	etcds    []*member
	password string
	byIP     map[string]string // node IP -> name
	// bmcs are the nodes' simulated BMCs, by node name (fenced clusters
	// only; see startBMCs).
	bmcs map[string]*redfishtest.Server
}

// randomSecret returns n random bytes in hex.
func randomSecret(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// createNetwork creates a bridge network of the test's own with a /24 of
// 10.0.0.0/8 chosen at random (retrying on overlap): fixed addresses let a
// disconnected container come back with the one it had.
func createNetwork(t *testing.T) (string, netip.Prefix) {
	t.Helper()
	name := "hamgr-drill-" + randomSecret(t, 4)
	var last error
	for range 8 {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<16))
		if err != nil {
			t.Fatal(err)
		}
		v := n.Int64()
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 100+v>>8%100, v&0xff))
		if _, last = dockerErr("network", "create", "--driver", "bridge", "--subnet", p.String(),
			"--label", "hamgr-drill=1", name); last == nil {
			t.Cleanup(func() {
				if _, err := dockerErr("network", "rm", name); err != nil {
					t.Errorf("remove the drill network: %v", err)
				}
			})
			return name, p
		}
	}
	t.Fatalf("create a drill network: %v", last)
	return "", netip.Prefix{}
}

func addr(p netip.Prefix, host byte) netip.Addr {
	b := p.Addr().As4()
	b[3] = host
	return netip.AddrFrom4(b)
}

// startContainer starts one container on the drill network with a fixed
// address; it is removed when the test ends.
func (c *cluster) startContainer(ctx context.Context, name string, ip netip.Addr, image string,
	env map[string]string, cmd []string) *member {
	return c.startContainerHC(ctx, name, ip, image, env, cmd, nil)
}

// startContainerHC is startContainer with a host config modifier (nil for
// none).
func (c *cluster) startContainerHC(ctx context.Context, name string, ip netip.Addr, image string,
	env map[string]string, cmd []string, hc func(*container.HostConfig)) *member {
	c.t.Helper()
	netName := c.netName
	req := testcontainers.ContainerRequest{
		Image:              image,
		Name:               netName + "-" + name,
		Env:                env,
		Cmd:                cmd,
		Networks:           []string{netName},
		NetworkAliases:     map[string][]string{netName: {name}},
		HostConfigModifier: hc,
		EndpointSettingsModifier: func(eps map[string]*network.EndpointSettings) {
			if ep := eps[netName]; ep != nil {
				ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ip}
			}
		},
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req, Started: true, Logger: tclog.TestLogger(c.t)})
	// Killed at the end: a clean stop would hand over first, for nothing.
	testcontainers.CleanupContainer(c.t, ctr, testcontainers.StopTimeout(0))
	if err != nil {
		c.t.Fatalf("start container %s (%s): %v", name, image, err)
	}
	return &member{name: name, ip: ip, ctr: ctr}
}

// profile is a timing profile the nodes' hamgr.yml sets
// (localcluster.FastTiming and localcluster.DefaultTiming).
type profile struct {
	name                                             string
	ttl, loopWait, retryTimeout, primaryStartTimeout time.Duration
}

// The two documented timing profiles.
var (
	fastProfile    = profile{name: "fast", ttl: drillTTL, loopWait: drillLoopWait, retryTimeout: drillRetryTimeout, primaryStartTimeout: 10 * time.Second}
	defaultProfile = profile{name: "default", ttl: 10 * time.Second, loopWait: 2 * time.Second, retryTimeout: 5 * time.Second, primaryStartTimeout: 30 * time.Second}
)

// startCluster starts a cluster with the fast timing profile.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, fastProfile, noFencing)
}

// startClusterWith starts three etcd members and three nodes with timing
// profile p and fencing f and waits until one node is primary and both
// others stream from it.
func startClusterWith(t *testing.T, p profile, f fencing) *cluster {
	t.Helper()
	requireEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	netName, prefix := createNetwork(t)
	c := &cluster{t: t, timing: p, netName: netName, password: randomSecret(t, 12), byIP: map[string]string{}}
	fenceYAML := ""
	if f == redfishFencing {
		fenceYAML = c.startBMCs(addr(prefix, 1))
	}
	var initial, endpoints []string
	for i := range 3 {
		ip := addr(prefix, byte(21+i))
		initial = append(initial, fmt.Sprintf("e%d=http://%s:2380", i+1, ip))
		endpoints = append(endpoints, fmt.Sprintf("http://%s:2379", ip))
	}
	var wg sync.WaitGroup
	c.etcds = make([]*member, 3)
	for i := range 3 {
		wg.Go(func() {
			ip := addr(prefix, byte(21+i))
			c.etcds[i] = c.startContainer(ctx, fmt.Sprintf("e%d", i+1), ip, etcdImage, nil,
				[]string{"-name", fmt.Sprintf("e%d", i+1), "-ip", ip.String(), "-initial-cluster", strings.Join(initial, ","),
					"-log-level", "error"})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	c.waitEtcd(ctx, endpoints)
	for i := range nodeCount {
		name := fmt.Sprintf("n%d", i+1)
		ip := addr(prefix, byte(11+i))
		c.byIP[ip.String()] = name
		c.nodes = append(c.nodes, c.startContainerHC(ctx, name, ip, nodeImage, map[string]string{
			"HAMGR_CONFIG":               nodeConfig(name, ip, endpoints, p) + fenceYAML,
			"HAMGR_SUPERUSER_PASSWORD":   c.password,
			"HAMGR_REPLICATION_PASSWORD": c.password + "-r",
			"HAMGR_API_TOKEN":            c.password + "-t",
			bmcPasswordEnv:               c.password + "-b",
		}, nil, func(h *container.HostConfig) {
			// iptables inside the node, for partial cuts.
			h.CapAdd = append(h.CapAdd, "NET_ADMIN")
		}))
		if i == 0 {
			// The first node bootstraps alone, so that which one does is known.
			if _, err := c.waitConverged(ctx, 1); err != nil {
				t.Fatalf("n1 does not bootstrap: %v", err)
			}
		}
	}
	if _, err := c.waitConverged(ctx, nodeCount); err != nil {
		t.Fatalf("the cluster does not converge: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	return c
}

// nodeConfig is a node's hamgr.yml: timing profile p, every address the
// container's own. It ends with the timing section (startBMCs adds to it).
func nodeConfig(name string, ip netip.Addr, etcd []string, p profile) string {
	return fmt.Sprintf(`cluster: drill
name: %s
etcd:
  endpoints: [%s]
api:
  listen: 0.0.0.0:%d
  advertise: http://%s:%d
  token_file: /etc/hamgr/api.token
postgresql:
  data_dir: /var/lib/hamgr/data
  listen_host: 0.0.0.0
  connect_host: %s
  port: %d
  socket_dir: /var/lib/hamgr
  superuser:
    username: postgres
    password_file: /etc/hamgr/superuser.password
  replication:
    username: replicator
    password_file: /etc/hamgr/replication.password
  parameters:
    fsync: "off"
    shared_buffers: 32MB
    max_connections: "50"
timing:
  ttl: %s
  loop_wait: %s
  retry_timeout: %s
  primary_start_timeout: %s
`, name, strings.Join(etcd, ", "), apiPort, ip, apiPort, ip, pgPort, p.ttl, p.loopWait, p.retryTimeout, p.primaryStartTimeout)
}

// waitEtcd waits until every etcd member answers /health with 200.
func (c *cluster) waitEtcd(ctx context.Context, endpoints []string) {
	c.t.Helper()
	hc := &http.Client{Timeout: time.Second}
	err := localcluster.Poll(ctx, 200*time.Millisecond, func() bool {
		for _, e := range endpoints {
			resp, err := hc.Get(e + "/health")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("etcd members %v not healthy: %v", endpoints, err)
	}
}

// dumpLogs logs the end of every container's output.
func (c *cluster) dumpLogs() {
	for _, m := range append(append([]*member(nil), c.nodes...), c.etcds...) {
		out, err := dockerErr("logs", "--tail", "60", m.id())
		c.t.Logf("==== %s (%s), last lines:\n%s%v", m.name, m.ip, out, errOrEmpty(err))
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return "\n" + err.Error()
}

// node returns the node named name.
func (c *cluster) node(name string) *member {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// hamgrctl runs hamgrctl inside a running node.
func (c *cluster) hamgrctl(n *member, args ...string) string {
	c.t.Helper()
	return docker(c.t, append([]string{"exec", n.id(), "hamgrctl", "-c", "/etc/hamgr/hamgr.yml"}, args...)...)
}
