package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
)

// Defaults applied by New to zero Options fields.
const (
	// DefaultPrefix is the key prefix used when Options.Prefix is empty.
	DefaultPrefix = "/hamgr"
	// DefaultDialTimeout bounds connection set-up when Options.DialTimeout is zero.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout is the per-request deadline when
	// Options.RequestTimeout is zero.
	DefaultRequestTimeout = 2 * time.Second
)

// gRPC keepalive of the client connection: a connection that stops passing
// bytes (a network partition that drops packets) is detected and replaced
// after about keepaliveTime+keepaliveTimeout instead of the kernel's TCP
// timeout. keepaliveTime stays above the etcd server's default minimum ping
// interval (5s), or the server would close the connection for "too many
// pings".
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 3 * time.Second
)

// Watch re-creation backoff in Changes.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Options configures a Store.
type Options struct {
	// Endpoints are the etcd client URLs, e.g. "http://127.0.0.1:2379".
	Endpoints []string
	// Prefix is the root of hamgr's keys (default "/hamgr").
	Prefix string
	// Cluster is the cluster name, the second path element of every key.
	Cluster string
	// DialTimeout bounds establishing a connection (default 5s).
	DialTimeout time.Duration
	// RequestTimeout is the deadline of each request when the caller's
	// context has none earlier (default 2s).
	RequestTimeout time.Duration
	// Username and Password authenticate to etcd when both are set.
	Username, Password string
	// TLS configures client TLS; nil means plaintext.
	TLS *tls.Config
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
}

// Store is a dcs.Store backed by etcd. It is safe for concurrent use.
type Store struct {
	cfg        clientv3.Config
	dials      *dialLog
	base       string // "<prefix>/<cluster>/"
	reqTimeout time.Duration
	log        *slog.Logger

	cliMu  sync.Mutex
	cli    *clientv3.Client
	closed bool

	leaseMu sync.Mutex
	lease   clientv3.LeaseID

	lossMu sync.Mutex
	losses map[chan struct{}]struct{} // StreamLosses channels open
}

var _ dcs.Store = (*Store)(nil)

// New returns a Store for opts. It does not contact etcd, so it succeeds
// while etcd is unreachable; requests then fail (with their deadline) until
// etcd answers. With Username and Password set, the client (which must
// authenticate when it is created) is created on first use instead.
func New(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if opts.Cluster == "" || strings.Contains(opts.Cluster, "/") {
		return nil, fmt.Errorf("etcd store: cluster name %q: must be non-empty and contain no '/'", opts.Cluster)
	}
	prefix := strings.TrimRight(opts.Prefix, "/")
	if opts.Prefix == "" {
		prefix = DefaultPrefix
	}
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dials := newDialLog(append([]string(nil), opts.Endpoints...), opts.DialTimeout)
	s := &Store{
		dials: dials,
		cfg: clientv3.Config{
			Endpoints:            append([]string(nil), opts.Endpoints...),
			DialTimeout:          opts.DialTimeout,
			DialKeepAliveTime:    keepaliveTime,
			DialKeepAliveTimeout: keepaliveTimeout,
			Username:             opts.Username,
			Password:             opts.Password,
			TLS:                  opts.TLS,
			DialOptions:          dials.dialOptions(opts.TLS),
			Logger:               zap.NewNop(),
		},
		base:       prefix + "/" + opts.Cluster + "/",
		reqTimeout: opts.RequestTimeout,
		log:        log.With("component", "dcs/etcd", "cluster", opts.Cluster),
	}
	if opts.Username == "" || opts.Password == "" {
		cli, err := clientv3.New(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("etcd store: create client for %v: %w", opts.Endpoints, err)
		}
		s.cli = cli
	}
	return s, nil
}

// client returns the etcd client, creating it if New deferred that.
func (s *Store) client() (*clientv3.Client, error) {
	s.cliMu.Lock()
	defer s.cliMu.Unlock()
	if s.closed {
		return nil, errors.New("etcd store: closed")
	}
	if s.cli == nil {
		cli, err := clientv3.New(s.cfg)
		if err != nil {
			if unreachable(err) {
				return nil, fmt.Errorf("etcd store: connect and authenticate to %v: %w; endpoints: %s", s.cfg.Endpoints, err, s.dials.report())
			}
			return nil, fmt.Errorf("etcd store: connect to %v: %w", s.cfg.Endpoints, err)
		}
		s.cli = cli
	}
	return s.cli, nil
}

// Close closes the client. It revokes nothing: keys bound to the lease stay
// until the lease expires.
func (s *Store) Close() error {
	s.cliMu.Lock()
	defer s.cliMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.cli == nil {
		return nil
	}
	return s.cli.Close()
}

// Key names, relative to base.
const (
	keyLeader     = "leader"
	keyLastLeader = "last_leader"
	keyMembers    = "members/"
	keyConfig     = "config"
	keyInitialize = "initialize"
	keyHistory    = "history/"
	keyRequest    = "request"
	keySync       = "sync"
	keyFailsafe   = "failsafe"
	keyFenced     = "fenced/"
	keyFenceOwed  = "fence_owed"
)

func (s *Store) key(name string) string { return s.base + name }

// reqCtx bounds ctx by the request timeout (an earlier caller deadline wins).
func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.reqTimeout)
}

// opErr wraps err with the operation and key. A missing lease becomes
// dcs.ErrLeaseLost (the etcd error stays in the chain too). A request that
// got no answer (deadline, unavailable) also says, for every endpoint, how
// the last connection attempt to it went.
func (s *Store) opErr(op, key string, err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd %s %s: %w: %w", op, key, dcs.ErrLeaseLost, err)
	}
	if unreachable(err) {
		return fmt.Errorf("etcd %s %s: %w; endpoints: %s", op, key, err, s.dials.report())
	}
	return fmt.Errorf("etcd %s %s: %w", op, key, err)
}

// Grant creates a new lease of ttl (rounded up to whole seconds, at least
// 1s; etcd may raise it to its minimum) and makes it the session lease. The
// previous lease is revoked, best effort: a failure is logged, not returned.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) error {
	cli, err := s.client()
	if err != nil {
		return err
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	if secs < 1 {
		secs = 1
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Grant(rctx, secs)
	if err != nil {
		return s.opErr("grant lease", fmt.Sprintf("ttl=%ds", secs), err)
	}
	s.leaseMu.Lock()
	old := s.lease
	s.lease = resp.ID
	s.leaseMu.Unlock()
	if old != clientv3.NoLease && old != resp.ID {
		if _, err := cli.Revoke(rctx, old); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.log.Warn("revoke previous lease failed; it will expire on its own",
				"lease", fmt.Sprintf("%x", int64(old)), "err", err)
		}
	}
	return nil
}

// KeepAlive renews the session lease once (one request, no background
// loop). It returns an error wrapping dcs.ErrLeaseLost when the lease no
// longer exists on the server or none was granted.
func (s *Store) KeepAlive(ctx context.Context) error {
	id := clientv3.LeaseID(s.LeaseID())
	if id == clientv3.NoLease {
		return fmt.Errorf("etcd keepalive: %w: no lease granted", dcs.ErrLeaseLost)
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.KeepAliveOnce(rctx, id); err != nil {
		return s.opErr("keepalive", fmt.Sprintf("lease=%x", int64(id)), err)
	}
	return nil
}

// LeaseID returns the session lease, 0 when none has been granted.
func (s *Store) LeaseID() int64 {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return int64(s.lease)
}

// leaderValue is the JSON stored under leader. Epoch and lease come from
// the key's metadata, not from the value.
type leaderValue struct {
	Name      string             `json:"name"`
	Promotion *cluster.Promotion `json:"promotion,omitempty"`
}

// lastLeaderValue is the JSON stored under last_leader. The epoch is the
// key's ModRevision (see the package documentation).
type lastLeaderValue struct {
	Name       string    `json:"name"`
	Since      time.Time `json:"since"`
	ConnHost   string    `json:"conn_host,omitempty"`
	ConnPort   int       `json:"conn_port,omitempty"`
	FailoverAt time.Time `json:"failover_at,omitzero"`
}

func (s *Store) decodeLeader(kv *mvccpb.KeyValue) *cluster.Leader {
	var v leaderValue
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		// The key is held all the same: report a holder without a name
		// rather than no holder.
		s.log.Warn("undecodable leader value", "key", string(kv.Key), "err", err)
	}
	return &cluster.Leader{Name: v.Name, Epoch: cluster.Epoch(kv.CreateRevision), Lease: kv.Lease, Promotion: v.Promotion}
}

func (s *Store) decodeLastLeader(kv *mvccpb.KeyValue) *cluster.LastLeader {
	var v lastLeaderValue
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		s.log.Warn("undecodable last_leader value", "key", string(kv.Key), "err", err)
	}
	return &cluster.LastLeader{Name: v.Name, Epoch: cluster.Epoch(kv.ModRevision), Since: v.Since,
		ConnHost: v.ConnHost, ConnPort: v.ConnPort, FailoverAt: v.FailoverAt}
}

// AcquireLeader creates the leader key for name, bound to the session
// lease, if it is absent, and writes last_leader in the same transaction.
// The new leader's epoch is the transaction's revision, which is the leader
// key's create revision. A promotion record p goes into the key's value.
// When the key is held it returns the holder and false.
func (s *Store) AcquireLeader(ctx context.Context, who cluster.LastLeader, after cluster.Epoch, p *cluster.Promotion) (cluster.Leader, bool, error) {
	name := who.Name
	key := s.key(keyLeader)
	lease := clientv3.LeaseID(s.LeaseID())
	if lease == clientv3.NoLease {
		return cluster.Leader{}, false, fmt.Errorf("etcd acquire leader %s: %w: no lease granted", key, dcs.ErrLeaseLost)
	}
	cli, err := s.client()
	if err != nil {
		return cluster.Leader{}, false, err
	}
	lv, err := json.Marshal(leaderValue{Name: name, Promotion: p})
	if err != nil {
		return cluster.Leader{}, false, err
	}
	llv, err := json.Marshal(lastLeaderValue{Name: name, Since: time.Now().UTC(), ConnHost: who.ConnHost, ConnPort: who.ConnPort,
		FailoverAt: who.FailoverAt})
	if err != nil {
		return cluster.Leader{}, false, err
	}
	ops := []clientv3.Op{clientv3.OpPut(key, string(lv), clientv3.WithLease(lease)), clientv3.OpPut(s.key(keyLastLeader), string(llv))}
	owed, err := s.fenceOwedOp(name, after, p)
	if err != nil {
		return cluster.Leader{}, false, err
	}
	if owed != nil {
		ops = append(ops, *owed)
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	lastKey := s.key(keyLastLeader)
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(lastKey), "=", int64(after))).
		Then(ops...).
		Else(clientv3.OpGet(key), clientv3.OpGet(lastKey)).
		Commit()
	if err != nil {
		return cluster.Leader{}, false, s.opErr("acquire leader", key, err)
	}
	if resp.Succeeded {
		return cluster.Leader{Name: name, Epoch: cluster.Epoch(resp.Header.Revision), Lease: int64(lease), Promotion: p}, true, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		return *s.decodeLeader(kvs[0]), false, nil
	}
	now := "none"
	if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
		ll := s.decodeLastLeader(kvs[0])
		now = fmt.Sprintf("%s at epoch %d", ll.Name, ll.Epoch)
	}
	return cluster.Leader{}, false, fmt.Errorf("etcd acquire leader %s: decided after epoch %d, last leader now %s: %w",
		key, after, now, dcs.ErrEpochChanged)
}

// fenceOwedOp is what taking the key for promotion p does to the fence
// owed: writes it when p has an old primary whose fence is not done,
// deletes it when p's fence step is done, nothing for a nil p.
func (s *Store) fenceOwedOp(by string, lost cluster.Epoch, p *cluster.Promotion) (*clientv3.Op, error) {
	switch {
	case p == nil:
		return nil, nil
	case p.Has(cluster.StepFence) || p.OldPrimary == "":
		op := clientv3.OpDelete(s.key(keyFenceOwed))
		return &op, nil
	}
	if p.OldEpoch != 0 {
		lost = p.OldEpoch
	}
	v, err := json.Marshal(cluster.FenceOwed{Target: p.OldPrimary, Lost: lost, By: by, Evidence: p.Evidence})
	if err != nil {
		return nil, err
	}
	op := clientv3.OpPut(s.key(keyFenceOwed), string(v))
	return &op, nil
}

// TakeOverLeader takes the leader key from old (see dcs.LeaderLease):
// a transaction deletes it only while its create revision is old.Epoch,
// its lease old.Lease and old's member record's mod revision memberRev
// (absent when 0), then AcquireLeader creates it for who after old.Epoch.
func (s *Store) TakeOverLeader(ctx context.Context, who cluster.LastLeader, old cluster.Leader, memberRev int64, p *cluster.Promotion) (cluster.Leader, bool, error) {
	key := s.key(keyLeader)
	cli, err := s.client()
	if err != nil {
		return cluster.Leader{}, false, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", int64(old.Epoch)),
			clientv3.Compare(clientv3.LeaseValue(key), "=", clientv3.LeaseID(old.Lease)),
			clientv3.Compare(clientv3.ModRevision(s.key(keyMembers+old.Name)), "=", memberRev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return cluster.Leader{}, false, s.opErr("take over leader", key, err)
	}
	if !resp.Succeeded {
		return cluster.Leader{}, false, fmt.Errorf("etcd take over leader %s from %s (epoch %d, lease %x, member record at revision %d): %w",
			key, old.Name, old.Epoch, old.Lease, memberRev, dcs.ErrTakeOverRefused)
	}
	return s.AcquireLeader(ctx, who, old.Epoch, p)
}

// RevokeLease revokes lease id; a lease already gone is not an error.
func (s *Store) RevokeLease(ctx context.Context, id int64) error {
	cli, err := s.client()
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.Revoke(rctx, clientv3.LeaseID(id)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return s.opErr("revoke lease", fmt.Sprintf("%x", id), err)
	}
	return nil
}

// LeaseTimeToLive reads lease id's time left and granted TTL (both whole
// seconds in etcd's answer; the time left rounded down).
func (s *Store) LeaseTimeToLive(ctx context.Context, id int64) (dcs.LeaseTTL, error) {
	cli, err := s.client()
	if err != nil {
		return dcs.LeaseTTL{}, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.TimeToLive(rctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL < 0) {
		return dcs.LeaseTTL{}, fmt.Errorf("etcd lease %x time to live: %w: it no longer exists", id, dcs.ErrLeaseLost)
	}
	if err != nil {
		return dcs.LeaseTTL{}, s.opErr("lease time to live", fmt.Sprintf("%x", id), err)
	}
	return dcs.LeaseTTL{Remaining: time.Duration(resp.TTL) * time.Second, Granted: time.Duration(resp.GrantedTTL) * time.Second}, nil
}

// UpdatePromotion rewrites the leader key's value with promotion record p,
// bound to l's lease, in a transaction that succeeds only while the key's
// create revision is still l.Epoch.
func (s *Store) UpdatePromotion(ctx context.Context, l cluster.Leader, p cluster.Promotion) error {
	key := s.key(keyLeader)
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(leaderValue{Name: l.Name, Promotion: &p})
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	ops := []clientv3.Op{clientv3.OpPut(key, string(v), clientv3.WithLease(clientv3.LeaseID(l.Lease)))}
	if p.Has(cluster.StepFence) {
		ops = append(ops, clientv3.OpDelete(s.key(keyFenceOwed)))
	}
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", int64(l.Epoch))).
		Then(ops...).
		Commit()
	if err != nil {
		return s.opErr("update promotion", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd update promotion %s: %s no longer holds the leader key of epoch %d", key, l.Name, l.Epoch)
	}
	return nil
}

// ReleaseLeader deletes the leader key if its create revision is still
// l.Epoch. It returns nil when the key is absent or held by another epoch.
func (s *Store) ReleaseLeader(ctx context.Context, l cluster.Leader) error {
	key := s.key(keyLeader)
	if l.Epoch <= 0 {
		return nil
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", int64(l.Epoch))).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return s.opErr("release leader", key, err)
	}
	if !resp.Succeeded {
		s.log.Debug("release leader: not held by this epoch", "epoch", l.Epoch)
	}
	return nil
}

// Load reads leader, last_leader, members, config, initialize and request in one
// read-only transaction, i.e. at one revision. History is not read.
func (s *Store) Load(ctx context.Context) (cluster.Snapshot, error) {
	cli, err := s.client()
	if err != nil {
		return cluster.Snapshot{}, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).Then(
		clientv3.OpGet(s.key(keyLeader)),
		clientv3.OpGet(s.key(keyLastLeader)),
		clientv3.OpGet(s.key(keyMembers), clientv3.WithPrefix()),
		clientv3.OpGet(s.key(keyConfig)),
		clientv3.OpGet(s.key(keyInitialize)),
		clientv3.OpGet(s.key(keyRequest)),
		clientv3.OpGet(s.key(keySync)),
		clientv3.OpGet(s.key(keyFailsafe)),
		clientv3.OpGet(s.key(keyFenced), clientv3.WithPrefix()),
		clientv3.OpGet(s.key(keyFenceOwed)),
	).Commit()
	if err != nil {
		return cluster.Snapshot{}, s.opErr("load", s.base, err)
	}
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().GetKvs() }
	snap := cluster.Snapshot{Revision: resp.Header.Revision}
	if kv := kvs(0); len(kv) > 0 {
		snap.Leader = s.decodeLeader(kv[0])
	}
	if kv := kvs(1); len(kv) > 0 {
		snap.LastLeader = s.decodeLastLeader(kv[0])
	}
	for _, kv := range kvs(2) {
		var m cluster.Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			s.log.Warn("skipping undecodable member record", "key", string(kv.Key), "err", err)
			continue
		}
		if m.Name == "" {
			m.Name = strings.TrimPrefix(string(kv.Key), s.key(keyMembers))
		}
		m.Revision = kv.ModRevision
		snap.Members = append(snap.Members, m)
	}
	sort.Slice(snap.Members, func(i, j int) bool { return snap.Members[i].Name < snap.Members[j].Name })
	if kv := kvs(3); len(kv) > 0 {
		var c cluster.DynamicConfig
		if err := json.Unmarshal(kv[0].Value, &c); err != nil {
			// Acting on a guessed configuration is unsafe: fail the load.
			return cluster.Snapshot{}, fmt.Errorf("etcd load %s: decode config: %w", kv[0].Key, err)
		}
		snap.Config = &c
	}
	if kv := kvs(4); len(kv) > 0 {
		snap.Initialized = string(kv[0].Value)
	}
	if kv := kvs(5); len(kv) > 0 {
		var r cluster.Request
		if err := json.Unmarshal(kv[0].Value, &r); err != nil {
			return cluster.Snapshot{}, fmt.Errorf("etcd load %s: decode request: %w", kv[0].Key, err)
		}
		snap.Request = &r
	}
	if kv := kvs(6); len(kv) > 0 {
		var st cluster.SyncState
		if err := json.Unmarshal(kv[0].Value, &st); err != nil {
			return cluster.Snapshot{}, fmt.Errorf("etcd load %s: decode sync: %w", kv[0].Key, err)
		}
		snap.Sync = &st
	}
	if kv := kvs(7); len(kv) > 0 {
		var f cluster.FailsafeState
		if err := json.Unmarshal(kv[0].Value, &f); err != nil {
			// Who may take the key depends on it: fail the load.
			return cluster.Snapshot{}, fmt.Errorf("etcd load %s: decode failsafe: %w", kv[0].Key, err)
		}
		snap.Failsafe = &f
	}
	for _, kv := range kvs(8) {
		var f cluster.FenceOutcome
		if err := json.Unmarshal(kv.Value, &f); err != nil || f.Target == "" {
			s.log.Warn("skipping undecodable fence record", "key", string(kv.Key), "err", err)
			continue
		}
		if snap.Fenced == nil {
			snap.Fenced = map[string]cluster.FenceOutcome{}
		}
		snap.Fenced[f.Target] = f
	}
	if kv := kvs(9); len(kv) > 0 {
		var f cluster.FenceOwed
		if err := json.Unmarshal(kv[0].Value, &f); err != nil || f.Target == "" {
			// Whom the next promotion must fence depends on it.
			return cluster.Snapshot{}, fmt.Errorf("etcd load %s: decode the fence owed: %q: %v", kv[0].Key, kv[0].Value, err)
		}
		snap.FenceOwed = &f
	}
	return snap, nil
}

// RecordFence records an operator's fence (hamgrctl fence) in one
// transaction: fenced/<target> (the latest fence of that member, read
// into Snapshot.Fenced) and a history entry of kind fence, keyed by the
// revision of the snapshot the operator acted on (after every epoch
// before it; written only if no entry has that key, so it replaces no
// leadership's). A fence carrying the epoch of
// last_leader is written only if last_leader is still that epoch (it
// returns an error wrapping dcs.ErrEpochChanged otherwise), so a mark
// meant for one leadership never lands on the next.
func (s *Store) RecordFence(ctx context.Context, f cluster.FenceOutcome, rev int64) error {
	if f.Target == "" || strings.Contains(f.Target, "/") || rev <= 0 {
		return fmt.Errorf("etcd record fence: invalid target %q or revision %d", f.Target, rev)
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("etcd record fence of %s: %w", f.Target, err)
	}
	e := cluster.HistoryEntry{Epoch: cluster.Epoch(rev), Kind: cluster.HistoryFence, OldPrimary: f.Target,
		Reason: fmt.Sprintf("%s fenced %s", f.By, f.Target), Fence: &f}
	h, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("etcd record fence of %s: %w", f.Target, err)
	}
	key, hkey := s.key(keyFenced+f.Target), s.key(historyKeyName(e.Epoch))
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(hkey), "=", 0)}
	if f.Epoch > 0 {
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(s.key(keyLastLeader)), "=", int64(f.Epoch)))
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).If(conds...).Then(clientv3.OpPut(key, string(v)), clientv3.OpPut(hkey, string(h))).Commit()
	if err != nil {
		return s.opErr("record fence", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd record fence %s: %w: last_leader is no longer epoch %d, or history entry %d exists; read the cluster again",
			key, dcs.ErrEpochChanged, f.Epoch, rev)
	}
	return nil
}

// PublishMember writes members/<m.Name> as JSON, bound to the session
// lease. It fails when no lease has been granted.
func (s *Store) PublishMember(ctx context.Context, m cluster.Member) error {
	if m.Name == "" || strings.Contains(m.Name, "/") {
		return fmt.Errorf("etcd publish member: invalid name %q", m.Name)
	}
	key := s.key(keyMembers + m.Name)
	lease := clientv3.LeaseID(s.LeaseID())
	if lease == clientv3.NoLease {
		return fmt.Errorf("etcd publish member %s: %w: no lease granted", key, dcs.ErrLeaseLost)
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("etcd publish member %s: %w", key, err)
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.Put(rctx, key, string(v), clientv3.WithLease(lease)); err != nil {
		return s.opErr("publish member", key, err)
	}
	return nil
}

// Initialize claims initialize for name and writes cfg as config in one
// transaction if no one has claimed it. It returns the claimant: name when
// the claim succeeded, the earlier claimant otherwise. An invalid cfg is
// refused before anything is written.
func (s *Store) Initialize(ctx context.Context, name string, cfg cluster.DynamicConfig) (string, error) {
	key := s.key(keyInitialize)
	if name == "" {
		return "", fmt.Errorf("etcd initialize %s: empty name", key)
	}
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("etcd initialize %s: invalid config: %w", key, err)
	}
	cli, err := s.client()
	if err != nil {
		return "", err
	}
	v, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, name), clientv3.OpPut(s.key(keyConfig), string(v))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", s.opErr("initialize", key, err)
	}
	if resp.Succeeded {
		return name, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return "", fmt.Errorf("etcd initialize %s: key claimed but not readable at revision %d", key, resp.Header.Revision)
	}
	return string(kvs[0].Value), nil
}

// ResetBootstrap implements dcs.ConfigStore: it deletes initialize in one
// transaction conditioned on its value being claimant and on leader,
// last_leader and every history/ key having create revision 0 (absent).
// When the condition fails, the same transaction reads those keys to say
// why.
func (s *Store) ResetBootstrap(ctx context.Context, claimant string) (string, error) {
	key := s.key(keyInitialize)
	if claimant == "" {
		return "", fmt.Errorf("etcd reset bootstrap %s: empty claimant", key)
	}
	cli, err := s.client()
	if err != nil {
		return "", err
	}
	leaderKey, lastKey, histKey := s.key(keyLeader), s.key(keyLastLeader), s.key(keyHistory)
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Value(key), "=", claimant),
			clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(lastKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(histKey), "=", 0).WithPrefix()).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key), clientv3.OpGet(leaderKey), clientv3.OpGet(lastKey),
			clientv3.OpGet(histKey, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return "", s.opErr("reset bootstrap", key, err)
	}
	if resp.Succeeded {
		return claimant, nil
	}
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().GetKvs() }
	cur := ""
	if kv := kvs(0); len(kv) > 0 {
		cur = string(kv[0].Value)
	}
	switch {
	case len(kvs(1)) > 0:
		l := s.decodeLeader(kvs(1)[0])
		return cur, fmt.Errorf("etcd reset bootstrap %s: %s leads at epoch %d: %w", key, l.Name, l.Epoch, dcs.ErrLeaderExisted)
	case len(kvs(2)) > 0:
		ll := s.decodeLastLeader(kvs(2)[0])
		return cur, fmt.Errorf("etcd reset bootstrap %s: %s led at epoch %d: %w", key, ll.Name, ll.Epoch, dcs.ErrLeaderExisted)
	case len(kvs(3)) > 0:
		return cur, fmt.Errorf("etcd reset bootstrap %s: history entry %s exists: %w", key, kvs(3)[0].Key, dcs.ErrLeaderExisted)
	case cur == "":
		return "", fmt.Errorf("etcd reset bootstrap %s: %w", key, dcs.ErrNotClaimed)
	}
	return cur, fmt.Errorf("etcd reset bootstrap %s: claimed by %s, not %s: %w", key, cur, claimant, dcs.ErrClaimChanged)
}

// SetConfig validates cfg and replaces the dynamic config. An invalid cfg
// is refused with the validation error and nothing is written.
func (s *Store) SetConfig(ctx context.Context, cfg cluster.DynamicConfig) error {
	key := s.key(keyConfig)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("etcd set config %s: invalid config: %w", key, err)
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.Put(rctx, key, string(v)); err != nil {
		return s.opErr("set config", key, err)
	}
	return nil
}

// updateConfigAttempts bounds UpdateConfig's retries on write conflicts.
const updateConfigAttempts = 5

// UpdateConfig implements dcs.ConfigStore: a read, fn, and a write that
// succeeds only if the config key's mod revision is still the one read.
func (s *Store) UpdateConfig(ctx context.Context, fn func(cur cluster.DynamicConfig) (cluster.DynamicConfig, error)) (cluster.DynamicConfig, error) {
	key := s.key(keyConfig)
	cli, err := s.client()
	if err != nil {
		return cluster.DynamicConfig{}, err
	}
	for attempt := 1; ; attempt++ {
		rctx, cancel := s.reqCtx(ctx)
		resp, err := cli.Get(rctx, key)
		cancel()
		if err != nil {
			return cluster.DynamicConfig{}, s.opErr("read config", key, err)
		}
		if len(resp.Kvs) == 0 {
			return cluster.DynamicConfig{}, fmt.Errorf("etcd update config %s: %w", key, dcs.ErrNoConfig)
		}
		var cur cluster.DynamicConfig
		if err := json.Unmarshal(resp.Kvs[0].Value, &cur); err != nil {
			return cluster.DynamicConfig{}, fmt.Errorf("etcd update config %s: decode stored config: %w", key, err)
		}
		next, err := fn(cur)
		if err != nil {
			return cur, err
		}
		if err := next.Validate(); err != nil {
			return cur, fmt.Errorf("etcd update config %s: invalid config: %w", key, err)
		}
		v, err := json.Marshal(next)
		if err != nil {
			return cur, err
		}
		rctx, cancel = s.reqCtx(ctx)
		tx, err := cli.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(v))).
			Commit()
		cancel()
		if err != nil {
			return cur, s.opErr("update config", key, err)
		}
		if tx.Succeeded {
			return next, nil
		}
		if attempt == updateConfigAttempts {
			return cur, fmt.Errorf("etcd update config %s: changed concurrently %d times in a row; nothing was written, try again", key, attempt)
		}
	}
}

func historyKeyName(e cluster.Epoch) string { return keyHistory + fmt.Sprintf("%020d", int64(e)) }

// AppendHistory writes e under history/<epoch as 20 digits>, replacing an
// entry of the same epoch. The epoch must be positive.
func (s *Store) AppendHistory(ctx context.Context, e cluster.HistoryEntry) error {
	key := s.key(historyKeyName(e.Epoch))
	if e.Epoch <= 0 {
		return fmt.Errorf("etcd append history: epoch %d must be positive", e.Epoch)
	}
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("etcd append history %s: %w", key, err)
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.Put(rctx, key, string(v)); err != nil {
		return s.opErr("append history", key, err)
	}
	return nil
}

// History returns every history entry, oldest epoch first. Undecodable
// entries are skipped with a warning.
func (s *Store) History(ctx context.Context) ([]cluster.HistoryEntry, error) {
	prefix := s.key(keyHistory)
	cli, err := s.client()
	if err != nil {
		return nil, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.opErr("history", prefix, err)
	}
	out := make([]cluster.HistoryEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e cluster.HistoryEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			s.log.Warn("skipping undecodable history entry", "key", string(kv.Key), "err", err)
			continue
		}
		if e.Epoch == 0 { // trust the key when the value lacks it
			n, _ := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), prefix), 10, 64)
			e.Epoch = cluster.Epoch(n)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Epoch < out[j].Epoch })
	return out, nil
}

// Changes watches every key of the cluster and sends (without blocking) on
// the returned channel, buffered 1, after each batch of events, so one value
// may stand for many changes. A failed or cancelled watch is re-created with
// backoff from the last revision seen, so no change is skipped; after a
// compaction it restarts from the present and signals once, since changes
// may have been missed. The channel is closed when ctx ends.
//
// Routine updates of member records (every agent republishes its own each
// loop) do not count: waking every agent on each of them would make every
// agent publish again, a feedback loop. A member record that disappears (its
// lease expired) does count.
func (s *Store) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go s.watchLoop(ctx, ch)
	return ch
}

func (s *Store) watchLoop(ctx context.Context, ch chan<- struct{}) {
	defer close(ch)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	var next int64 // revision to watch from; 0 = now
	backoff := watchBackoffMin
	for ctx.Err() == nil {
		cli, err := s.client()
		if err == nil {
			next, err = s.watchOnce(ctx, cli, next, notify)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = watchBackoffMin
		} else {
			s.log.Warn("watch failed; re-creating", "prefix", s.base, "retry_in", backoff, "err", err)
			// The agent may have slept through changes while the watch was
			// broken: wake it so it re-reads.
			notify()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err != nil {
			backoff = min(backoff*2, watchBackoffMax)
		}
	}
}

// watchOnce runs one watch from revision from (0 = now) until it ends. It
// returns the revision to resume from and why the watch ended (nil when it
// ended without an error).
func (s *Store) watchOnce(ctx context.Context, cli *clientv3.Client, from int64, notify func()) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithProgressNotify()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from))
	}
	next := from
	for wr := range cli.Watch(wctx, s.base, opts...) {
		if wr.CompactRevision != 0 {
			// Events between from and the compaction are gone: resume from
			// now and let the agent re-read everything.
			notify()
			return 0, fmt.Errorf("watch from revision %d: compacted at %d", from, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return next, err
		}
		// A catch-up batch may carry a header revision beyond its last
		// event, so only progress notifications and the creation answer
		// of a watch from now (both sent when the watch is in sync) advance
		// next by the header.
		if (wr.IsProgressNotify() || (wr.Created && from == 0)) && wr.Header.Revision+1 > next {
			next = wr.Header.Revision + 1
		}
		if len(wr.Events) > 0 {
			if rev := wr.Events[len(wr.Events)-1].Kv.ModRevision; rev+1 > next {
				next = rev + 1
			}
			if s.relevant(wr.Events) {
				notify()
			}
			if s.reportsLoss(wr.Events) {
				s.notifyLosses()
			}
		}
	}
	if ctx.Err() != nil {
		return next, nil
	}
	return next, errors.New("watch channel closed")
}

// StreamLosses implements dcs.Watcher: the channel receives after a
// member record reporting a stream loss is put, as the watch of a running
// Changes sees it; it is closed when ctx ends.
func (s *Store) StreamLosses(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.lossMu.Lock()
	if s.losses == nil {
		s.losses = make(map[chan struct{}]struct{})
	}
	s.losses[ch] = struct{}{}
	s.lossMu.Unlock()
	go func() {
		<-ctx.Done()
		s.lossMu.Lock()
		delete(s.losses, ch)
		s.lossMu.Unlock()
		close(ch)
	}()
	return ch
}

// notifyLosses sends (without blocking) on every StreamLosses channel.
func (s *Store) notifyLosses() {
	s.lossMu.Lock()
	defer s.lossMu.Unlock()
	for ch := range s.losses {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// streamingTrue and silenceSeen are how a member record says it streams
// and that it saw its stream fall silent: a record that streams and saw
// no silence reports no loss, and is not decoded.
var (
	streamingTrue = []byte(`"streaming":true`)
	silenceSeen   = []byte(`"silence_seen":true`)
)

// reportsLoss reports whether a batch of events puts a member record that
// reports a stream loss (cluster.Member.ReportsStreamLoss).
func (s *Store) reportsLoss(evs []*clientv3.Event) bool {
	members := s.key(keyMembers)
	for _, ev := range evs {
		if ev.Type != clientv3.EventTypePut || !strings.HasPrefix(string(ev.Kv.Key), members) ||
			bytes.Contains(ev.Kv.Value, streamingTrue) && !bytes.Contains(ev.Kv.Value, silenceSeen) {
			continue
		}
		var m cluster.Member
		if json.Unmarshal(ev.Kv.Value, &m) == nil && m.ReportsStreamLoss() {
			return true
		}
	}
	return false
}

// relevant reports whether a batch of events holds anything but puts of
// member records.
func (s *Store) relevant(evs []*clientv3.Event) bool {
	members := s.key(keyMembers)
	for _, ev := range evs {
		if ev.Type != clientv3.EventTypePut || !strings.HasPrefix(string(ev.Kv.Key), members) {
			return true
		}
	}
	return false
}
