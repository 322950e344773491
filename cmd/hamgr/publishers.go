package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/discovery/consul"
	"github.com/hamgr/hamgr/discovery/dns"
	"github.com/hamgr/hamgr/discovery/hook"
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
	if d := cfg.Discovery.Consul; d != nil {
		p, err := consulPublisher(cfg, d, log)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, p)
	}
	if h := hooks(cfg, log); h != nil {
		pubs = append(pubs, h)
	}
	return pubs, nil
}

// consulPublisher builds the Consul publisher; the ACL token is read here,
// once, and never logged.
func consulPublisher(cfg *config.Config, d *config.Consul, log *slog.Logger) (*consul.Publisher, error) {
	token, err := d.ConsulToken()
	if err != nil {
		return nil, err
	}
	p, err := consul.New(consul.Options{
		Address: d.Address, CAFile: d.CAFile, Token: token, Service: d.Service, APIURL: cfg.API.Advertise,
		CheckInterval: time.Duration(d.CheckInterval), CheckTimeout: time.Duration(d.CheckTimeout),
		DeregisterCriticalAfter: time.Duration(d.DeregisterCriticalAfter), KVKey: d.KVKey,
		Logger: log.With("publisher", "consul"),
	})
	if err != nil {
		return nil, fmt.Errorf("discovery.consul: %w", err)
	}
	log.Info("publishing members in Consul", "service", d.Service, "address", d.Address, "kv_key", d.KVKey,
		"token", d.TokenFile != "")
	return p, nil
}

// hooks are the configured hooks, nil when none is.
func hooks(cfg *config.Config, log *slog.Logger) *hook.Hooks {
	progs := cfg.Hooks.Programs()
	if len(progs) == 0 {
		return nil
	}
	return &hook.Hooks{Programs: progs, PrePromoteFailure: cfg.Hooks.Failure(),
		Timeout: time.Duration(cfg.Discovery.Timeout), Logger: log.With("publisher", "hooks")}
}

// prePromoter is the hooks among pubs (their pre_promote), nil when none.
func prePromoter(pubs []discovery.Publisher) discovery.PrePromoter {
	for _, p := range pubs {
		if h, ok := p.(*hook.Hooks); ok && h.Programs[hook.PrePromote] != "" {
			return h
		}
	}
	return nil
}
