// Package memstore is an in-memory twin of dcs.Store for tests and the
// simulator (package ha/hasim): one Cluster holds the keyspace, and each
// Client is one agent's connection to it, with its own session lease. It
// follows dcs/etcd's semantics — revisions that grow with every write, the
// epoch as the leader key's create revision, last_leader's epoch as its mod
// revision, keys bound to leases — but leases expire only when the caller
// calls Expire, on the clock it was given, so a test decides when time
// passes. Values are stored as JSON, as etcd stores them, so no caller ever
// shares memory with the store.
//
// Never for production: nothing is persisted, nothing is replicated, and it
// is not safe against a crash of the process that holds it.
package memstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
)

// ErrUnreachable is what every call of a Client cut off by SetReachable
// returns, as a partitioned etcd client's calls fail.
var ErrUnreachable = errors.New("memstore: store unreachable (client cut off)")

// Clock is the source of time for lease expiry.
type Clock func() time.Time

// Cluster is one store: the keyspace of one hamgr cluster. It is safe for
// concurrent use.
type Cluster struct {
	now Clock

	mu         sync.Mutex
	rev        int64
	wakeRev    int64 // revision of the last change a watcher wakes for
	nextLease  int64
	leases     map[int64]*lease
	leader     *leaderKV
	lastLeader []byte
	lastMod    int64
	members    map[string]memberKV
	config     []byte
	configMod  int64
	initialize string
	request    []byte
	sync       []byte
	failsafe   []byte
	fenceOwed  []byte
	history    map[cluster.Epoch][]byte
	watchers   []chan struct{}
	lossRev    int64 // revision of the last member record reporting a stream loss
	lossChans  []chan struct{}
}

type lease struct {
	id      int64
	ttl     time.Duration
	expires time.Time
	owner   *Client
}

type leaderKV struct {
	name   string
	create int64
	lease  int64
	// promotion is the JSON of the promotion record in the key's value
	// (nil: none).
	promotion []byte
}

// leader decodes the key as dcs/etcd does.
func (l *leaderKV) leader() *cluster.Leader {
	out := &cluster.Leader{Name: l.name, Epoch: cluster.Epoch(l.create), Lease: l.lease}
	if l.promotion != nil {
		var p cluster.Promotion
		mustUnmarshal(l.promotion, &p)
		out.Promotion = &p
	}
	return out
}

type memberKV struct {
	value []byte
	lease int64
	mod   int64 // revision of the last write
}

// New returns an empty store whose leases expire on now.
func New(now Clock) *Cluster {
	return &Cluster{now: now, leases: map[int64]*lease{}, members: map[string]memberKV{},
		history: map[cluster.Epoch][]byte{}}
}

// Client returns a new connection to the store named name (for messages
// and for Expired), with no lease yet.
func (c *Cluster) Client(name string) *Client {
	return &Client{c: c, name: name, reachable: true}
}

// Revision is the store's current revision.
func (c *Cluster) Revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// WakeRevision is the revision of the last change that dcs/etcd's Changes
// wakes an agent for: anything but a routine update of a member record.
func (c *Cluster) WakeRevision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wakeRev
}

// StreamLossRevision is the revision of the last member record written
// that reports a stream loss (cluster.Member.ReportsStreamLoss): what
// dcs/etcd's StreamLosses signals (0: none yet).
func (c *Cluster) StreamLossRevision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lossRev
}

// Expired is a lease Expire deleted.
type Expired struct {
	ID    int64
	Owner *Client
	// Expires is when the lease ran out.
	Expires time.Time
}

// Expire deletes every lease whose TTL has run out at the clock's time,
// with every key bound to it, and reports them in lease id order.
func (c *Cluster) Expire() []Expired {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var out []Expired
	for _, id := range c.leaseIDs() {
		l := c.leases[id]
		if now.Before(l.expires) {
			continue
		}
		out = append(out, Expired{ID: id, Owner: l.owner, Expires: l.expires})
		c.revokeLocked(id)
	}
	return out
}

// RevokeAll deletes every lease at once, with the keys bound to them, as
// etcd did when it came back from an outage in which every lease ran out,
// and returns their ids.
func (c *Cluster) RevokeAll() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := c.leaseIDs()
	for _, id := range ids {
		c.revokeLocked(id)
	}
	return ids
}

// RenewAll gives every lease its full TTL again from the clock's time, as
// etcd does when a quorum returns: its newly elected leader extends every
// lease (the lessor's Promote), so no lease expires for the outage's sake.
func (c *Cluster) RenewAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, l := range c.leases {
		l.expires = now.Add(l.ttl)
	}
}

// LeaseAlive reports whether lease id exists.
func (c *Cluster) LeaseAlive(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.leases[id]
	return ok
}

// Snapshot reads the store as Client.Load does, without a client.
func (c *Cluster) Snapshot() cluster.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked()
}

// HistoryEntries returns every history entry, oldest epoch first.
func (c *Cluster) HistoryEntries() []cluster.HistoryEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.historyLocked()
}

// PutRequest writes r as the pending request if none is pending, as
// hamgrctl does (without its checks); it returns dcs.ErrRequestPending
// otherwise.
func (c *Cluster) PutRequest(r cluster.Request) error {
	return c.putRequest(r, true)
}

// DeleteRequest deletes the pending request, if any.
func (c *Cluster) DeleteRequest() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.request != nil {
		c.request = nil
		c.bump(true)
	}
}

// SetDynamicConfig replaces the dynamic config unchecked (for tests).
func (c *Cluster) SetDynamicConfig(cfg cluster.DynamicConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.config = mustJSON(cfg)
	c.bump(true)
	c.configMod = c.rev
}

func (c *Cluster) leaseIDs() []int64 {
	ids := make([]int64, 0, len(c.leases))
	for id := range c.leases {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// bump advances the revision; wake says whether a watcher would wake.
func (c *Cluster) bump(wake bool) {
	c.rev++
	if wake {
		c.wakeRev = c.rev
		notify(c.watchers)
	}
}

func (c *Cluster) revokeLocked(id int64) {
	delete(c.leases, id)
	changed := false
	if c.leader != nil && c.leader.lease == id {
		c.leader = nil
		changed = true
	}
	for name, m := range c.members {
		if m.lease == id {
			delete(c.members, name)
			changed = true
		}
	}
	if changed {
		c.bump(true)
	}
}

func (c *Cluster) snapshotLocked() cluster.Snapshot {
	s := cluster.Snapshot{Revision: c.rev, Initialized: c.initialize}
	if l := c.leader; l != nil {
		s.Leader = l.leader()
	}
	if c.lastLeader != nil {
		var ll cluster.LastLeader
		mustUnmarshal(c.lastLeader, &ll)
		ll.Epoch = cluster.Epoch(c.lastMod)
		s.LastLeader = &ll
	}
	for _, m := range c.members {
		var rec cluster.Member
		mustUnmarshal(m.value, &rec)
		rec.Revision = m.mod
		s.Members = append(s.Members, rec)
	}
	sort.Slice(s.Members, func(i, j int) bool { return s.Members[i].Name < s.Members[j].Name })
	if c.config != nil {
		var cfg cluster.DynamicConfig
		mustUnmarshal(c.config, &cfg)
		s.Config = &cfg
	}
	if c.request != nil {
		var r cluster.Request
		mustUnmarshal(c.request, &r)
		s.Request = &r
	}
	if c.sync != nil {
		var st cluster.SyncState
		mustUnmarshal(c.sync, &st)
		s.Sync = &st
	}
	if c.failsafe != nil {
		var f cluster.FailsafeState
		mustUnmarshal(c.failsafe, &f)
		s.Failsafe = &f
	}
	if c.fenceOwed != nil {
		var f cluster.FenceOwed
		mustUnmarshal(c.fenceOwed, &f)
		s.FenceOwed = &f
	}
	return s
}

// setFenceOwedLocked is what taking the key for promotion p by who after
// epoch lost does to the fence owed (dcs.LeaderLease.AcquireLeader).
func (c *Cluster) setFenceOwedLocked(who string, lost cluster.Epoch, p *cluster.Promotion) {
	switch {
	case p == nil:
	case p.Has(cluster.StepFence) || p.OldPrimary == "":
		c.fenceOwed = nil
	case p.OldEpoch != 0:
		c.fenceOwed = mustJSON(cluster.FenceOwed{Target: p.OldPrimary, Lost: p.OldEpoch, By: who, Evidence: p.Evidence})
	default:
		c.fenceOwed = mustJSON(cluster.FenceOwed{Target: p.OldPrimary, Lost: lost, By: who, Evidence: p.Evidence})
	}
}

func (c *Cluster) historyLocked() []cluster.HistoryEntry {
	out := make([]cluster.HistoryEntry, 0, len(c.history))
	for _, v := range c.history {
		var e cluster.HistoryEntry
		mustUnmarshal(v, &e)
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Epoch < out[j].Epoch })
	return out
}

func (c *Cluster) putRequest(r cluster.Request, create bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case create && c.request != nil:
		return fmt.Errorf("memstore create request: %w", dcs.ErrRequestPending)
	case !create && c.request == nil:
		return errors.New("memstore update request: no request is pending")
	}
	c.request = mustJSON(r)
	c.bump(true)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("memstore: encode: " + err.Error())
	}
	return b
}

func mustUnmarshal(b []byte, v any) {
	if err := json.Unmarshal(b, v); err != nil {
		panic("memstore: decode: " + err.Error())
	}
}

// Client is one agent's connection to a Cluster: a dcs.Store with its own
// session lease. It is safe for concurrent use.
type Client struct {
	c    *Cluster
	name string

	mu        sync.Mutex
	lease     int64
	reachable bool
}

var _ dcs.Store = (*Client)(nil)

// Name is the name the client was created with.
func (k *Client) Name() string { return k.name }

// SetReachable cuts the client off from the store (false: every call
// fails with ErrUnreachable, as in a network partition) or reconnects it.
func (k *Client) SetReachable(ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reachable = ok
}

// check fails when the client is cut off or ctx is done.
func (k *Client) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.reachable {
		return ErrUnreachable
	}
	return nil
}

// Grant creates a new lease of ttl and makes it the session lease,
// revoking the previous one.
func (k *Client) Grant(ctx context.Context, ttl time.Duration) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore grant lease: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ttl = max(ttl.Round(time.Second), time.Second)
	c.nextLease++
	id := c.nextLease
	c.leases[id] = &lease{id: id, ttl: ttl, expires: c.now().Add(ttl), owner: k}
	k.mu.Lock()
	old := k.lease
	k.lease = id
	k.mu.Unlock()
	if _, ok := c.leases[old]; ok && old != 0 {
		c.revokeLocked(old)
	}
	return nil
}

// KeepAlive renews the session lease once.
func (k *Client) KeepAlive(ctx context.Context) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore keepalive: %w", err)
	}
	id := k.LeaseID()
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.leases[id]
	if !ok || id == 0 {
		return fmt.Errorf("memstore keepalive lease %d: %w", id, dcs.ErrLeaseLost)
	}
	l.expires = c.now().Add(l.ttl)
	return nil
}

// LeaseID is the session lease (0: none).
func (k *Client) LeaseID() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease
}

// Load reads the whole cluster at one revision.
func (k *Client) Load(ctx context.Context) (cluster.Snapshot, error) {
	if err := k.check(ctx); err != nil {
		return cluster.Snapshot{}, fmt.Errorf("memstore load: %w", err)
	}
	return k.c.Snapshot(), nil
}

// liveLease returns the session lease if it exists on the store.
func (k *Client) liveLease(op string) (int64, error) {
	id := k.LeaseID()
	if _, ok := k.c.leases[id]; !ok || id == 0 {
		return 0, fmt.Errorf("memstore %s: lease %d: %w", op, id, dcs.ErrLeaseLost)
	}
	return id, nil
}

// AcquireLeader creates the leader key for who if it is absent, bound to
// the session lease, and writes last_leader in the same transaction.
func (k *Client) AcquireLeader(ctx context.Context, who cluster.LastLeader, after cluster.Epoch, p *cluster.Promotion) (cluster.Leader, bool, error) {
	if err := k.check(ctx); err != nil {
		return cluster.Leader{}, false, fmt.Errorf("memstore acquire leader: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := k.liveLease("acquire leader")
	if err != nil {
		return cluster.Leader{}, false, err
	}
	if l := c.leader; l != nil {
		return *l.leader(), false, nil
	}
	if c.lastMod != int64(after) {
		return cluster.Leader{}, false, fmt.Errorf("memstore acquire leader: decided after epoch %d, last leader now at epoch %d: %w",
			after, c.lastMod, dcs.ErrEpochChanged)
	}
	c.bump(true)
	c.leader = &leaderKV{name: who.Name, create: c.rev, lease: id}
	if p != nil {
		c.leader.promotion = mustJSON(*p)
	}
	c.setFenceOwedLocked(who.Name, after, p)
	who.Epoch, who.Since = 0, c.now().UTC()
	c.lastLeader, c.lastMod = mustJSON(who), c.rev
	return *c.leader.leader(), true, nil
}

// TakeOverLeader deletes the leader key only while it is old's (same
// epoch and lease) and old's member record is still at revision memberRev
// (absent when 0), then creates it for who as AcquireLeader does.
func (k *Client) TakeOverLeader(ctx context.Context, who cluster.LastLeader, old cluster.Leader, memberRev int64, p *cluster.Promotion) (cluster.Leader, bool, error) {
	if err := k.check(ctx); err != nil {
		return cluster.Leader{}, false, fmt.Errorf("memstore take over leader: %w", err)
	}
	c := k.c
	c.mu.Lock()
	l := c.leader
	m, ok := c.members[old.Name]
	rev := int64(0)
	if ok {
		rev = m.mod
	}
	if l == nil || l.create != int64(old.Epoch) || l.lease != old.Lease || rev != memberRev {
		c.mu.Unlock()
		return cluster.Leader{}, false, fmt.Errorf("memstore take over leader from %s (epoch %d, lease %d, member record at revision %d): %w",
			old.Name, old.Epoch, old.Lease, memberRev, dcs.ErrTakeOverRefused)
	}
	c.leader = nil
	c.bump(true)
	c.mu.Unlock()
	return k.AcquireLeader(ctx, who, old.Epoch, p)
}

// RevokeLease revokes lease id with every key bound to it (a lease
// already gone is not an error).
func (k *Client) RevokeLease(ctx context.Context, id int64) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore revoke lease: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.leases[id]; ok {
		c.revokeLocked(id)
	}
	return nil
}

// LeaseTimeToLive reads lease id's time left at the clock's time, rounded
// down to a whole second as etcd reports it, and its granted TTL.
func (k *Client) LeaseTimeToLive(ctx context.Context, id int64) (dcs.LeaseTTL, error) {
	if err := k.check(ctx); err != nil {
		return dcs.LeaseTTL{}, fmt.Errorf("memstore lease time to live: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.leases[id]
	if !ok {
		return dcs.LeaseTTL{}, fmt.Errorf("memstore lease %x time to live: %w: it no longer exists", id, dcs.ErrLeaseLost)
	}
	left := max(l.expires.Sub(c.now()), 0)
	return dcs.LeaseTTL{Remaining: left.Truncate(time.Second), Granted: l.ttl}, nil
}

// UpdatePromotion replaces the promotion record in the leader key while l
// still holds it.
func (k *Client) UpdatePromotion(ctx context.Context, l cluster.Leader, p cluster.Promotion) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore update promotion: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == nil || c.leader.create != int64(l.Epoch) {
		return fmt.Errorf("memstore update promotion: %s no longer holds the leader key of epoch %d", l.Name, l.Epoch)
	}
	c.leader.promotion = mustJSON(p)
	if p.Has(cluster.StepFence) {
		c.fenceOwed = nil
	}
	c.bump(true)
	return nil
}

// ReleaseLeader deletes the leader key if it is still l's epoch.
func (k *Client) ReleaseLeader(ctx context.Context, l cluster.Leader) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore release leader: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != nil && c.leader.create == int64(l.Epoch) {
		c.leader = nil
		c.bump(true)
	}
	return nil
}

// PublishMember writes members/<m.Name>, bound to the session lease.
func (k *Client) PublishMember(ctx context.Context, m cluster.Member) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore publish member: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := k.liveLease("publish member " + m.Name)
	if err != nil {
		return err
	}
	_, existed := c.members[m.Name]
	c.bump(!existed)
	c.members[m.Name] = memberKV{value: mustJSON(m), lease: id, mod: c.rev}
	if m.ReportsStreamLoss() {
		c.lossRev = c.rev
		notify(c.lossChans)
	}
	return nil
}

// Initialize claims the bootstrap for name and writes cfg, if unclaimed.
func (k *Client) Initialize(ctx context.Context, name string, cfg cluster.DynamicConfig) (string, error) {
	if err := k.check(ctx); err != nil {
		return "", fmt.Errorf("memstore initialize: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("memstore initialize: invalid config: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initialize != "" {
		return c.initialize, nil
	}
	c.initialize = name
	c.config = mustJSON(cfg)
	c.bump(true)
	c.configMod = c.rev
	return name, nil
}

// ResetBootstrap releases claimant's bootstrap claim if nobody has ever
// led: no leader, no last_leader, no history entry.
func (k *Client) ResetBootstrap(ctx context.Context, claimant string) (string, error) {
	if err := k.check(ctx); err != nil {
		return "", fmt.Errorf("memstore reset bootstrap: %w", err)
	}
	if claimant == "" {
		return "", errors.New("memstore reset bootstrap: empty claimant")
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.initialize
	switch {
	case c.leader != nil:
		return cur, fmt.Errorf("memstore reset bootstrap: %s leads at epoch %d: %w", c.leader.name, c.leader.create, dcs.ErrLeaderExisted)
	case c.lastLeader != nil:
		return cur, fmt.Errorf("memstore reset bootstrap: a leader was elected at epoch %d: %w", c.lastMod, dcs.ErrLeaderExisted)
	case len(c.history) > 0:
		return cur, fmt.Errorf("memstore reset bootstrap: %d history entries exist: %w", len(c.history), dcs.ErrLeaderExisted)
	case cur == "":
		return "", fmt.Errorf("memstore reset bootstrap: %w", dcs.ErrNotClaimed)
	case cur != claimant:
		return cur, fmt.Errorf("memstore reset bootstrap: claimed by %s, not %s: %w", cur, claimant, dcs.ErrClaimChanged)
	}
	c.initialize = ""
	c.bump(true)
	return claimant, nil
}

// SetConfig replaces the dynamic config.
func (k *Client) SetConfig(ctx context.Context, cfg cluster.DynamicConfig) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore set config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("memstore set config: invalid config: %w", err)
	}
	k.c.SetDynamicConfig(cfg)
	return nil
}

// UpdateConfig applies fn to the dynamic config atomically (the store's
// lock stands for etcd's compare-and-swap).
func (k *Client) UpdateConfig(ctx context.Context, fn func(cur cluster.DynamicConfig) (cluster.DynamicConfig, error)) (cluster.DynamicConfig, error) {
	if err := k.check(ctx); err != nil {
		return cluster.DynamicConfig{}, fmt.Errorf("memstore update config: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.config == nil {
		return cluster.DynamicConfig{}, fmt.Errorf("memstore update config: %w", dcs.ErrNoConfig)
	}
	var cur cluster.DynamicConfig
	mustUnmarshal(c.config, &cur)
	next, err := fn(cur)
	if err != nil {
		return cur, err
	}
	if err := next.Validate(); err != nil {
		return cur, fmt.Errorf("memstore update config: invalid config: %w", err)
	}
	c.config = mustJSON(next)
	c.bump(true)
	c.configMod = c.rev
	return next, nil
}

// AppendHistory writes e under its epoch, replacing an entry of the same
// epoch.
func (k *Client) AppendHistory(ctx context.Context, e cluster.HistoryEntry) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore append history: %w", err)
	}
	if e.Epoch <= 0 {
		return fmt.Errorf("memstore append history: epoch %d must be positive", e.Epoch)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history[e.Epoch] = mustJSON(e)
	c.bump(true)
	return nil
}

// History returns every history entry, oldest epoch first.
func (k *Client) History(ctx context.Context) ([]cluster.HistoryEntry, error) {
	if err := k.check(ctx); err != nil {
		return nil, fmt.Errorf("memstore history: %w", err)
	}
	return k.c.HistoryEntries(), nil
}

// CreateRequest writes r if no request is pending.
func (k *Client) CreateRequest(ctx context.Context, r cluster.Request) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore create request: %w", err)
	}
	return k.c.putRequest(r, true)
}

// UpdateRequest replaces the pending request; it fails if none is pending.
func (k *Client) UpdateRequest(ctx context.Context, r cluster.Request) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore update request: %w", err)
	}
	return k.c.putRequest(r, false)
}

// ClearRequest deletes the pending request, if any.
func (k *Client) ClearRequest(ctx context.Context) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore clear request: %w", err)
	}
	k.c.DeleteRequest()
	return nil
}

// SetSync writes the synchronous standby record while l holds the key.
func (k *Client) SetSync(ctx context.Context, l cluster.Leader, rec cluster.SyncState) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore set sync: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == nil || c.leader.create != int64(l.Epoch) {
		return fmt.Errorf("memstore set sync: %s no longer holds the leader key of epoch %d", l.Name, l.Epoch)
	}
	rec.Leader, rec.Epoch = l.Name, l.Epoch
	if rec.Members == nil {
		rec.Members = []string{}
	}
	c.sync = mustJSON(rec)
	c.bump(true)
	return nil
}

// SetFailsafe writes (nil rec: deletes) the failsafe record while l holds
// the key.
func (k *Client) SetFailsafe(ctx context.Context, l cluster.Leader, rec *cluster.FailsafeState) error {
	if err := k.check(ctx); err != nil {
		return fmt.Errorf("memstore set failsafe: %w", err)
	}
	c := k.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == nil || c.leader.create != int64(l.Epoch) {
		return fmt.Errorf("memstore set failsafe: %s no longer holds the leader key of epoch %d", l.Name, l.Epoch)
	}
	c.failsafe = nil
	if rec != nil {
		r := *rec
		r.Leader, r.Epoch = l.Name, l.Epoch
		c.failsafe = mustJSON(r)
	}
	c.bump(true)
	return nil
}

// Changes returns a channel that receives after every change a dcs/etcd
// watch would wake the agent for; it closes when ctx ends.
func (k *Client) Changes(ctx context.Context) <-chan struct{} {
	return k.c.subscribe(ctx, &k.c.watchers)
}

// StreamLosses implements dcs.Watcher: the channel receives after a
// member record reporting a stream loss is written (by any client; unlike
// dcs/etcd's, whether a Changes channel is open does not matter); it
// closes when ctx ends.
func (k *Client) StreamLosses(ctx context.Context) <-chan struct{} {
	return k.c.subscribe(ctx, &k.c.lossChans)
}

// subscribe adds a channel to list (guarded by mu; notify sends on them)
// and returns one that receives, coalesced, what it receives, until ctx
// ends: then the channel leaves list and the returned one closes.
func (c *Cluster) subscribe(ctx context.Context, list *[]chan struct{}) <-chan struct{} {
	ch := make(chan struct{}, 1)
	out := make(chan struct{}, 1)
	c.mu.Lock()
	*list = append(*list, ch)
	c.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			c.mu.Lock()
			*list = slices.DeleteFunc(*list, func(x chan struct{}) bool { return x == ch })
			c.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// notify sends, without blocking, on every channel of list (mu held).
func notify(list []chan struct{}) {
	for _, w := range list {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Close does nothing: the store outlives its clients.
func (k *Client) Close() error { return nil }
