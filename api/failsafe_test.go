package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// confirmer confirms leader n1 at epoch 4 and refuses anything else,
// recording what it was asked.
type confirmer struct {
	mu    sync.Mutex
	asked []cluster.FailsafeRequest
}

func (c *confirmer) ConfirmFailsafe(req cluster.FailsafeRequest) cluster.FailsafeAnswer {
	c.mu.Lock()
	c.asked = append(c.asked, req)
	c.mu.Unlock()
	ans := cluster.FailsafeAnswer{Member: "n2", Leader: req.Leader, Epoch: req.Epoch}
	if req.Leader == "n1" && req.Epoch == 4 {
		ans.Confirmed = true
	} else {
		ans.Reason = "the latest leader this member knows is \"n1\" at epoch 4"
	}
	return ans
}

// TestFailsafeEndpoint: FailsafeClient against a real HTTP server: a
// confirmation comes back confirmed, a refusal with its reason, and a
// missing or wrong token, a disabled endpoint or an unreachable member is
// an error, never a confirmation; the member is asked only when
// authorized.
func TestFailsafeEndpoint(t *testing.T) {
	conf := &confirmer{}
	srv := httptest.NewServer(NewHandler(&fakeSource{}, Options{Token: "s3cret", Failsafe: conf}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := cluster.FailsafeMember{Name: "n2", APIURL: srv.URL + "/"}
	req := cluster.FailsafeRequest{Cluster: "c", Leader: "n1", Epoch: 4}

	ans, err := FailsafeClient{Token: "s3cret"}.AskFailsafe(ctx, m, req)
	if err != nil || !ans.Confirmed || ans.Member != "n2" || ans.Epoch != 4 {
		t.Fatalf("confirmation: %+v, %v", ans, err)
	}
	req.Epoch = 3
	ans, err = FailsafeClient{Token: "s3cret"}.AskFailsafe(ctx, m, req)
	if err != nil || ans.Confirmed || !strings.Contains(ans.Reason, "epoch 4") {
		t.Fatalf("refusal: %+v, %v", ans, err)
	}
	asked := len(conf.asked)
	for _, tok := range []string{"", "wrong"} {
		if ans, err := (FailsafeClient{Token: tok}).AskFailsafe(ctx, m, req); err == nil || ans.Confirmed {
			t.Errorf("token %q: %+v, %v; want an error", tok, ans, err)
		}
	}
	if len(conf.asked) != asked {
		t.Errorf("the member was asked without the right token")
	}

	off := httptest.NewServer(NewHandler(&fakeSource{}, Options{Token: "s3cret"}))
	defer off.Close()
	if ans, err := (FailsafeClient{Token: "s3cret"}).AskFailsafe(ctx, cluster.FailsafeMember{Name: "n3", APIURL: off.URL}, req); err == nil || !strings.Contains(err.Error(), "503") || ans.Confirmed {
		t.Errorf("no confirmer: %+v, %v; want a 503 error", ans, err)
	}
	url := off.URL
	off.Close()
	if ans, err := (FailsafeClient{Token: "s3cret"}).AskFailsafe(ctx, cluster.FailsafeMember{Name: "n3", APIURL: url}, req); err == nil || ans.Confirmed {
		t.Errorf("unreachable member: %+v, %v; want an error", ans, err)
	}
}
