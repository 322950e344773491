package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Defaults applied by Start.
const (
	// DefaultClientURL listens for clients on a random port of 127.0.0.1.
	DefaultClientURL = "http://127.0.0.1:0"
	// DefaultPeerURL listens for peers on a random port of 127.0.0.1.
	DefaultPeerURL = "http://127.0.0.1:0"
	// DefaultStartTimeout bounds Start when its context has no deadline.
	DefaultStartTimeout = 30 * time.Second
)

// Options configures the embedded server.
type Options struct {
	// Dir is the data directory. When empty, a temporary directory is
	// created and removed by Close.
	Dir string
	// ClientURL is the client listen (and advertise) URL; default
	// "http://127.0.0.1:0", i.e. a random port.
	ClientURL string
	// PeerURL is the peer listen (and advertise) URL; default
	// "http://127.0.0.1:0".
	PeerURL string
	// FastElection uses a 10ms tick and 100ms election timeout so a fresh
	// member elects itself in about 0.1s (tests, demo). It also lowers the
	// minimum lease TTL etcd enforces.
	FastElection bool
}

// Server is a running embedded etcd member.
type Server struct {
	e         *embed.Etcd
	endpoints []string
	scheme    string // of the client URL
	tmpDir    string // removed by Close when non-empty
	closeOnce sync.Once
}

// Start starts a single-member etcd server and waits until it is ready to
// serve, for at most ctx's deadline (DefaultStartTimeout when ctx has none).
// On failure everything started is stopped.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := launch(opts, member{name: "hamgr"})
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// member names one member of a (possibly multi-member) etcd cluster.
type member struct {
	name string
	// initialCluster is etcd's --initial-cluster ("name=peerURL,...");
	// empty for a cluster of this member alone.
	initialCluster string
	// tickMs and electionMs, when set, override FastElection's.
	tickMs, electionMs uint
}

// launch starts the etcd member without waiting for it to serve: the
// members of a multi-member cluster only become ready together.
func launch(opts Options, m member) (*Server, error) {
	if opts.ClientURL == "" {
		opts.ClientURL = DefaultClientURL
	}
	if opts.PeerURL == "" {
		opts.PeerURL = DefaultPeerURL
	}
	cu, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL %q: %w", opts.ClientURL, err)
	}
	pu, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL %q: %w", opts.PeerURL, err)
	}
	if cu.Scheme != "http" || pu.Scheme != "http" {
		return nil, fmt.Errorf("embedded etcd: only http:// URLs are supported (client %q, peer %q)", opts.ClientURL, opts.PeerURL)
	}
	s := &Server{scheme: cu.Scheme}
	dir := opts.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "hamgr-etcd-")
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: data dir: %w", err)
		}
		s.tmpDir = dir
	}

	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = m.initialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	cfg.LogLevel = "fatal" // "error" still prints harmless lines on Close
	if opts.FastElection {
		cfg.TickMs = 10
		cfg.ElectionMs = 100
	}
	if m.tickMs > 0 {
		cfg.TickMs, cfg.ElectionMs = m.tickMs, m.electionMs
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.removeTmp()
		return nil, fmt.Errorf("embedded etcd: start %s in %s: %w", m.name, dir, err)
	}
	s.e = e
	return s, nil
}

// waitReady waits until the launched member serves clients, for at most
// ctx's deadline (DefaultStartTimeout when ctx has none), and records its
// endpoints. On failure the member is closed.
func (s *Server) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	e := s.e
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		s.Close()
		return fmt.Errorf("embedded etcd: failed while starting: %w", err)
	case <-ctx.Done():
		e.Server.HardStop()
		s.Close()
		return fmt.Errorf("embedded etcd: not ready: %w", ctx.Err())
	}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, s.scheme+"://"+l.Addr().String())
	}
	if len(s.endpoints) == 0 {
		s.Close()
		return errors.New("embedded etcd: no client listener")
	}
	return nil
}

// Endpoints returns the client URLs with the ports actually bound, e.g.
// ["http://127.0.0.1:39113"].
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Close stops the server and, if Start created the data directory, removes
// it. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.e != nil {
			s.e.Close()
		}
		s.removeTmp()
	})
}

func (s *Server) removeTmp() {
	if s.tmpDir != "" && strings.Contains(s.tmpDir, "hamgr-etcd-") {
		_ = os.RemoveAll(s.tmpDir)
	}
}
