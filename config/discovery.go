package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hamgr/hamgr/discovery/dns"
)

// DefaultDNSTTL is discovery.dns.ttl's default: short, so that resolvers
// follow a failover quickly.
const DefaultDNSTTL = 30 * time.Second

// Discovery configures how clients learn where the primary is: each
// configured publisher, in order (dns, consul, then the hooks), points its
// name at a new primary during the promotion and reads it back, and again
// whenever this member's role changes or the agent starts (package
// discovery). A failing publisher never holds up a promotion: it is the
// problem publish_failed, retried with back-off.
type Discovery struct {
	// DNS publishes the primary in DNS by RFC 2136 dynamic updates signed
	// with a TSIG key (package discovery/dns). Optional.
	DNS *DNS `yaml:"dns"`
	// Consul publishes every member as a Consul service instance tagged
	// primary or replica (package discovery/consul). Optional.
	Consul *Consul `yaml:"consul"`
	// Timeout bounds one attempt of one publisher (and of each hook).
	// Default 10s; 1s to 5m.
	Timeout Duration `yaml:"timeout"`
}

// DNS configures the DNS publisher. The primary's name gets an A or AAAA
// record (postgresql.connect_host is an address) or a CNAME (it is a host
// name); an "_hamgr-epoch." TXT record beside it keeps an older primary
// from overwriting a newer one.
type DNS struct {
	// Server is the authoritative server's "host:port", such as
	// "10.0.0.2:53". Required.
	Server string `yaml:"server"`
	// Zone is the zone the names are in, such as "db.example.com".
	// Required.
	Zone string `yaml:"zone"`
	// Name is the primary's name, inside Zone, such as
	// "primary.db.example.com". Required.
	Name string `yaml:"name"`
	// TTL of the records. Default 30s; whole seconds, 1s to 1h.
	TTL Duration `yaml:"ttl"`
	// KeyName is the TSIG key's name, as the server knows it. Required.
	KeyName string `yaml:"key_name"`
	// KeyAlgorithm is hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384
	// or hmac-sha512. Default: the key file's, else hmac-sha256.
	KeyAlgorithm string `yaml:"key_algorithm"`
	// KeyFile holds the secret: a BIND key statement as tsig-keygen
	// writes it, or the base64 secret alone. Same rules as password
	// files: refused when other users may read it. Set exactly one of
	// KeyFile and KeyEnv.
	KeyFile string `yaml:"key_file"`
	// KeyEnv names an environment variable holding the base64 secret.
	KeyEnv string `yaml:"key_env"`
	// ReplicasName, optional, inside Zone, is the name meant to hold one
	// record per healthy replica. Nothing publishes it yet: the agent does
	// not set it on role changes.
	ReplicasName string `yaml:"replicas_name"`
}

// applyDNSDefaults fills the DNS section's defaults.
func (c *Config) applyDNSDefaults() {
	if d := c.Discovery.DNS; d != nil && d.TTL == 0 {
		d.TTL = Duration(DefaultDNSTTL)
	}
}

// envNameOK is what an environment variable name may be.
func envNameOK(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (c *Config) validateDiscovery(p *problems) {
	d := c.Discovery.DNS
	if d == nil {
		return
	}
	const k = "discovery.dns."
	if _, port, err := net.SplitHostPort(d.Server); err != nil {
		p.add(k+"server", "%q is not host:port: want the authoritative server's address, such as \"10.0.0.2:53\"", d.Server)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		p.add(k+"server", "%q: port %q is out of range (1-65535)", d.Server, port)
	}
	zone := strings.TrimSuffix(strings.ToLower(d.Zone), ".")
	if zone == "" {
		p.add(k+"zone", "required: the zone the names are in, such as \"db.example.com\"")
	}
	for _, n := range []struct{ key, v string }{{"name", d.Name}, {"replicas_name", d.ReplicasName}} {
		v := strings.TrimSuffix(strings.ToLower(n.v), ".")
		switch {
		case v == "" && n.key == "name":
			p.add(k+"name", "required: the primary's name, inside discovery.dns.zone, such as \"primary.%s\"", zoneOr(zone))
		case v == "":
		case zone != "" && v != zone && !strings.HasSuffix(v, "."+zone):
			p.add(k+n.key, "%q is not inside discovery.dns.zone %q: want a name such as \"%s.%s\"", n.v, d.Zone, strings.TrimSuffix(n.key, "_name"), zone)
		}
	}
	if d.ReplicasName != "" && strings.EqualFold(strings.TrimSuffix(d.ReplicasName, "."), strings.TrimSuffix(d.Name, ".")) {
		p.add(k+"replicas_name", "%q is discovery.dns.name too: give the replicas their own name", d.ReplicasName)
	}
	if t := time.Duration(d.TTL); t < time.Second || t > time.Hour || t%time.Second != 0 {
		p.add(k+"ttl", "%v: want whole seconds from 1s to 1h (short, such as 30s, so that clients follow a failover)", t)
	}
	if d.KeyName == "" {
		p.add(k+"key_name", "required: the TSIG key's name, as in the server's key \"NAME\" { ... } statement")
	}
	if d.KeyAlgorithm != "" {
		if _, err := dns.ParseAlgorithm(d.KeyAlgorithm); err != nil {
			p.add(k+"key_algorithm", "%v", err)
		}
	}
	switch {
	case d.KeyFile == "" && d.KeyEnv == "":
		p.add(k+"key_file", "required (or discovery.dns.key_env): the file holding the TSIG key's secret, as tsig-keygen writes it")
	case d.KeyFile != "" && d.KeyEnv != "":
		p.add(k+"key_env", "set together with discovery.dns.key_file: set exactly one of them")
	case d.KeyFile != "" && !filepath.IsAbs(d.KeyFile):
		p.add(k+"key_file", "%q must be an absolute path", d.KeyFile)
	case d.KeyEnv != "" && !envNameOK(d.KeyEnv):
		p.add(k+"key_env", "%q is not an environment variable name: want letters, digits and '_'", d.KeyEnv)
	}
}

func zoneOr(zone string) string {
	if zone == "" {
		return "db.example.com"
	}
	return zone
}

// Key reads the TSIG key: its secret from key_file (a file other users may
// read or write is refused, see ReadPassword) or from the environment
// variable key_env. Errors name the key and where its secret was looked
// for, never the secret.
func (d DNS) Key() (dns.Key, error) {
	alg := dns.Algorithm("")
	if d.KeyAlgorithm != "" {
		a, err := dns.ParseAlgorithm(d.KeyAlgorithm)
		if err != nil {
			return dns.Key{}, fmt.Errorf("discovery.dns.key_algorithm: %w", err)
		}
		alg = a
	}
	if d.KeyEnv != "" {
		secret := os.Getenv(d.KeyEnv)
		if strings.TrimSpace(secret) == "" {
			return dns.Key{}, fmt.Errorf("discovery.dns.key_env: the environment variable %s is unset or empty: set it to the base64 secret of TSIG key %q", d.KeyEnv, d.KeyName)
		}
		k, err := dns.NewKey(d.KeyName, alg, secret)
		if err != nil {
			return dns.Key{}, fmt.Errorf("discovery.dns.key_env %s: %w", d.KeyEnv, err)
		}
		return k, nil
	}
	b, err := readSecretFile("discovery.dns.key_file", d.KeyFile)
	if err != nil {
		return dns.Key{}, err
	}
	k, err := dns.ParseKeyFile(b, d.KeyName, alg)
	if err != nil {
		return dns.Key{}, fmt.Errorf("discovery.dns.key_file %s: %w", d.KeyFile, err)
	}
	return k, nil
}
