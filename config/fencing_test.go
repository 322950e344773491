package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fencingValid = minimal + `
fencing:
  members:
    pg1:
      driver: ipmi
      address: 10.0.0.11
      username: admin
      password_file: /etc/hamgr/bmc-pg1.pw
    pg2:
      driver: redfish
      address: bmc-pg2.example.net
      port: 8443
      username: admin
      password_env: PG2_BMC_PASSWORD
      ca_file: /etc/hamgr/bmc-ca.pem
      timeout: 45s
    pg3:
      driver: fence-agent
      agent: /usr/sbin/fence_ipmilan
      address: 10.0.0.13
      username: admin
      password_file: /etc/hamgr/bmc-pg3.pw
      options: {lanplus: "1", cipher: "3"}
    pg4:
      driver: command
      command: /usr/local/bin/fence-pg4
      args: [--hard]
`

func TestFencingParse(t *testing.T) {
	c := mustParse(t, fencingValid)
	f := c.Fencing
	if got := strings.Join(f.Names(), ","); got != "pg1,pg2,pg3,pg4" {
		t.Fatalf("members %s", got)
	}
	if m := f.Members["pg2"]; m.Driver != FenceRedfish || m.Port != 8443 || m.FenceTimeout() != 45*time.Second {
		t.Errorf("pg2 = %+v", m)
	}
	if m := f.Members["pg1"]; m.FenceTimeout() != DefaultFenceTimeout || m.Port != 0 {
		t.Errorf("pg1 = %+v (want default timeout, port left to the driver)", m)
	}
	if m := f.Members["pg3"]; m.Options["cipher"] != "3" {
		t.Errorf("pg3 options %v", m.Options)
	}
	if m := f.Members["pg4"]; len(m.Args) != 1 || m.Args[0] != "--hard" {
		t.Errorf("pg4 args %v", m.Args)
	}
	if !f.Enabled() || mustParse(t, minimal).Fencing.Enabled() {
		t.Error("Enabled() wrong")
	}
}

func TestFencingErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no driver", "pg2: {address: x}", []string{"fencing.members.pg2.driver: required"}},
		{"bad driver", "pg2: {driver: ilo}", []string{`fencing.members.pg2.driver: "ilo" is not a fencing driver: want ipmi, redfish, fence-agent or command`}},
		{"ipmi missing", "pg2: {driver: ipmi}", []string{
			"fencing.members.pg2.address: required for driver ipmi",
			"fencing.members.pg2.username: required for driver ipmi",
			"fencing.members.pg2.password_file: required for driver ipmi",
		}},
		{"redfish tls", "pg2: {driver: redfish, address: b, username: u, password_env: P}", []string{
			"fencing.members.pg2.ca_file: required for driver redfish",
		}},
		{"both passwords", "pg2: {driver: ipmi, address: b, username: u, password_env: P, password_file: /x}", []string{
			"fencing.members.pg2.password_env: set together with password_file",
		}},
		{"relative password file", "pg2: {driver: ipmi, address: b, username: u, password_file: pw}", []string{
			`fencing.members.pg2.password_file: "pw" must be an absolute path`,
		}},
		{"address with port", "pg2: {driver: ipmi, address: 'b:623', username: u, password_env: P}", []string{
			"fencing.members.pg2.address",
		}},
		{"timeout", "pg2: {driver: ipmi, address: b, username: u, password_env: P, timeout: 5m}", []string{
			"fencing.members.pg2.timeout: 5m0s is out of range: want 1s to 2m0s",
		}},
		{"wrong driver's key", "pg2: {driver: ipmi, address: b, username: u, password_env: P, agent: /usr/sbin/fence_ipmilan}", []string{
			`fencing.members.pg2.agent: is for driver fence-agent only, and driver is "ipmi": remove it`,
		}},
		{"agent options", "pg2: {driver: fence-agent, agent: /usr/sbin/fence_ipmilan, options: {password: x, ip: y, '--cipher': '3'}}", []string{
			"fencing.members.pg2.options.password: hamgr sets password itself",
			"fencing.members.pg2.options.ip: set it with fencing.members.pg2.address",
			`fencing.members.pg2.options.--cipher: "--cipher": want the agent's long option name without "--"`,
		}},
		{"agent relative", "pg2: {driver: fence-agent, agent: fence_ipmilan}", []string{
			`fencing.members.pg2.agent: "fence_ipmilan" must be an absolute path`,
		}},
		{"command with password", "pg2: {driver: command, command: /bin/true, password_file: /x}", []string{
			"fencing.members.pg2.password_file: is not used by driver command",
		}},
		{"bad member name", "PG2: {driver: command, command: /bin/true}", []string{
			`fencing.members.PG2: "PG2" is not a member name`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := minimal + "fencing:\n  members:\n    " + tt.yaml + "\n"
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", doc)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// An unknown key inside a member's section is reported with its line and
// the section's path, like any other unknown key.
func TestFencingUnknownKey(t *testing.T) {
	doc := minimal + "fencing:\n  members:\n    pg2:\n      driver: ipmi\n      adress: b\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), `unknown key "adress" in fencing.members.pg2`) || !strings.Contains(err.Error(), `did you mean "address"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestFencingPassword(t *testing.T) {
	dir := t.TempDir()
	file := writeSecret(t, dir, "bmc.pw", 0o600)
	loose := writeSecret(t, dir, "loose.pw", 0o644)
	f := Fencing{Members: map[string]FenceMember{
		"a": {PasswordFile: file},
		"b": {PasswordEnv: "HAMGR_TEST_BMC_PW"},
		"c": {PasswordFile: loose},
		"d": {PasswordEnv: "HAMGR_TEST_UNSET_PW"},
		"e": {},
	}}
	t.Setenv("HAMGR_TEST_BMC_PW", "env-secret\n")
	if pw, err := f.Password("a"); err != nil || pw != secret {
		t.Errorf("a: %v", err)
	}
	if pw, err := f.Password("b"); err != nil || pw != "env-secret" {
		t.Errorf("b: %q, %v", pw, err)
	}
	_, err := f.Password("c")
	if err == nil || !strings.Contains(err.Error(), "fencing.members.c.password_file") || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), secret) {
		t.Errorf("c: %v", err)
	}
	if _, err := f.Password("d"); err == nil || !strings.Contains(err.Error(), "fencing.members.d.password_env: the environment variable HAMGR_TEST_UNSET_PW is not set") {
		t.Errorf("d: %v", err)
	}
	if pw, err := f.Password("e"); pw != "" || err != nil {
		t.Errorf("e: %q, %v", pw, err)
	}
}

// CheckSecrets and CheckPaths cover the fencing section's files.
func TestFencingFilesChecked(t *testing.T) {
	dir := t.TempDir()
	c := mustParse(t, minimal)
	c.Fencing = Fencing{Members: map[string]FenceMember{
		"pg2": {Driver: FenceIPMI, Address: "b", Username: "u", PasswordFile: writeSecret(t, dir, "pg2.pw", 0o604)},
		"pg3": {Driver: FenceAgent, Agent: filepath.Join(dir, "fence_missing")},
		"pg4": {Driver: FenceCommand, Command: writeSecret(t, dir, "notexec", 0o600)},
	}}
	log, buf := captureLog()
	err := c.CheckSecrets(log)
	if err == nil || !strings.Contains(err.Error(), "fencing.members.pg2.password_file") {
		t.Errorf("CheckSecrets: %v", err)
	}
	if strings.Contains(buf.String(), secret) {
		t.Error("the log holds the secret")
	}
	err = c.CheckPaths()
	for _, w := range []string{"fencing.members.pg3.agent: " + filepath.Join(dir, "fence_missing") + ": no such file", "fencing.members.pg4.command: " + filepath.Join(dir, "notexec") + " is not an executable file"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("CheckPaths: %v; want %q", err, w)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pg2.pw")); err != nil {
		t.Fatal(err)
	}
}
