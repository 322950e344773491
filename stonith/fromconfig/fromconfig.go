// Package fromconfig builds the fencer of a config file's fencing section
// (package config): a stonith.Members with one driver per member. The
// agent (cmd/hamgr) uses it for its promotions' fence step, and hamgrctl
// fence for an operator's fence, so both power a member off the same way.
package fromconfig

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/bmc"
	"github.com/hamgr/hamgr/stonith/command"
	"github.com/hamgr/hamgr/stonith/fenceagent"
)

// Build builds the fencer of the fencing section: a stonith.Members
// with one driver per configured member; nil when the section is empty
// (the agent then has no fencer). Passwords are read here, once, from
// their files or the environment; errors name the key, never a password.
func Build(f config.Fencing, log *slog.Logger) (stonith.Fencer, error) {
	if !f.Enabled() {
		log.Info("fencing: no members configured (fencing.members); promotions rely on the liveness evidence alone")
		return nil, nil
	}
	members := make(stonith.Members, len(f.Members))
	for _, name := range f.Names() {
		d, err := buildDriver(f, name, log)
		if err != nil {
			return nil, err
		}
		members[name] = d
		m := f.Members[name]
		log.Info("fencing configured", "member", name, "driver", m.Driver, "timeout", m.FenceTimeout())
	}
	return members, nil
}

// buildDriver builds the driver of one member.
func buildDriver(f config.Fencing, name string, log *slog.Logger) (stonith.Fencer, error) {
	m := f.Members[name]
	key := "fencing.members." + name
	pw, err := f.Password(name)
	if err != nil {
		return nil, err
	}
	dlog := log.With("fence_member", name)
	switch m.Driver {
	case config.FenceIPMI, config.FenceRedfish:
		return bmcDriver(m, key, pw, dlog)
	case config.FenceAgent:
		settings := make(map[string]string, len(m.Options)+3)
		for k, v := range m.Options {
			settings[k] = v
		}
		if m.Address != "" {
			settings["ip"] = m.Address
		}
		if m.Port != 0 {
			settings["ipport"] = strconv.Itoa(m.Port)
		}
		if m.Username != "" {
			settings["username"] = m.Username
		}
		d, err := fenceagent.New(fenceagent.Options{
			Agent: m.Agent, Settings: settings, Password: pw, Timeout: m.FenceTimeout(), Logger: dlog,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return d, nil
	case config.FenceCommand:
		d, err := command.New(command.Options{Path: m.Command, Args: m.Args, Timeout: m.FenceTimeout(), Logger: dlog})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("%s.driver: %q is not a fencing driver", key, m.Driver)
}

// bmcDriver builds an ipmi or redfish driver.
func bmcDriver(m config.FenceMember, key, pw string, log *slog.Logger) (stonith.Fencer, error) {
	opts := bmc.Options{
		Host: m.Address, Port: m.Port, Username: m.Username, Password: pw,
		Timeout: m.FenceTimeout(), PollInterval: 500 * time.Millisecond, Logger: log,
	}
	if m.Driver == config.FenceIPMI {
		opts.Protocol, opts.CipherSuite = bmc.IPMI, m.CipherSuite
	} else {
		opts.Protocol, opts.SystemName = bmc.Redfish, m.System
		opts.TLS = bmc.TLSInsecure
		if m.CAFile != "" {
			pool, err := caPool(m.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s.ca_file: %w", key, err)
			}
			opts.TLS, opts.RootCAs = bmc.TLSVerifyCA, pool
		} else {
			log.Warn("fencing: the BMC's certificate is not verified (insecure_skip_verify): a machine in the middle could fake a power-off confirmation; set ca_file", "key", key+".insecure_skip_verify")
		}
	}
	d, err := bmc.New(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return d, nil
}

// caPool reads a PEM bundle of CA certificates.
func caPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
