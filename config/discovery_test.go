package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/discovery/dns"
)

const dnsSection = `
discovery:
  dns:
    server: 127.0.0.1:53
    zone: db.example.com
    name: primary.db.example.com
    key_name: hamgr
    key_file: /etc/hamgr/tsig.key
`

func TestDiscoveryDNSDefaultsAndAbsence(t *testing.T) {
	if c := mustParse(t, minimal); c.Discovery.DNS != nil {
		t.Fatalf("no discovery section: DNS = %+v, want nil", c.Discovery.DNS)
	}
	c := mustParse(t, minimal+dnsSection)
	d := c.Discovery.DNS
	if d == nil || time.Duration(d.TTL) != DefaultDNSTTL || d.KeyAlgorithm != "" {
		t.Fatalf("DNS = %+v, want ttl %v and no algorithm (the key file's)", d, DefaultDNSTTL)
	}
}

func TestDiscoveryDNSInvalid(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"empty section", "discovery: {dns: {}}\n", []string{
			`discovery.dns.server: "" is not host:port`, "discovery.dns.zone: required", "discovery.dns.name: required",
			"discovery.dns.key_name: required", "discovery.dns.key_file: required (or discovery.dns.key_env)"}},
		{"server without port", "discovery: {dns: {server: 10.0.0.2, zone: z.test, name: p.z.test, key_name: k, key_env: K}}\n",
			[]string{`discovery.dns.server: "10.0.0.2" is not host:port`}},
		{"name outside the zone", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.other.test, replicas_name: r.other.test, key_name: k, key_env: K}}\n",
			[]string{`discovery.dns.name: "p.other.test" is not inside discovery.dns.zone "z.test"`, `discovery.dns.replicas_name: "r.other.test" is not inside`}},
		{"replicas name is the name", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, replicas_name: p.z.test., key_name: k, key_env: K}}\n",
			[]string{`discovery.dns.replicas_name: "p.z.test." is discovery.dns.name too`}},
		{"ttl", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, ttl: 1500ms, key_name: k, key_env: K}}\n",
			[]string{"discovery.dns.ttl: 1.5s: want whole seconds from 1s to 1h"}},
		{"algorithm", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, key_name: k, key_algorithm: hmac-md5, key_env: K}}\n",
			[]string{`discovery.dns.key_algorithm: "hmac-md5" is not a TSIG algorithm: want one of hmac-sha1`}},
		{"both secrets", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, key_name: k, key_file: /k, key_env: K}}\n",
			[]string{"discovery.dns.key_env: set together with discovery.dns.key_file: set exactly one of them"}},
		{"relative key file", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, key_name: k, key_file: k.key}}\n",
			[]string{`discovery.dns.key_file: "k.key" must be an absolute path`}},
		{"bad env name", "discovery: {dns: {server: 'a:53', zone: z.test, name: p.z.test, key_name: k, key_env: 'A-B'}}\n",
			[]string{`discovery.dns.key_env: "A-B" is not an environment variable name`}},
		{"unknown key", "discovery: {dns: {server: 'a:53', secret: x}}\n", []string{`unknown key "secret" in discovery.dns`}},
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

func TestDiscoveryDNSKey(t *testing.T) {
	const secret64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bind := write("bind.key", `key "hamgr" { algorithm hmac-sha512; secret "`+secret64+`"; };`+"\n", 0o600)
	k, err := DNS{KeyName: "hamgr", KeyFile: bind}.Key()
	if err != nil || k.Name() != "hamgr" || k.Algorithm() != dns.HMACSHA512 {
		t.Fatalf("BIND key file: %v, %v", k, err)
	}
	bare := write("bare.key", secret64+"\n", 0o600)
	if k, err := (DNS{KeyName: "hamgr", KeyFile: bare}).Key(); err != nil || k.Algorithm() != dns.HMACSHA256 {
		t.Fatalf("bare secret: %v, %v", k, err)
	}
	open := write("open.key", secret64, 0o644)
	_, err = DNS{KeyName: "hamgr", KeyFile: open}.Key()
	if err == nil || !strings.Contains(err.Error(), "discovery.dns.key_file: "+open+" has mode 0644") {
		t.Fatalf("world-readable key file: err = %v", err)
	}
	_, err = DNS{KeyName: "other", KeyFile: bind}.Key()
	if err == nil || !strings.Contains(err.Error(), `defines key "hamgr"`) || strings.Contains(err.Error(), secret64) {
		t.Fatalf("key file of another key: err = %v", err)
	}
	t.Setenv("HAMGR_TEST_TSIG", secret64)
	if k, err := (DNS{KeyName: "hamgr", KeyEnv: "HAMGR_TEST_TSIG", KeyAlgorithm: "hmac-sha384"}).Key(); err != nil || k.Algorithm() != dns.HMACSHA384 {
		t.Fatalf("key_env: %v, %v", k, err)
	}
	t.Setenv("HAMGR_TEST_TSIG", "")
	if _, err := (DNS{KeyName: "hamgr", KeyEnv: "HAMGR_TEST_TSIG"}).Key(); err == nil || !strings.Contains(err.Error(), "HAMGR_TEST_TSIG is unset or empty") {
		t.Fatalf("empty key_env: err = %v", err)
	}

	// CheckSecrets refuses the open key file, warns about a group one.
	c := mustParse(t, minimal+dnsSection)
	c.Discovery.DNS.KeyFile = open
	log, buf := captureLog()
	if err := c.CheckSecrets(log); err == nil || !strings.Contains(err.Error(), "discovery.dns.key_file: "+open) {
		t.Fatalf("CheckSecrets with an open key file: err = %v", err)
	}
	c.Discovery.DNS.KeyFile = write("group.key", secret64, 0o640)
	if err := c.CheckSecrets(log); err != nil || !strings.Contains(buf.String(), "key=discovery.dns.key_file") {
		t.Fatalf("group-readable key file: err = %v, log:\n%s", err, buf)
	}
	if strings.Contains(buf.String(), secret64) {
		t.Fatal("the secret reached the log")
	}
}
