package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/dcstest"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
)

// clusterStore returns a store on cluster name of srv, claimed for
// claimant unless claimant is "".
func clusterStore(t *testing.T, srv *etcdembed.Server, name, claimant string) *etcd.Store {
	t.Helper()
	st, err := etcd.New(etcd.Options{Endpoints: srv.Endpoints(), Cluster: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if claimant != "" {
		if got, err := st.Initialize(testCtx(t), claimant, dcstest.ValidConfig()); err != nil || got != claimant {
			t.Fatalf("claim %s for %s: %q, %v", name, claimant, got, err)
		}
	}
	return st
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// claimOf is the bootstrap claim st's cluster holds now.
func claimOf(t *testing.T, st *etcd.Store) string {
	t.Helper()
	snap, err := st.Load(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return snap.Initialized
}

// publish makes member m live in st's cluster, as its agent does.
func publish(t *testing.T, st *etcd.Store, m cluster.Member) {
	t.Helper()
	ctx := testCtx(t)
	if err := st.Grant(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := st.PublishMember(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// resetCLI runs hamgrctl bootstrap reset on cluster name with stdin.
func resetCLI(t *testing.T, srv *etcdembed.Server, name string, stdin io.Reader, tty bool, extra ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdin: stdin, stdout: &out, stderr: &errb, stdinTTY: tty,
		getenv: func(string) string { return "" }, now: time.Now}
	argv := append([]string{"bootstrap", "reset", "--cluster", name, "--etcd", srv.Endpoints()[0]}, extra...)
	code := run(context.Background(), argv, e)
	t.Logf("hamgrctl %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(argv[:2], " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func wantAll(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q lacks %q", what, got, w)
		}
	}
}

// A claim nobody led is released; a waiting member then claims it.
func TestBootstrapResetReleases(t *testing.T) {
	srv, st := startEtcd(t) // cluster c, claimed by n1
	waiting := clusterStore(t, srv, "c", "")
	publish(t, waiting, cluster.Member{Name: "n2", State: cluster.StateStopped, Reason: "empty data directory; waiting for a leader to clone from"})
	code, out, stderr := resetCLI(t, srv, "c", strings.NewReader(""), false, "--force")
	if code != 0 {
		t.Fatalf("reset: exit %d, %s", code, stderr)
	}
	wantAll(t, "reset output", out,
		"Cluster c: n1 claimed the bootstrap and nobody has led the cluster yet",
		"Other members: n2 (stopped: empty data directory; waiting for a leader to clone from).",
		"Released n1's bootstrap claim of cluster c.",
		"within a loop_wait (2s)",
		"Before n1's agent starts again, empty its data directory",
		"hamgrctl config show")
	if c := claimOf(t, st); c != "" {
		t.Fatalf("claim after reset: %q, want none", c)
	}
	if got, err := waiting.Initialize(testCtx(t), "n2", dcstest.ValidConfig()); err != nil || got != "n2" {
		t.Fatalf("n2's claim after the reset: %q, %v; want n2", got, err)
	}
}

// Once a leader has existed, even after it released the key, the claim
// stays: a reset would bootstrap a second database over the first.
func TestBootstrapResetRefusedAfterLeader(t *testing.T) {
	srv, st := startEtcd(t)
	ctx := testCtx(t)
	if err := st.Grant(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l, ok, err := st.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	for _, tc := range []struct {
		name, who string
		release   bool
	}{
		{"holding the key", "n1, holding the leader key now", false},
		{"after releasing it", "last leader n1", true},
	} {
		if tc.release {
			if err := st.ReleaseLeader(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		code, _, stderr := resetCLI(t, srv, "c", strings.NewReader(""), false, "--force")
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.name, code)
		}
		wantAll(t, tc.name, stderr, fmt.Sprintf("hamgrctl: refused: the cluster has led since epoch %d (%s); a reset would bootstrap a second database over it — nothing was changed", l.Epoch, tc.who))
		if c := claimOf(t, st); c != "n1" {
			t.Fatalf("%s: claim %q after a refused reset, want n1", tc.name, c)
		}
	}
}

func TestBootstrapResetRefusals(t *testing.T) {
	srv, st := startEtcd(t)
	t.Run("no claim", func(t *testing.T) {
		clusterStore(t, srv, "fresh", "")
		code, _, stderr := resetCLI(t, srv, "fresh", strings.NewReader(""), false, "--force")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantAll(t, "no claim", stderr, "refused: nothing to reset: no member has claimed the bootstrap of cluster fresh", "nothing was changed")
	})
	t.Run("no terminal without --force", func(t *testing.T) {
		code, out, stderr := resetCLI(t, srv, "c", strings.NewReader("y\n"), false)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantAll(t, "no terminal", stderr, "stdin is not a terminal", "pass --force")
		wantAll(t, "no terminal", out, "n1 claimed the bootstrap")
		if c := claimOf(t, st); c != "n1" {
			t.Fatalf("claim %q, want n1 kept", c)
		}
	})
	t.Run("not confirmed", func(t *testing.T) {
		code, out, stderr := resetCLI(t, srv, "c", strings.NewReader("n\n"), true)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantAll(t, "not confirmed", out, "Release n1's bootstrap claim", "[y/N]")
		wantAll(t, "not confirmed", stderr, "aborted: nothing was written")
		if c := claimOf(t, st); c != "n1" {
			t.Fatalf("claim %q, want n1 kept", c)
		}
	})
	t.Run("claimant's agent running", func(t *testing.T) {
		claimed := clusterStore(t, srv, "live", "n1")
		publish(t, claimed, cluster.Member{Name: "n1", State: cluster.StateCrashed, Reason: "new cluster: the first database is not running"})
		code, _, stderr := resetCLI(t, srv, "live", strings.NewReader(""), false, "--force")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantAll(t, "agent running", stderr, "refused: n1's agent is running (its member record is live; state crashed: new cluster: the first database is not running)",
			"stop its agent and run this again once its member record is gone (within the ttl, 10s) — nothing was changed")
		if c := claimOf(t, claimed); c != "n1" {
			t.Fatalf("claim %q, want n1 kept", c)
		}
	})
	t.Run("claim changed meanwhile", func(t *testing.T) {
		claimed := clusterStore(t, srv, "race", "n1")
		// While the operator reads the question, another reset releases
		// n1's claim and n2 claims the bootstrap.
		answer := &actingReader{answer: "y\n", act: func() {
			ctx := testCtx(t)
			if _, err := claimed.ResetBootstrap(ctx, "n1"); err != nil {
				t.Error(err)
			}
			if _, err := claimed.Initialize(ctx, "n2", dcstest.ValidConfig()); err != nil {
				t.Error(err)
			}
		}}
		code, _, stderr := resetCLI(t, srv, "race", answer, true)
		if code != 1 || !answer.acted {
			t.Errorf("exit %d (acted %v), want 1 after the claim changed", code, answer.acted)
		}
		wantAll(t, "claim changed", stderr, "refused: the bootstrap claim changed meanwhile: n2 holds it now, not n1 — nothing was changed")
		if c := claimOf(t, claimed); c != "n2" {
			t.Fatalf("claim %q, want n2's kept", c)
		}
	})
	t.Run("leader appeared meanwhile", func(t *testing.T) {
		claimed := clusterStore(t, srv, "led", "n1")
		var epoch cluster.Epoch
		answer := &actingReader{answer: "y\n", act: func() {
			ctx := testCtx(t)
			if err := claimed.Grant(ctx, 10*time.Second); err != nil {
				t.Error(err)
			}
			l, ok, err := claimed.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
			if err != nil || !ok {
				t.Errorf("acquire: %v %v", ok, err)
			}
			epoch = l.Epoch
		}}
		code, _, stderr := resetCLI(t, srv, "led", answer, true)
		if code != 1 || !answer.acted {
			t.Errorf("exit %d (acted %v), want 1 after a leader appeared", code, answer.acted)
		}
		wantAll(t, "leader appeared", stderr, fmt.Sprintf("refused: the cluster has led since epoch %d (n1, holding the leader key now)", epoch))
		if c := claimOf(t, claimed); c != "n1" {
			t.Fatalf("claim %q, want n1 kept", c)
		}
	})
}

// actingReader runs act before its first read returns answer, so a test
// can change the store while the command waits for confirmation.
type actingReader struct {
	answer string
	act    func()
	acted  bool
}

func (r *actingReader) Read(p []byte) (int, error) {
	if !r.acted {
		r.acted = true
		r.act()
	}
	if r.answer == "" {
		return 0, io.EOF
	}
	n := copy(p, r.answer)
	r.answer = r.answer[n:]
	return n, nil
}
