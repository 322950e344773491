package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/discovery/consul"
	"github.com/hamgr/hamgr/discovery/hook"
)

func TestConsulAndHooksDefaults(t *testing.T) {
	c := mustParse(t, minimal+"discovery: {consul: {}}\n")
	d := c.Discovery.Consul
	if d == nil || d.Address != DefaultConsulAddress || d.Service != "demo" ||
		time.Duration(d.CheckInterval) != consul.DefaultCheckInterval || time.Duration(c.Discovery.Timeout) != DefaultPublishTimeout {
		t.Fatalf("consul = %+v, timeout %v; want the defaults and the cluster's name", d, c.Discovery.Timeout)
	}
	if len(c.Hooks.Programs()) != 0 || c.Hooks.Failure() != hook.FailureBlock {
		t.Fatalf("hooks = %+v, want none and pre_promote_failure block", c.Hooks)
	}
	c = mustParse(t, minimal+"hooks: {on_stop: /bin/true, pre_promote_failure: continue}\n")
	if c.Hooks.Programs()[hook.OnStop] != "/bin/true" || c.Hooks.Failure() != hook.FailureContinue {
		t.Fatalf("hooks = %+v", c.Hooks)
	}
}

func TestConsulAndHooksInvalid(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"consul", "discovery: {timeout: 10m, consul: {address: 'ftp://x', service: 'My_PG', token_file: t, check_interval: 2s, check_timeout: 3s, deregister_critical_after: 30s}}\n",
			[]string{"discovery.timeout: 10m0s: want 1s to 5m", `discovery.consul.address: "ftp://x"`, `discovery.consul.service: "My_PG"`,
				`discovery.consul.token_file: "t" must be an absolute path`, "discovery.consul.check_timeout: 3s",
				"discovery.consul.deregister_critical_after: 30s: Consul's minimum is 1m"}},
		{"hooks", "hooks: {on_start: start.sh, pre_promote_failure: maybe}\n",
			[]string{`hooks.on_start: "start.sh" must be an absolute path`, `hooks.pre_promote_failure: "maybe": want block or continue`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConsulToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := (Consul{TokenFile: p}).ConsulToken(); err != nil || tok != "tok-123" {
		t.Fatalf("token = %q, %v", tok, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Consul{TokenFile: p}).ConsulToken(); err == nil || strings.Contains(err.Error(), "tok-123") {
		t.Fatalf("world-readable token file: %v, want refused without the token", err)
	}
}
