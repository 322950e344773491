package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hamgr/hamgr/discovery/consul"
)

// DefaultConsulAddress is discovery.consul.address's default: the Consul
// agent on this machine.
const DefaultConsulAddress = "127.0.0.1:8500"

// DefaultPublishTimeout is discovery.timeout's default: one attempt of one
// publisher.
const DefaultPublishTimeout = 10 * time.Second

// Consul configures the Consul publisher (package discovery/consul): this
// member's database is a service instance of the local Consul agent,
// tagged primary or replica, with an HTTP check against this agent's own
// /primary or /replica (api.advertise), so Consul stops routing to a
// dead node by itself.
type Consul struct {
	// Address of the Consul agent's HTTP API: "host:port" or an http(s)
	// URL. Default "127.0.0.1:8500".
	Address string `yaml:"address"`
	// Service is the service name. Default: the cluster's name. Clients
	// find the primary as primary.SERVICE.service.consul.
	Service string `yaml:"service"`
	// TokenFile holds the ACL token (optional). Same rules as password
	// files: refused when other users may read it.
	TokenFile string `yaml:"token_file"`
	// CAFile is the CA bundle for an https address (optional).
	CAFile string `yaml:"ca_file"`
	// CheckInterval and CheckTimeout of the health check. Defaults 2s
	// and 1s.
	CheckInterval Duration `yaml:"check_interval"`
	CheckTimeout  Duration `yaml:"check_timeout"`
	// DeregisterCriticalAfter, optional (at least 1m), has Consul remove
	// an instance whose check stayed critical that long.
	DeregisterCriticalAfter Duration `yaml:"deregister_critical_after"`
	// KVKey, optional, is where the primary's address and epoch are
	// written as JSON (an older epoch never overwrites a newer one).
	KVKey string `yaml:"kv_key"`
}

// consulServiceRE is what a service name may be (it becomes a DNS label).
var consulServiceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// applyConsulDefaults fills the Consul section's and discovery.timeout's
// defaults.
func (c *Config) applyConsulDefaults() {
	if c.Discovery.Timeout == 0 {
		c.Discovery.Timeout = Duration(DefaultPublishTimeout)
	}
	d := c.Discovery.Consul
	if d == nil {
		return
	}
	if d.Address == "" {
		d.Address = DefaultConsulAddress
	}
	if d.Service == "" {
		d.Service = c.Cluster
	}
	if d.CheckInterval == 0 {
		d.CheckInterval = Duration(consul.DefaultCheckInterval)
	}
	if d.CheckTimeout == 0 {
		d.CheckTimeout = Duration(consul.DefaultCheckTimeout)
	}
}

func (c *Config) validateConsul(p *problems) {
	if t := time.Duration(c.Discovery.Timeout); t < time.Second || t > 5*time.Minute {
		p.add("discovery.timeout", "%v: want 1s to 5m (one attempt of one publisher)", t)
	}
	d := c.Discovery.Consul
	if d == nil {
		return
	}
	const k = "discovery.consul."
	if strings.Contains(d.Address, "://") {
		if u, err := url.Parse(d.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(k+"address", "%q: want host:port or an http(s) URL, such as \"127.0.0.1:8500\"", d.Address)
		}
	}
	if !consulServiceRE.MatchString(d.Service) {
		p.add(k+"service", "%q: want lower-case letters, digits and '-' (a DNS label), such as \"postgresql\"", d.Service)
	}
	for _, f := range []struct{ key, v string }{{"token_file", d.TokenFile}, {"ca_file", d.CAFile}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.add(k+f.key, "%q must be an absolute path", f.v)
		}
	}
	if t := time.Duration(d.CheckInterval); t < 100*time.Millisecond || t > time.Minute {
		p.add(k+"check_interval", "%v: want 100ms to 1m", t)
	}
	if t := time.Duration(d.CheckTimeout); t <= 0 || t > time.Duration(d.CheckInterval) {
		p.add(k+"check_timeout", "%v: want more than 0 and at most check_interval (%v)", t, d.CheckInterval)
	}
	if t := time.Duration(d.DeregisterCriticalAfter); t != 0 && t < time.Minute {
		p.add(k+"deregister_critical_after", "%v: Consul's minimum is 1m (or leave it unset)", t)
	}
	if c.API.Advertise == "" {
		p.add(k+"address", "the health check needs api.advertise (this agent's API URL as Consul reaches it)")
	}
}

// ConsulToken reads discovery.consul.token_file ("" when unset). Errors
// name the file, never the token.
func (d Consul) ConsulToken() (string, error) {
	if d.TokenFile == "" {
		return "", nil
	}
	b, err := readSecretFile("discovery.consul.token_file", d.TokenFile)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("discovery.consul.token_file %s is empty", d.TokenFile)
	}
	return t, nil
}
