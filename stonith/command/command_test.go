package command_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/command"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fence.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommandEnvAndExitZero: the program sees the target in its
// environment (and not the agent's other variables) and exit 0 confirms.
func TestCommandEnvAndExitZero(t *testing.T) {
	t.Setenv("HAMGR_TEST_SECRET", "must-not-leak")
	out := filepath.Join(t.TempDir(), "env")
	p := script(t, `echo "$HAMGR_FENCE_TARGET $HAMGR_FENCE_HOST $HAMGR_FENCE_PORT [$HAMGR_TEST_SECRET]" > `+out+"\n")
	d, err := command.New(command.Options{Path: p, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Fence(context.Background(), stonith.Target{Name: "pg2", Host: "10.0.0.2", Port: 5433})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("confirmation: %s", c)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "pg2 10.0.0.2 5433 []" {
		t.Errorf("the program saw %q, want %q", got, "pg2 10.0.0.2 5433 []")
	}
}

// TestCommandNonZero: any other exit status is an error.
func TestCommandNonZero(t *testing.T) {
	d, err := command.New(command.Options{Path: script(t, "echo cannot reach the PDU; exit 3\n"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.Fence(context.Background(), stonith.Target{Name: "pg2"}); err == nil || !strings.Contains(err.Error(), "status 3") {
		t.Fatalf("fence = %q, %v; want an error naming exit status 3", c, err)
	}
}

// TestCommandTimeout: a program that hangs is killed at the timeout and
// the fence is an error.
func TestCommandTimeout(t *testing.T) {
	d, err := command.New(command.Options{Path: script(t, "sleep 100000\n"), Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Fence(context.Background(), stonith.Target{Name: "pg2"})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("took %v, want about the 1s timeout", took)
	}
}
