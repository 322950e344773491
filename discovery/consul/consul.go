// Package consul publishes members in Consul: each agent registers its
// database as a service instance with its local Consul agent, tagged
// "primary" or "replica", with metadata (cluster, member, epoch, leader,
// lag), and an HTTP health check against the hamgr agent's own /primary or
// /replica endpoint, so that Consul stops routing to a dead node by itself
// (its check fails) without hamgr having to say so. Clients find the
// primary as primary.SERVICE.service.consul in Consul's DNS, or through
// the catalog and health APIs with tag "primary".
//
// Optionally the primary's address and epoch are written under a KV key,
// guarded by the epoch: a check-and-set on the key's modify index refuses
// to replace a newer epoch with an older one.
//
// Every publication is read back from the Consul agent before it counts.
// The ACL token is read from a file by the caller and never logged.
package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	capi "github.com/hashicorp/consul/api"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

// Tags of the service instance by role.
const (
	TagPrimary = "primary"
	TagReplica = "replica"
)

// Defaults of Options.
const (
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
)

// Options configure a Publisher.
type Options struct {
	// Address is the Consul agent's HTTP address: "host:port", or a URL
	// ("http://127.0.0.1:8500", "https://...").
	Address string
	// CAFile, for https, is the CA bundle that signed the agent's
	// certificate ("": the system's).
	CAFile string
	// Token is the ACL token ("": the agent's default).
	Token string
	// Service is the service name, such as "postgresql".
	Service string
	// ServiceID is this member's instance ID (default SERVICE-MEMBER).
	ServiceID string
	// APIURL is the hamgr agent's own API (such as
	// "http://10.0.0.1:8008"); the health check asks its /primary or
	// /replica.
	APIURL string
	// CheckInterval and CheckTimeout of the HTTP check (defaults
	// DefaultCheckInterval and DefaultCheckTimeout).
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// DeregisterCriticalAfter, if set, has Consul remove an instance whose
	// check stayed critical that long (Consul's minimum is one minute).
	DeregisterCriticalAfter time.Duration
	// KVKey, if set, is where the primary's address and epoch are
	// written, as JSON (see KVValue).
	KVKey  string
	Logger *slog.Logger
}

// KVValue is what the Publisher writes under Options.KVKey.
type KVValue struct {
	Cluster string        `json:"cluster"`
	Member  string        `json:"member"`
	Host    string        `json:"host"`
	Port    int           `json:"port"`
	Epoch   cluster.Epoch `json:"epoch"`
}

// StaleEpochError: the KV key holds a newer epoch than the one published.
type StaleEpochError struct {
	Key       string
	Ours, Got cluster.Epoch
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("consul key %s holds epoch %d, newer than ours (%d): not overwritten", e.Key, e.Got, e.Ours)
}

// Publisher is a discovery.MemberPublisher for Consul.
type Publisher struct {
	opts Options
	c    *capi.Client
	log  *slog.Logger
}

var _ discovery.MemberPublisher = (*Publisher)(nil)

// New returns a Publisher; it does not contact Consul.
func New(o Options) (*Publisher, error) {
	if o.Service == "" {
		return nil, errors.New("consul: service name required")
	}
	if _, err := url.Parse(o.APIURL); err != nil || o.APIURL == "" {
		return nil, fmt.Errorf("consul: the hamgr API URL %q is needed for the health check", o.APIURL)
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg := capi.DefaultNonPooledConfig()
	cfg.Address, cfg.Token = o.Address, o.Token
	if u, err := url.Parse(o.Address); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		cfg.Scheme, cfg.Address = u.Scheme, u.Host
	}
	cfg.TLSConfig.CAFile = o.CAFile
	c, err := capi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", o.Address, err)
	}
	return &Publisher{opts: o, c: c, log: o.Logger}, nil
}

// Name is "consul".
func (*Publisher) Name() string { return "consul" }

// serviceID is this member's instance ID.
func (p *Publisher) serviceID(member string) string {
	if p.opts.ServiceID != "" {
		return p.opts.ServiceID
	}
	return p.opts.Service + "-" + member
}

// Publish registers this member as the primary p (and writes the KV key).
func (p *Publisher) Publish(ctx context.Context, pr discovery.Primary) error {
	return p.PublishSelf(ctx, discovery.Self{Cluster: pr.Cluster, Name: pr.Name, Role: cluster.RolePrimary,
		Epoch: pr.Epoch, Leader: pr.Name, Host: pr.Host, Port: pr.Port})
}

// registration is s as a service registration.
func (p *Publisher) registration(s discovery.Self) *capi.AgentServiceRegistration {
	var tags []string
	path := "/replica"
	check := capi.HealthCritical
	switch s.Role {
	case cluster.RolePrimary:
		tags, path, check = []string{TagPrimary}, "/primary", capi.HealthPassing
	case cluster.RoleReplica:
		tags, check = []string{TagReplica}, capi.HealthPassing
	}
	lag := "unknown"
	if s.LagBytes >= 0 && s.Role == cluster.RoleReplica {
		lag = strconv.FormatInt(s.LagBytes, 10)
	}
	id := p.serviceID(s.Name)
	reg := &capi.AgentServiceRegistration{
		ID: id, Name: p.opts.Service, Tags: tags, Address: s.Host, Port: s.Port,
		Meta: map[string]string{"cluster": s.Cluster, "member": s.Name, "role": s.Role.String(),
			"epoch": strconv.FormatUint(uint64(s.Epoch), 10), "leader": s.Leader, "lag_bytes": lag},
		Check: &capi.AgentServiceCheck{
			CheckID: id + ":role", Name: "hamgr " + strings.TrimPrefix(path, "/"),
			HTTP:     strings.TrimSuffix(p.opts.APIURL, "/") + path,
			Interval: p.opts.CheckInterval.String(), Timeout: p.opts.CheckTimeout.String(),
			// The agent has just seen this role itself: passing until the
			// check's first run says otherwise.
			Status: check,
		},
	}
	if d := p.opts.DeregisterCriticalAfter; d > 0 {
		reg.Check.DeregisterCriticalServiceAfter = d.String()
	}
	return reg
}

// PublishSelf registers this member's instance as s says (tag, metadata,
// the check of its role), reads it back from the agent and, for the
// primary, writes and reads back the KV key.
func (p *Publisher) PublishSelf(ctx context.Context, s discovery.Self) error {
	reg := p.registration(s)
	opts := capi.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := p.c.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("consul: register service %s (%s): %w", reg.ID, s.Role, err)
	}
	got, _, err := p.c.Agent().Service(reg.ID, (&capi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: read back service %s: %w", reg.ID, err)
	}
	if !slices.Equal(got.Tags, reg.Tags) || got.Meta["epoch"] != reg.Meta["epoch"] || got.Port != reg.Port {
		return fmt.Errorf("consul: service %s read back with tags %v epoch %s port %d, want %v %s %d",
			reg.ID, got.Tags, got.Meta["epoch"], got.Port, reg.Tags, reg.Meta["epoch"], reg.Port)
	}
	if s.Role == cluster.RolePrimary && p.opts.KVKey != "" {
		return p.writeKV(ctx, KVValue{Cluster: s.Cluster, Member: s.Name, Host: s.Host, Port: s.Port, Epoch: s.Epoch})
	}
	return nil
}

// kvAttempts bounds the check-and-set retries of writeKV.
const kvAttempts = 5

// writeKV writes v under the KV key unless it holds a newer epoch: a
// check-and-set on the modify index read, retried when someone wrote in
// between; then reads it back.
func (p *Publisher) writeKV(ctx context.Context, v KVValue) error {
	key := p.opts.KVKey
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("consul: encode key %s: %w", key, err)
	}
	kv := p.c.KV()
	for range kvAttempts {
		cur, _, err := kv.Get(key, (&capi.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: read key %s: %w", key, err)
		}
		var index uint64
		if cur != nil {
			var old KVValue
			if json.Unmarshal(cur.Value, &old) == nil && old.Epoch > v.Epoch {
				return &StaleEpochError{Key: key, Ours: v.Epoch, Got: old.Epoch}
			}
			if string(cur.Value) == string(body) {
				return nil // published already
			}
			index = cur.ModifyIndex
		}
		ok, _, err := kv.CAS(&capi.KVPair{Key: key, Value: body, ModifyIndex: index}, (&capi.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: write key %s: %w", key, err)
		}
		if !ok {
			continue // written in between: read again
		}
		back, _, err := kv.Get(key, (&capi.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: read back key %s: %w", key, err)
		}
		if back == nil || string(back.Value) != string(body) {
			continue
		}
		return nil
	}
	return fmt.Errorf("consul: key %s kept changing during %d check-and-set attempts", key, kvAttempts)
}

// Withdraw deregisters this member's instance (a clean stop of the agent).
func (p *Publisher) Withdraw(ctx context.Context, s discovery.Self) error {
	id := p.serviceID(s.Name)
	if err := p.c.Agent().ServiceDeregisterOpts(id, (&capi.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: deregister service %s: %w", id, err)
	}
	return nil
}
