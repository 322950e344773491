package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// The agents' operator endpoints, on real agents: a missing or wrong bearer
// token is rejected and changes nothing; the right one runs a switchover.
func TestAPIOperatorEndpointsNeedToken(t *testing.T) {
	const token = "s3cret-token-for-the-test"
	c := startCluster(t, localcluster.Options{APIToken: token})
	old, lead := leader(t, c)
	post := func(path, auth, body string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, old.APIURL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer wrong", http.StatusForbidden}, {"Basic " + token, http.StatusUnauthorized}} {
		for _, path := range []string{"/switchover", "/failover", "/pause", "/resume"} {
			if code, body := post(path, c.auth, `{"to":"n2"}`); code != c.want {
				t.Errorf("POST %s with %q: %d %s, want %d", path, c.auth, code, body, c.want)
			}
		}
	}
	if s, _ := c.Snapshot(context.Background()); s.Request != nil || (s.Config != nil && s.Config.Paused) || s.Leader.Epoch != lead.Epoch {
		t.Fatalf("rejected requests changed the cluster: request %+v config %+v", s.Request, s.Config)
	}
	// A body that is JSON but not an object is 400 and writes nothing; a
	// refusal names the API's field, not hamgrctl's flag.
	for _, body := range []string{"null", "[]", `"n2"`, "1"} {
		if code, b := post("/switchover", "Bearer "+token, body); code != http.StatusBadRequest {
			t.Errorf("POST /switchover with body %s: %d %s, want 400", body, code, b)
		}
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if code, b := post("/switchover", "Bearer "+token, `{"to":"n2","scheduled_at":"`+past+`"}`); code != http.StatusConflict ||
		!strings.Contains(b, "scheduled_at") || strings.Contains(b, "--at") {
		t.Errorf("switchover scheduled in the past: %d %s, want 409 naming scheduled_at", code, b)
	}
	if s, _ := c.Snapshot(context.Background()); s.Request != nil || s.Leader.Epoch != lead.Epoch {
		t.Fatalf("refused bodies changed the cluster: request %+v", s.Request)
	}
	// A refused request (failover with a healthy primary) is 409.
	if code, body := post("/failover", "Bearer "+token, `{"to":"n2"}`); code != http.StatusConflict {
		t.Errorf("failover with a healthy primary: %d %s, want 409", code, body)
	}
	if code, body := post("/switchover", "Bearer "+token, `{"to":"n2"}`); code != http.StatusAccepted {
		t.Fatalf("switchover with the token: %d %s, want 202", code, body)
	}
	n, l := leaderNot(t, c, old.Name)
	if n.Name != "n2" || l.Epoch <= lead.Epoch {
		t.Fatalf("after the API switchover: leader %s@%d", n.Name, l.Epoch)
	}
	// The token never reaches a log.
	for _, node := range c.Nodes {
		if b, err := readFile(node.AgentLog); err == nil && strings.Contains(b, token) {
			t.Errorf("the API token appears in %s", node.AgentLog)
		}
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// Patroni's health checks on real agents, with tags from their config
// files: n3 is tagged noloadbalance and dc=west, the others dc=east.
func TestAPIPatroniChecksOnRealAgents(t *testing.T) {
	c := startCluster(t, localcluster.Options{Tags: map[string]cluster.Tags{
		"n1": {Custom: map[string]string{"dc": "east"}},
		"n2": {Custom: map[string]string{"dc": "east"}},
		"n3": {NoLoadBalance: true, Custom: map[string]string{"dc": "west"}},
	}})
	lead, _ := leader(t, c)
	if lead.Name != "n1" {
		t.Fatalf("leader %s, want the bootstrapping n1", lead.Name)
	}
	for _, want := range []struct {
		node, path string
		code       int
	}{
		{"n1", "/", 200}, {"n1", "/primary", 200}, {"n1", "/leader", 200}, {"n1", "/read-only", 200},
		{"n1", "/replica", 503}, {"n1", "/standby-leader", 503}, {"n1", "/async", 503}, {"n1", "/read-only-quorum", 200},
		{"n1", "/readiness", 200}, {"n1", "/liveness", 200}, {"n1", "/health?tag_dc=east", 200},
		{"n2", "/", 503}, {"n2", "/primary", 503}, {"n2", "/replica", 200}, {"n2", "/replica?tag_dc=east", 200},
		{"n2", "/replica?tag_dc=west", 503}, {"n2", "/replica?lag=1TB&replication_state=streaming", 200},
		{"n2", "/async", 200}, {"n2", "/sync", 503}, {"n2", "/quorum", 503}, {"n2", "/readiness", 200},
		{"n2", "/liveness", 200}, {"n2", "/replica?lag=lots", 400},
		{"n3", "/replica", 503}, {"n3", "/replica?tag_dc=west", 503}, {"n3", "/read-only", 503}, {"n3", "/async", 503},
		{"n3", "/health", 200}, {"n3", "/health?tag_noloadbalance=true&tag_dc=west", 200}, {"n3", "/readiness", 200},
	} {
		code, err := c.Node(want.node).Check(context.Background(), want.path)
		if err != nil || code != want.code {
			t.Errorf("%s GET %s: %d %v, want %d", want.node, want.path, code, err, want.code)
		}
	}
}
