package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

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
