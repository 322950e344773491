package postgres

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
)

// TestRepeatedFollowWakesReceiverRetry: a replica that points at its
// upstream before the upstream has its slot fails to stream, and its
// startup process sleeps out wal_retrieve_retry_interval before it tries
// again. Follow repeated once the slot exists (as ha repeats it while the
// replica does not stream) wakes it: the replica streams long before the
// interval, set to a minute here, is out. Without the wake the test waits
// the whole minute and fails at half of it.
func TestRepeatedFollowWakesReceiverRetry(t *testing.T) {
	requirePG(t)
	const retry = time.Minute
	base := testBase(t)
	n1 := member(t, slotOptions(t, base, "n1"))
	o2 := slotOptions(t, base, "n2")
	o2.Parameters["wal_retrieve_retry_interval"] = strconv.Itoa(int(retry/time.Millisecond)) + "ms"
	n2 := member(t, o2)
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	up := upstream(n1)
	timed(t, "n2 clone", func() error { return n2.Clone(ctxT(t, 30*time.Second), up) })
	timed(t, "n2 start replica", func() error { return n2.StartReplica(ctxT(t, 15*time.Second), &up) })
	waitFor(t, 10*time.Second, "n2 complains about its missing slot", func() (bool, string) {
		b, _ := os.ReadFile(n2.opts.LogFile)
		return strings.Contains(string(b), `replication slot "n2" does not exist`), ""
	})
	watch, err := pgx.Connect(ctxT(t, 5*time.Second), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", o2.SocketDir, o2.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctxT(t, 5*time.Second))
	waitFor(t, 10*time.Second, "n2's startup process sleeping between receiver retries", func() (bool, string) {
		ev := startupWaitEvent(t, watch)
		return ev == "RecoveryRetrieveRetryInterval", ev
	})

	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n2"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n2.Follow(ctxT(t, 5*time.Second), up); err != nil {
		t.Fatal(err)
	}
	waitFor(t, retry/2, "n2 streaming after the repeated follow", func() (bool, string) {
		st := probe(t, n2)
		return st.Role == cluster.RoleReplica && st.Streaming && st.UpstreamPort == up.Port, fmt.Sprintf("%+v", st)
	})
	t.Logf("n2 streams %v after the repeated follow (wal_retrieve_retry_interval %v)", time.Since(start).Round(time.Millisecond), retry)
}
