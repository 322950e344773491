package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// A publisher that fails (here the operator's post_promote hook, failing
// while a flag file exists) does not hold up a real failover: the new
// primary serves and its promotion is recorded, the history entry marks
// the step publish:hooks failed, the new primary reports publish_failed
// in its member record (as /cluster and hamgrctl list show it) and in
// hamgr_publish_failing; once the hook works again the agent runs it by
// itself and the problem clears. The hooks get their documented
// arguments and environment.
func TestFailingPublisherDoesNotHoldFailover(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the agents may run as postgres
		t.Fatal(err)
	}
	flag, calls := filepath.Join(dir, "fail"), filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "hook.sh")
	script := fmt.Sprintf("#!/bin/sh\necho \"$1 $2 $3 member=$HAMGR_MEMBER epoch=$HAMGR_EPOCH old=$HAMGR_OLD_PRIMARY\" >> %s\n"+
		"if [ -e %s ]; then echo 'failing on purpose'; exit 1; fi\n", calls, flag)
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(calls, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(calls, 0o666); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, localcluster.Options{Prepare: func(n *localcluster.Node) error {
		f, err := os.OpenFile(n.Config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fmt.Fprintf(f, "discovery:\n  timeout: 5s\nhooks:\n  post_promote: %s\n  on_role_change: %s\n  on_start: %s\n", hook, hook, hook)
		return err
	}})
	old, _ := leader(t, c)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	old.KillNode()
	tl, err := c.ObservePromotion(ctxFor(t, time.Duration(localcluster.FastTiming.TTL)+60*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s promoted (epoch %d) %v after the crash, with its hook failing", tl.New, tl.Epoch, tl.Promoted.Round(time.Millisecond))

	entry := waitHistory(t, c, tl.Epoch)
	i := slices.IndexFunc(entry.Steps, func(s cluster.Step) bool { return s.Name == "publish:hooks" })
	if i < 0 || !strings.Contains(entry.Steps[i].Failed, "hook post_promote") {
		t.Fatalf("history steps %+v, want publish:hooks failed by post_promote", entry.Steps)
	}
	newNode := c.Node(tl.New)
	waitMember(t, c, tl.New, "report publish_failed", func(m *cluster.Member) bool {
		return m.Problem == cluster.ProblemPublishFailed && strings.Contains(m.Reason, "publisher hooks")
	})
	if m := metricsText(t, newNode); !strings.Contains(m, `hamgr_publish_failing{cluster="local",member="`+tl.New+`",publisher="hooks"} 1`) {
		t.Fatalf("metrics lack hamgr_publish_failing 1 for hooks:\n%s", strings.Join(grepLines(m, "hamgr_publish"), "\n"))
	}

	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	// Retries back off from 1s, doubling, at most 1m.
	waitMember(t, c, tl.New, "clear its problem once the hook works", func(m *cluster.Member) bool {
		return m.Problem == cluster.ProblemNone
	})
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("on_role_change primary local member=%s epoch=%d", tl.New, tl.Epoch)
	if !strings.Contains(string(b), fmt.Sprintf("post_promote primary local member=%s epoch=%d old=%s", tl.New, tl.Epoch, old.Name)) ||
		!strings.Contains(string(b), want) || !slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
		return strings.HasPrefix(l, "on_start ") && strings.Contains(l, " member="+tl.New+" ")
	}) ||
		strings.Count(string(b), "post_promote primary local member="+tl.New) < 2 {
		t.Fatalf("hook calls:\n%s\nwant on_start, post_promote over %s (failed, then again) and %q", b, old.Name, want)
	}
	if m := metricsText(t, newNode); !strings.Contains(m, `hamgr_publish_failing{cluster="local",member="`+tl.New+`",publisher="hooks"} 0`) {
		t.Fatalf("metrics: hamgr_publish_failing not 0 after the hook succeeded:\n%s", strings.Join(grepLines(m, "hamgr_publish"), "\n"))
	}
}

// waitHistory waits for the history entry of epoch.
func waitHistory(t *testing.T, c *localcluster.Cluster, epoch cluster.Epoch) cluster.HistoryEntry {
	t.Helper()
	var found *cluster.HistoryEntry
	err := localcluster.WaitFor(ctxFor(t, time.Minute), func() bool {
		h, err := c.Store.History(context.Background())
		if err != nil {
			return false
		}
		for i := range h {
			if h[i].Epoch == epoch {
				found = &h[i]
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no history entry of epoch %d: %v", epoch, err)
	}
	return *found
}

// waitMember waits (up to 2 minutes) until member name's record satisfies
// cond.
func waitMember(t *testing.T, c *localcluster.Cluster, name, what string, cond func(*cluster.Member) bool) {
	t.Helper()
	var last *cluster.Member
	err := localcluster.WaitFor(ctxFor(t, 2*time.Minute), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		last = s.Member(name)
		return last != nil && cond(last)
	})
	if err != nil {
		t.Fatalf("%s did not %s: %v; last record %+v", name, what, err, last)
	}
}

// metricsText reads n's /metrics.
func metricsText(t *testing.T, n *localcluster.Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
