package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Fencing drivers (FenceMember.Driver).
const (
	FenceIPMI       = "ipmi"
	FenceRedfish    = "redfish"
	FenceAgent      = "fence-agent"
	FenceCommand    = "command"
	fenceDriverList = "ipmi, redfish, fence-agent or command"
)

// Fencing limits. MaxFenceTimeout matches the agent's bound on one attempt
// of a promotion's fence step (2 minutes): a longer timeout would be cut
// short there.
const (
	DefaultFenceTimeout = 30 * time.Second
	MinFenceTimeout     = time.Second
	MaxFenceTimeout     = 2 * time.Minute
)

// Fencing configures STONITH: how this agent, when it promotes its
// database over an old primary, powers the old primary's machine off
// first, and how hamgrctl fence powers a member off. Whether promotions
// fence is the cluster's dynamic fencing policy (timing.fencing at
// bootstrap; off by default). Every member that may be promoted needs an
// entry for every other member; under fencing require a member with no
// entry for the old primary does not take the leader key
// (fencing_not_configured), under best-effort its fence step fails and it
// promotes after the timeout.
type Fencing struct {
	// Members maps a member's name to the way to fence it.
	Members map[string]FenceMember `yaml:"members"`
}

// Enabled reports whether any member has fencing configured.
func (f Fencing) Enabled() bool { return len(f.Members) > 0 }

// Names returns the configured members' names, sorted.
func (f Fencing) Names() []string {
	names := make([]string, 0, len(f.Members))
	for n := range f.Members {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// FenceMember is how to fence one member's machine.
type FenceMember struct {
	// Driver is ipmi (IPMI v2.0 lanplus through ipmitool, via bmclib),
	// redfish (Redfish over HTTPS, via bmclib), fence-agent (a Pacemaker
	// fence agent such as /usr/sbin/fence_ipmilan) or command (a program
	// of yours; exit status 0 means fenced). Required.
	Driver string `yaml:"driver"`
	// Address is the BMC's host name or address (ipmi and redfish:
	// required; fence-agent: passed as ip).
	Address string `yaml:"address"`
	// Port is the BMC's port: default 623 for ipmi, 443 for redfish;
	// fence-agent: passed as ipport when set.
	Port int `yaml:"port"`
	// Username is the BMC user (ipmi and redfish: required; fence-agent:
	// passed as username when set).
	Username string `yaml:"username"`
	// PasswordFile holds the BMC password (refused when other users may
	// read it, like every password file). Set it or PasswordEnv for ipmi
	// and redfish; fence-agent takes either or neither; command neither.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable of the agent holding the
	// password instead (systemd's LoadCredential= or an EnvironmentFile=
	// readable by root only, say).
	PasswordEnv string `yaml:"password_env"`
	// Timeout bounds one fence: power off and read back (the off and
	// status runs of a fence agent; a command's run). Default 30s; 1s to
	// 2m.
	Timeout Duration `yaml:"timeout"`
	// CipherSuite is the IPMI lanplus cipher suite (ipmi only). Default 3.
	CipherSuite string `yaml:"cipher_suite"`
	// CAFile is a PEM bundle that verifies the BMC's HTTPS certificate
	// (redfish only). Redfish needs it or InsecureSkipVerify.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify accepts any certificate from the BMC (redfish
	// only): usual for BMCs' self-signed certificates, but a machine in
	// the middle could then fake a power-off confirmation.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// System names the Redfish ComputerSystem to power off when the BMC
	// has several (redfish only).
	System string `yaml:"system"`
	// Agent is the fence agent's absolute path (fence-agent only,
	// required).
	Agent string `yaml:"agent"`
	// Options are more of the fence agent's options, as it reads them on
	// standard input: long option names without "--", such as lanplus: "1",
	// cipher: "3" or ssl_insecure: "1" (fence-agent only). action and
	// password are hamgr's; ip, ipport and username come from address,
	// port and username.
	Options map[string]string `yaml:"options"`
	// Command is the program's absolute path (command only, required). It
	// finds the target in HAMGR_FENCE_TARGET, HAMGR_FENCE_HOST and
	// HAMGR_FENCE_PORT and must exit 0 only once the target is off.
	Command string `yaml:"command"`
	// Args are the program's arguments (command only).
	Args []string `yaml:"args"`
}

// FenceTimeout returns Timeout, or DefaultFenceTimeout when it is 0.
func (m FenceMember) FenceTimeout() time.Duration {
	if m.Timeout == 0 {
		return DefaultFenceTimeout
	}
	return time.Duration(m.Timeout)
}

// Password returns member's BMC password: password_file read with
// ReadPassword (a file other users may read or write is refused), or the
// variable password_env names; "" when neither is set. Errors name the
// key, never the password.
func (f Fencing) Password(member string) (string, error) {
	m := f.Members[member]
	key := "fencing.members." + member
	if m.PasswordFile != "" {
		return ReadPassword(key+".password_file", m.PasswordFile)
	}
	if m.PasswordEnv == "" {
		return "", nil
	}
	pw := strings.TrimRight(os.Getenv(m.PasswordEnv), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s.password_env: the environment variable %s is not set or empty in the agent's environment: set it (systemd: Environment= or EnvironmentFile=), or use password_file", key, m.PasswordEnv)
	}
	return pw, nil
}

var (
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	agentOptionRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// validateFencing checks the fencing section.
func (c *Config) validateFencing(p *problems) {
	for _, name := range c.Fencing.Names() {
		key := "fencing.members." + name
		if !nameRE.MatchString(name) {
			p.add(key, "%q is not a member name: want the member's name as in its own config file (lower-case letters, digits, '.', '_' or '-')", name)
		}
		validateFenceMember(p, key, c.Fencing.Members[name])
	}
}

func validateFenceMember(p *problems, key string, m FenceMember) {
	switch m.Driver {
	case FenceIPMI, FenceRedfish:
		validateBMC(p, key, m)
	case FenceAgent:
		validateAgent(p, key, m)
	case FenceCommand:
		validateCommand(p, key, m)
	case "":
		p.add(key+".driver", "required: how to fence this member, %s", fenceDriverList)
	default:
		p.add(key+".driver", "%q is not a fencing driver: want %s", m.Driver, fenceDriverList)
	}
	if m.Timeout != 0 && (time.Duration(m.Timeout) < MinFenceTimeout || time.Duration(m.Timeout) > MaxFenceTimeout) {
		p.add(key+".timeout", "%v is out of range: want %v to %v (the agent gives one fence attempt at most %v), or leave it out for %v",
			m.Timeout, MinFenceTimeout, MaxFenceTimeout, MaxFenceTimeout, DefaultFenceTimeout)
	}
	if m.Port < 0 || m.Port > 65535 {
		p.add(key+".port", "%d is out of range (1-65535)", m.Port)
	}
	if m.PasswordFile != "" && m.PasswordEnv != "" {
		p.add(key+".password_env", "set together with password_file: set one of them")
	}
	if m.PasswordFile != "" && !filepath.IsAbs(m.PasswordFile) {
		p.add(key+".password_file", "%q must be an absolute path", m.PasswordFile)
	}
	if m.PasswordEnv != "" && !envNameRE.MatchString(m.PasswordEnv) {
		p.add(key+".password_env", "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", m.PasswordEnv)
	}
	notFor := func(field string, set bool, drivers string) {
		if set {
			p.add(key+"."+field, "is for driver %s only, and driver is %q: remove it", drivers, m.Driver)
		}
	}
	if m.Driver != "" {
		notFor("cipher_suite", m.CipherSuite != "" && m.Driver != FenceIPMI, FenceIPMI)
		notFor("ca_file", m.CAFile != "" && m.Driver != FenceRedfish, FenceRedfish)
		notFor("insecure_skip_verify", m.InsecureSkipVerify && m.Driver != FenceRedfish, FenceRedfish)
		notFor("system", m.System != "" && m.Driver != FenceRedfish, FenceRedfish)
		notFor("agent", m.Agent != "" && m.Driver != FenceAgent, FenceAgent)
		notFor("options", len(m.Options) > 0 && m.Driver != FenceAgent, FenceAgent)
		notFor("command", m.Command != "" && m.Driver != FenceCommand, FenceCommand)
		notFor("args", len(m.Args) > 0 && m.Driver != FenceCommand, FenceCommand)
	}
}

func validateBMC(p *problems, key string, m FenceMember) {
	if m.Address == "" {
		p.add(key+".address", "required for driver %s: the BMC's host name or address", m.Driver)
	} else if strings.ContainsAny(m.Address, " /:") && !strings.HasPrefix(m.Address, "[") {
		p.add(key+".address", "%q: want a host name or address only (the port goes in port)", m.Address)
	}
	if m.Username == "" {
		p.add(key+".username", "required for driver %s: the BMC user", m.Driver)
	}
	if m.PasswordFile == "" && m.PasswordEnv == "" {
		p.add(key+".password_file", "required for driver %s: the file holding the BMC password (or password_env)", m.Driver)
	}
	if m.Driver == FenceRedfish {
		switch {
		case m.CAFile == "" && !m.InsecureSkipVerify:
			p.add(key+".ca_file", "required for driver redfish: the PEM file of the CA that signed the BMC's HTTPS certificate, or set insecure_skip_verify: true to accept any certificate")
		case m.CAFile != "" && m.InsecureSkipVerify:
			p.add(key+".insecure_skip_verify", "set together with ca_file: set one of them")
		case m.CAFile != "" && !filepath.IsAbs(m.CAFile):
			p.add(key+".ca_file", "%q must be an absolute path", m.CAFile)
		}
	}
}

func validateAgent(p *problems, key string, m FenceMember) {
	switch {
	case m.Agent == "":
		p.add(key+".agent", "required for driver fence-agent: the absolute path of the fence agent, such as /usr/sbin/fence_ipmilan")
	case !filepath.IsAbs(m.Agent):
		p.add(key+".agent", "%q must be an absolute path, such as /usr/sbin/fence_ipmilan", m.Agent)
	}
	names := make([]string, 0, len(m.Options))
	for k := range m.Options {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		okey := key + ".options." + k
		switch {
		case k == "action" || k == "password" || k == "passwd":
			p.add(okey, "hamgr sets %s itself: remove it (the password comes from password_file or password_env)", k)
		case k == "ip" || k == "ipport" || k == "username" || k == "login":
			p.add(okey, "set it with %s.address, .port or .username instead", key)
		case !agentOptionRE.MatchString(k):
			p.add(okey, "%q: want the agent's long option name without \"--\", such as lanplus or ssl_insecure", k)
		case strings.ContainsAny(m.Options[k], "\r\n"):
			p.add(okey, "the value may not contain a line break")
		}
	}
}

func validateCommand(p *problems, key string, m FenceMember) {
	switch {
	case m.Command == "":
		p.add(key+".command", "required for driver command: the absolute path of the program that fences the member")
	case !filepath.IsAbs(m.Command):
		p.add(key+".command", "%q must be an absolute path", m.Command)
	}
	for _, f := range []struct {
		field string
		set   bool
	}{{"address", m.Address != ""}, {"port", m.Port != 0}, {"username", m.Username != ""},
		{"password_file", m.PasswordFile != ""}, {"password_env", m.PasswordEnv != ""}} {
		if f.set {
			p.add(key+"."+f.field, "is not used by driver command (the program gets only the target's name, host and port): remove it, and let the program read its own settings")
		}
	}
}

// files lists the files of the fencing section for CheckPaths:
// password and CA files to be readable, agents and commands executable.
func (f Fencing) files() (readable, executable []struct{ key, path string }) {
	for _, name := range f.Names() {
		m, key := f.Members[name], "fencing.members."+name
		readable = append(readable,
			struct{ key, path string }{key + ".password_file", m.PasswordFile},
			struct{ key, path string }{key + ".ca_file", m.CAFile})
		executable = append(executable,
			struct{ key, path string }{key + ".agent", m.Agent},
			struct{ key, path string }{key + ".command", m.Command})
	}
	return readable, executable
}
