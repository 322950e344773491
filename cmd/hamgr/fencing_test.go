package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/internal/ipmisim"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/redfishtest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const fencingBase = `
cluster: demo
name: pg1
etcd:
  endpoints: [http://127.0.0.1:2379]
postgresql:
  data_dir: /var/lib/postgresql/15/pg1
  replication:
    password_file: /etc/hamgr/repl.pw
`

// TestBuildFencerFromConfig: a fencing section parsed from YAML becomes a
// fencer that powers off real (simulated) BMCs through each driver: ipmi
// against ipmi_sim, redfish against the test Redfish service (its
// certificate verified with ca_file), a command; and refuses a member
// without an entry. No password reaches the log.
func TestBuildFencerFromConfig(t *testing.T) {
	sim := ipmisim.Start(t)
	dir := t.TempDir()
	ipmiPW := filepath.Join(dir, "ipmi.pw")
	if err := os.WriteFile(ipmiPW, []byte(ipmisim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := redfishtest.Start(redfishtest.Options{Username: "admin", Password: "rf-env-secret"})
	defer srv.Close()
	ca := filepath.Join(dir, "bmc-ca.pem")
	if err := os.WriteFile(ca, srv.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HAMGR_TEST_RF_PW", "rf-env-secret")
	marker := filepath.Join(dir, "fenced")
	cmd := filepath.Join(dir, "fence.sh")
	if err := os.WriteFile(cmd, []byte("#!/bin/sh\necho \"$HAMGR_FENCE_TARGET\" > "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := fencingBase + fmt.Sprintf(`
fencing:
  members:
    pg2:
      driver: ipmi
      address: 127.0.0.1
      port: %d
      username: %s
      password_file: %s
      timeout: 20s
    pg3:
      driver: redfish
      address: %s
      port: %s
      username: admin
      password_env: HAMGR_TEST_RF_PW
      ca_file: %s
    pg4:
      driver: command
      command: %s
`, sim.Port, ipmisim.User, ipmiPW, srv.Host(), srv.Port(), ca, cmd)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// (The PostgreSQL paths of fencingBase do not exist here.)
	if err := cfg.CheckPaths(); err != nil && strings.Contains(err.Error(), "fencing") {
		t.Fatal(err)
	}
	var logs lockedBuffer
	f, err := buildFencer(cfg.Fencing, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"pg2", "pg3", "pg4"} {
		c, err := f.Fence(ctx, stonith.Target{Name: name, Host: "127.0.0.1", Port: 5432})
		if err != nil {
			t.Fatalf("fence %s: %v", name, err)
		}
		t.Logf("%s: %s", name, c)
	}
	if sim.Power(t) != "off" || srv.PowerState() != "Off" {
		t.Errorf("power: ipmi %s, redfish %s; want both off", sim.Power(t), srv.PowerState())
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "pg4" {
		t.Errorf("the command did not run for pg4: %q, %v", b, err)
	}
	_, err = f.Fence(ctx, stonith.Target{Name: "pg9"})
	var nc *stonith.NotConfiguredError
	if !errors.As(err, &nc) || !strings.Contains(err.Error(), "fencing.members.pg9") {
		t.Errorf("fence of an unconfigured member: %v", err)
	}
	for _, s := range []string{ipmisim.Password, "rf-env-secret"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds a password:\n%s", logs.String())
		}
	}
}

// TestBuildFencerNone: no fencing section, no fencer (the agent's
// Options.Fencer stays nil).
func TestBuildFencerNone(t *testing.T) {
	cfg, err := config.Parse([]byte(fencingBase))
	if err != nil {
		t.Fatal(err)
	}
	f, err := buildFencer(cfg.Fencing, slog.New(slog.DiscardHandler))
	if err != nil || f != nil {
		t.Fatalf("buildFencer = %v, %v; want nil, nil", f, err)
	}
}

// TestBuildFencerBadPassword: a password file others may read stops the
// agent's start with an error naming the key, not the password.
func TestBuildFencerBadPassword(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("open-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fencingBase + "fencing:\n  members:\n    pg2: {driver: ipmi, address: 10.0.0.2, username: u, password_file: " + pw + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = buildFencer(cfg.Fencing, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "fencing.members.pg2.password_file") || strings.Contains(err.Error(), "open-secret") {
		t.Fatalf("err = %v", err)
	}
}
