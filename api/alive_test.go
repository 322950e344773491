package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// GET /alive is held open until the server shuts down; then
// AliveClient.Hold returns nil (the drop), and the shutdown is not held up
// by the held request.
func TestAliveHeldUntilShutdown(t *testing.T) {
	s, err := Listen("127.0.0.1:0", newTestHandler(selfState(cluster.RolePrimary, true, true, false, 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	base := "http://" + s.Addr()

	connected := make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- AliveClient{}.Hold(context.Background(), base, func() { close(connected) })
	}()
	select {
	case <-connected:
	case err := <-held:
		t.Fatalf("Hold returned before connecting: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("GET /alive did not answer")
	}
	select {
	case err := <-held:
		t.Fatalf("GET /alive ended while the server runs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a held GET /alive: %v", err)
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("Hold after the shutdown: %v, want nil (the drop)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not return after the shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Nothing listens now: Hold fails to connect (no drop to report).
	if err := (AliveClient{}).Hold(context.Background(), base, func() { t.Error("connected to a closed server") }); err == nil {
		t.Fatal("Hold on a closed server: nil, want a connect error")
	}
	// HEAD answers and returns.
	s2, err := Listen("127.0.0.1:0", newTestHandler(selfState(cluster.RolePrimary, true, true, false, 0)))
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, s2)
	defer stop()
	resp, err := http.Head("http://" + s2.Addr() + "/alive")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD /alive: %v %v", resp, err)
	}
	resp.Body.Close()
}
