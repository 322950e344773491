package hook

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Every hook gets its documented arguments and environment, in the order
// the agent calls them (on_start first, then on_role_change; a promotion
// runs post_promote then on_role_change), and its output is in the log.
func TestHooksArgumentsEnvironmentAndOrder(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "calls")
	body := `echo "$1 $2 $3 member=$HAMGR_MEMBER role=$HAMGR_ROLE epoch=$HAMGR_EPOCH leader=$HAMGR_LEADER old=$HAMGR_OLD_PRIMARY host=$HAMGR_HOST:$HAMGR_PORT event=$HAMGR_EVENT cluster=$HAMGR_CLUSTER" >> ` + rec + `
echo "hello from $1"`
	prog := script(t, dir, "hook.sh", body)
	var logs syncBuffer
	h := &Hooks{Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Programs: map[Event]string{
		PrePromote: prog, PostPromote: prog, OnRoleChange: prog, OnStart: prog, OnStop: prog}}
	ctx := testCtx(t)
	self := discovery.Self{Cluster: "c1", Name: "n2", Role: cluster.RoleReplica, Epoch: 4, Leader: "n1", Host: "10.0.0.2", Port: 5432}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.PublishSelf(ctx, self))
	pr := discovery.Primary{Cluster: "c1", Name: "n2", Epoch: 5, Host: "10.0.0.2", Port: 5432, OldPrimary: "n1"}
	must(h.PrePromote(ctx, pr))
	must(h.Publish(ctx, pr))
	self.Role = cluster.RoleUnknown
	must(h.Withdraw(ctx, self))
	b, err := os.ReadFile(rec)
	must(err)
	want := []string{
		"on_start replica c1 member=n2 role=replica epoch=4 leader=n1 old= host=10.0.0.2:5432 event=on_start cluster=c1",
		"pre_promote replica c1 member=n2 role=replica epoch=5 leader=n2 old=n1 host=10.0.0.2:5432 event=pre_promote cluster=c1",
		"post_promote primary c1 member=n2 role=primary epoch=5 leader=n2 old=n1 host=10.0.0.2:5432 event=post_promote cluster=c1",
		"on_role_change primary c1 member=n2 role=primary epoch=5 leader=n2 old=n1 host=10.0.0.2:5432 event=on_role_change cluster=c1",
		"on_stop unknown c1 member=n2 role=unknown epoch=4 leader=n1 old= host=10.0.0.2:5432 event=on_stop cluster=c1",
	}
	if got := strings.TrimSpace(string(b)); got != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if !strings.Contains(logs.String(), `line="hello from post_promote"`) {
		t.Fatalf("hook output not in the log:\n%s", logs.String())
	}
}

// A hook that outlives its timeout is killed with the processes it
// started, and fails.
func TestHookTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	prog := script(t, dir, "slow.sh", "sleep 30 & echo $! > "+pidFile+"\nwait")
	h := &Hooks{Timeout: 300 * time.Millisecond, Programs: map[Event]string{OnStop: prog}}
	start := time.Now()
	err := h.Withdraw(testCtx(t), discovery.Self{Cluster: "c1", Name: "n1"})
	if err == nil || !strings.Contains(err.Error(), "killed after") || time.Since(start) > 10*time.Second {
		t.Fatalf("slow hook: %v after %s, want killed after its timeout", err, time.Since(start))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone, or a zombie awaiting its reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's child %s still runs after the hook was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A failing pre_promote blocks the promotion under FailureBlock and not
// under FailureContinue; a missing hook is success.
func TestPrePromotePolicy(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "fail.sh", "echo no >&2; exit 3")
	pr := discovery.Primary{Cluster: "c1", Name: "n2", Epoch: 2}
	h := &Hooks{Timeout: 5 * time.Second, Programs: map[Event]string{PrePromote: prog}}
	if err := h.PrePromote(testCtx(t), pr); err == nil || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.Contains(err.Error(), "block") {
		t.Fatalf("block: %v, want the hook's failure", err)
	}
	h.PrePromoteFailure = FailureContinue
	if err := h.PrePromote(testCtx(t), pr); err != nil {
		t.Fatalf("continue: %v, want nil", err)
	}
	if err := (&Hooks{}).PrePromote(testCtx(t), pr); err != nil {
		t.Fatalf("no hook: %v", err)
	}
}

// A promotion whose post_promote failed runs it again when the agent
// republishes the primary of that epoch, not on_role_change alone.
func TestPostPromoteRetried(t *testing.T) {
	dir := t.TempDir()
	flag, rec := filepath.Join(dir, "fail"), filepath.Join(dir, "calls")
	prog := script(t, dir, "hook.sh", "echo \"$1 $HAMGR_EPOCH\" >> "+rec+"\n[ ! -e "+flag+" ]")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Hooks{Timeout: 5 * time.Second, Programs: map[Event]string{PostPromote: prog, OnRoleChange: prog}}
	ctx := testCtx(t)
	if err := h.Publish(ctx, discovery.Primary{Cluster: "c1", Name: "n2", Epoch: 5}); err == nil {
		t.Fatal("post_promote with the flag: no error")
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	s := discovery.Self{Cluster: "c1", Name: "n2", Role: cluster.RolePrimary, Epoch: 5, Leader: "n2"}
	if err := h.PublishSelf(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := h.PublishSelf(ctx, s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := "post_promote 5\npost_promote 5\non_role_change 5\non_role_change 5\n"
	if string(b) != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", b, want)
	}
}
