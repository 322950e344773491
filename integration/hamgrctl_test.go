package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/localcluster"
)

var (
	hamgrctlOnce sync.Once
	hamgrctlBin  string
	hamgrctlErr  error
)

// buildHamgrctl builds cmd/hamgrctl once, next to the hamgr binary that
// TestMain built (and removes).
func buildHamgrctl(t *testing.T) string {
	t.Helper()
	hamgrctlOnce.Do(func() {
		hamgrctlBin = filepath.Join(filepath.Dir(hamgrBin), "hamgrctl")
		out, err := exec.Command("go", "build", "-o", hamgrctlBin, "github.com/hamgr/hamgr/cmd/hamgrctl").CombinedOutput()
		if err != nil {
			hamgrctlErr = errors.New("build hamgrctl: " + err.Error() + "\n" + string(out))
		}
	})
	if hamgrctlErr != nil {
		t.Fatal(hamgrctlErr)
	}
	return hamgrctlBin
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

// hamgrctl runs the built binary against the cluster's etcd with stdin
// not a terminal.
func hamgrctl(t *testing.T, c *localcluster.Cluster, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	full := append([]string{"--cluster", "local", "--etcd", strings.Join(c.Etcd.Endpoints(), ",")}, args...)
	cmd := exec.CommandContext(ctx, buildHamgrctl(t), full...)
	cmd.Env = append(os.Environ(), "HAMGRCTL_CONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run hamgrctl %v: %v", args, err)
	}
	t.Logf("$ hamgrctl %s  (exit %d)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (r ctlResult) mustSucceed(t *testing.T) ctlResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	return r
}

// refused checks a refusal: exit 1, one "hamgrctl: " line naming want.
func (r ctlResult) refused(t *testing.T, want string) {
	t.Helper()
	if r.code != 1 || !strings.HasPrefix(r.stderr, "hamgrctl: ") || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, want) {
		t.Errorf("want exit 1 and one error line mentioning %q; got exit %d, stderr %q", want, r.code, r.stderr)
	}
}

// hamgrctl against a real cluster: list, refusals that write nothing,
// config set, pause and resume, a switchover and its history entry.
func TestHamgrctl(t *testing.T) {
	buildHamgrctl(t)
	c := startCluster(t, localcluster.Options{})
	if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, lead := leader(t, c)

	// list: three members and the leader.
	r := hamgrctl(t, c, "list").mustSucceed(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(r.stdout, "\n"+n+" ") {
			t.Errorf("list lacks member %s", n)
		}
	}
	if !strings.Contains(r.stdout, "Leader: "+lead.Name) || !strings.Contains(r.stdout, "Members: 3") {
		t.Errorf("list header does not name leader %s of 3 members", lead.Name)
	}

	// list --json.
	r = hamgrctl(t, c, "list", "--json").mustSucceed(t)
	var doc struct {
		Cluster string
		Leader  string
		Epoch   int64
		Paused  bool
		Members []struct{ Name, Role string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("list --json: %v", err)
	}
	if doc.Cluster != "local" || doc.Leader != lead.Name || doc.Epoch != int64(lead.Epoch) || len(doc.Members) != 3 {
		t.Errorf("list --json: %+v, want leader %s epoch %d and 3 members", doc, lead.Name, lead.Epoch)
	}

	unchanged := func(what string) {
		t.Helper()
		s, err := c.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Leader == nil || s.Leader.Epoch != lead.Epoch || s.Request != nil {
			t.Fatalf("%s changed the cluster: leader %+v, request %+v", what, s.Leader, s.Request)
		}
	}

	// A switchover without a terminal and without --force is refused.
	other := "n3"
	if lead.Name == "n3" {
		other = "n1"
	}
	hamgrctl(t, c, "switchover", "--to", other).refused(t, "--force")
	unchanged("switchover without --force")

	// failover with a healthy primary is refused, pointing at switchover.
	hamgrctl(t, c, "failover", "--to", other, "--force").refused(t, "switchover")
	unchanged("failover with a healthy primary")

	// An impossible config is refused, naming the key; nothing changes.
	before, _ := c.Snapshot(context.Background())
	hamgrctl(t, c, "config", "set", "ttl=1s").refused(t, "ttl")
	after, _ := c.Snapshot(context.Background())
	if *before.Config != *after.Config {
		t.Errorf("refused config set changed the config: %+v -> %+v", *before.Config, *after.Config)
	}

	// A good one is written; config show has it in bytes.
	hamgrctl(t, c, "config", "set", "maximum_lag_on_failover=16MB").mustSucceed(t)
	r = hamgrctl(t, c, "config", "show").mustSucceed(t)
	if !strings.Contains(r.stdout, "maximum_lag_on_failover: 16777216") {
		t.Errorf("config show lacks maximum_lag_on_failover: 16777216")
	}
	if s, _ := c.Snapshot(context.Background()); s.Config.MaximumLagOnFailover != 16<<20 {
		t.Errorf("stored maximum_lag_on_failover = %d", s.Config.MaximumLagOnFailover)
	}

	// pause, list shows it, resume.
	hamgrctl(t, c, "pause").mustSucceed(t)
	if r = hamgrctl(t, c, "list").mustSucceed(t); !strings.Contains(r.stdout, "Paused: yes") {
		t.Errorf("list after pause does not show Paused: yes")
	}
	hamgrctl(t, c, "resume", "--wait").mustSucceed(t)
	if r = hamgrctl(t, c, "list").mustSucceed(t); !strings.Contains(r.stdout, "Paused: no") {
		t.Errorf("list after resume does not show Paused: no")
	}

	// switchover --to n2 --force moves the leader to n2 (first away from
	// n2 if it leads already).
	if lead.Name == "n2" {
		hamgrctl(t, c, "switchover", "--to", "n1", "--force").mustSucceed(t)
		if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
		_, lead = leader(t, c)
	}
	r = hamgrctl(t, c, "switchover", "--to", "n2", "--force").mustSucceed(t)
	if !strings.Contains(r.stdout, "n2 is the new leader") {
		t.Errorf("switchover output does not report n2 as the new leader")
	}
	s, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Leader == nil || s.Leader.Name != "n2" || s.Leader.Epoch <= lead.Epoch {
		t.Fatalf("after switchover: leader %+v, want n2 above epoch %d", s.Leader, lead.Epoch)
	}
	if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}

	// history shows it.
	r = hamgrctl(t, c, "history").mustSucceed(t)
	found := false
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[3] == "switchover" && f[4] == lead.Name && f[5] == "n2" {
			found = true
		}
	}
	if !found {
		t.Errorf("history has no switchover %s -> n2", lead.Name)
	}

	// Usage errors exit 2.
	if r = hamgrctl(t, c, "switchover", "--at", "not-a-time", "--force"); r.code != 2 {
		t.Errorf("bad --at: exit %d, want 2", r.code)
	}
}
