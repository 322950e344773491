package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/internal/archtest"
)

// TestNoTestCodeInTheBinary keeps the production binary free of the test
// tree: nothing under integration/ may be among cmd/hamgr's dependencies.
func TestNoTestCodeInTheBinary(t *testing.T) {
	archtest.Forbid(t, "github.com/hamgr/hamgr/cmd/hamgr", "code the product imports must live outside integration/",
		"github.com/hamgr/hamgr/integration/...", "github.com/hamgr/hamgr/internal/archtest",
		"github.com/hamgr/hamgr/internal/ipmisim", "github.com/hamgr/hamgr/stonith/redfishtest")
}

// TestAgentOnlyBuildHasNoEtcdServer keeps the production build (-tags
// agentonly) free of the etcd server that `hamgr demo` and etcd.embedded
// run: linked in, its package initialisers' heap and the pages the agent
// then touches cost an idle agent about 2 MiB (integration/cmd/footprint).
func TestAgentOnlyBuildHasNoEtcdServer(t *testing.T) {
	archtest.ForbidTagged(t, "agentonly", "github.com/hamgr/hamgr/cmd/hamgr", "the production build leaves out the embedded etcd server",
		"go.etcd.io/etcd/server/...", "github.com/hamgr/hamgr/dcs/etcd/etcdembed", "github.com/hamgr/hamgr/localcluster")
}

// TestFullBuildHasTheDemo checks the other side: without the tag, the
// demo and its embedded etcd are in (or the README's first command breaks).
func TestFullBuildHasTheDemo(t *testing.T) {
	if !slices.Contains(archtest.Deps(t, "github.com/hamgr/hamgr/cmd/hamgr"), "github.com/hamgr/hamgr/dcs/etcd/etcdembed") {
		t.Fatal("cmd/hamgr built without tags does not link dcs/etcd/etcdembed: `hamgr demo` has no etcd to run")
	}
}

// TestAgentOnlyBuildRefusesTheDemo builds the production binary and runs
// its demo, which must refuse and say what to do instead.
func TestAgentOnlyBuildRefusesTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hamgr with -tags agentonly")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "hamgr")
	if out, err := exec.Command(goBin, "build", "-tags", "agentonly", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags agentonly: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err == nil {
		t.Fatalf("hamgr demo of an agentonly build succeeded:\n%s", out)
	}
	for _, want := range []string{"-tags agentonly", "etcd.endpoints", "build hamgr without the tag"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("hamgr demo of an agentonly build said %q, want it to mention %q", out, want)
		}
	}
}
