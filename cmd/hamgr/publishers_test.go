package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/config"
)

func TestPublishersFromConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	c := &config.Config{}
	if pubs, err := publishers(c, log); err != nil || len(pubs) != 0 {
		t.Fatalf("no discovery section: %v, %v", pubs, err)
	}
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
	key := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(key, []byte(`key "hamgr" { algorithm hmac-sha256; secret "`+secret+`"; };`), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Discovery.DNS = &config.DNS{Server: "127.0.0.1:53", Zone: "db.test", Name: "primary.db.test",
		TTL: config.Duration(config.DefaultDNSTTL), KeyName: "hamgr", KeyFile: key}
	pubs, err := publishers(c, log)
	if err != nil || len(pubs) != 1 || pubs[0].Name() != "dns" {
		t.Fatalf("DNS section: %v, %v", pubs, err)
	}
	c.Hooks.OnRoleChange, c.Hooks.PrePromote = "/bin/true", "/bin/true"
	c.API.Advertise = "http://127.0.0.1:8008"
	c.Discovery.Consul = &config.Consul{Address: "127.0.0.1:8500", Service: "pg"}
	pubs, err = publishers(c, log)
	if err != nil || len(pubs) != 3 || pubs[1].Name() != "consul" || pubs[2].Name() != "hooks" || prePromoter(pubs) == nil {
		t.Fatalf("DNS, Consul and hooks: %v, %v; want them in that order", pubs, err)
	}
	if err := os.Chmod(key, 0o604); err != nil {
		t.Fatal(err)
	}
	_, err = publishers(c, log)
	if err == nil || !strings.Contains(err.Error(), "discovery.dns.key_file") || strings.Contains(err.Error(), secret) {
		t.Fatalf("world-readable key file: err = %v", err)
	}
}
