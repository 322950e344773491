package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/discovery/dns"
)

// publishers builds the configured discovery publishers, in the order the
// agent runs them. The TSIG secret is read here, once; errors name the key
// and the file or variable, never the secret.
func publishers(cfg *config.Config, log *slog.Logger) ([]discovery.Publisher, error) {
	var pubs []discovery.Publisher
	if d := cfg.Discovery.DNS; d != nil {
		key, err := d.Key()
		if err != nil {
			return nil, err
		}
		p, err := dns.New(dns.Options{
			Server: d.Server, Zone: d.Zone, Name: d.Name, ReplicasName: d.ReplicasName,
			TTL: time.Duration(d.TTL), Key: key, Logger: log.With("publisher", "dns"),
		})
		if err != nil {
			return nil, fmt.Errorf("discovery.dns: %w", err)
		}
		log.Info("publishing the primary in DNS", "name", p.PrimaryName(), "server", d.Server, "key", key.Name())
		pubs = append(pubs, p)
	}
	return pubs, nil
}
