package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hamgr/hamgr/cluster"
)

// POST /failsafe (failsafe_mode; docs/design.md, "Failsafe mode"): a
// leader that cannot reach etcd asks each member's agent to confirm it.
// Body {"cluster","leader","epoch"} (all required) and "ttl" (the
// leader's, as "10s"; the member promises at least that long); 200 with the
// confirmation {"member","leader","epoch","confirmed":true}, or 409 with
// {"confirmed":false,"reason"} when the member refuses. It needs the
// bearer token like the operator endpoints: a confirmation binds the
// member to take part in no election for a ttl, so whoever may send one
// can hold off failovers.

// failsafeBody is the body of POST /failsafe.
type failsafeBody struct {
	Cluster string           `json:"cluster"`
	Leader  string           `json:"leader"`
	Epoch   cluster.Epoch    `json:"epoch"`
	TTL     cluster.Duration `json:"ttl,omitempty"`
}

// serveFailsafe answers an authorized POST /failsafe.
func (h *handler) serveFailsafe(w http.ResponseWriter, r *http.Request) {
	if h.failsafe == nil {
		writeError(w, r, http.StatusServiceUnavailable, "failsafe is not available on this agent")
		return
	}
	var b failsafeBody
	if !h.decodeBody(w, r, &b, "cluster, leader, epoch, ttl") {
		return
	}
	if b.Cluster == "" || b.Leader == "" || b.Epoch <= 0 {
		writeError(w, r, http.StatusBadRequest, "cluster, leader and epoch (a positive number) are required")
		return
	}
	ans := h.failsafe.ConfirmFailsafe(cluster.FailsafeRequest(b))
	status := http.StatusOK
	if !ans.Confirmed {
		status = http.StatusConflict
	}
	writeJSON(w, r, status, ans)
}

// FailsafeClient asks other members' agents to confirm a leader over
// their APIs (POST /failsafe); it implements agent.FailsafePeers.
type FailsafeClient struct {
	// HTTP sends the requests (its TLS config verifies the members'
	// certificates); nil means http.DefaultClient.
	HTTP *http.Client
	// Token is the bearer token of api.token_file, the same on every
	// member.
	Token string
}

// maxAnswerBytes bounds a member's answer.
const maxAnswerBytes = 64 << 10

// AskFailsafe posts req to m's API and returns its answer: a confirmation
// (200), a refusal (409, with its reason), or an error for anything else
// (unreachable by ctx's deadline, another status).
func (c FailsafeClient) AskFailsafe(ctx context.Context, m cluster.FailsafeMember, req cluster.FailsafeRequest) (cluster.FailsafeAnswer, error) {
	body, err := json.Marshal(failsafeBody(req))
	if err != nil {
		return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe request to %s: %w", m.Name, err)
	}
	if m.APIURL == "" {
		return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe request to %s: no API URL in the failsafe record", m.Name)
	}
	url := strings.TrimSuffix(m.APIURL, "/") + "/failsafe"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe request to %s at %s: %w", m.Name, url, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	cli := c.HTTP
	if cli == nil {
		cli = http.DefaultClient
	}
	resp, err := cli.Do(hr)
	if err != nil {
		return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe request to %s at %s: %w", m.Name, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe answer of %s at %s: %w", m.Name, url, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusConflict:
		var ans cluster.FailsafeAnswer
		if err := json.Unmarshal(data, &ans); err != nil {
			return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe answer of %s at %s: %w", m.Name, url, err)
		}
		if resp.StatusCode != http.StatusOK {
			ans.Confirmed = false
		}
		return ans, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	return cluster.FailsafeAnswer{}, fmt.Errorf("failsafe request to %s at %s: %s: %s", m.Name, url, resp.Status, e.Error)
}

// AliveClient holds GET /alive on another agent's API (agent.LeaderLinker:
// the leader link, whose drop says the agent process died).
type AliveClient struct {
	// HTTP is the client (with the API's TLS client settings); nil:
	// http.DefaultClient. It must have no overall Timeout.
	HTTP *http.Client
}

// Hold connects to apiURL's GET /alive, calls connected once it answered
// 200, and blocks until the connection drops (nil) or ctx ends. It
// returns an error when it could not connect or the agent has no such
// endpoint.
func (c AliveClient) Hold(ctx context.Context, apiURL string, connected func()) error {
	cl := c.HTTP
	if cl == nil {
		cl = http.DefaultClient
	}
	u := strings.TrimSuffix(apiURL, "/") + "/alive"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("api alive %s: %w", u, err)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("api alive %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("api alive %s: answered %s", u, resp.Status)
	}
	connected()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
