package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/api"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/db/mysql"
	"github.com/hamgr/hamgr/db/postgres"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/metrics"
	"github.com/hamgr/hamgr/watchdog"
)

func agentCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the HA agent beside one PostgreSQL server",
		Long: `Run the HA agent beside one PostgreSQL server.

The agent starts, stops, promotes and repoints the local PostgreSQL as the
cluster needs, holds or watches the leader key in etcd, and serves the HTTP
health endpoints. A clean stop (SIGTERM, SIGINT) does what on_stop says:
by default a primary hands over to the best replica first, then PostgreSQL
stops. With on_stop: leave-running (or while the cluster is paused)
PostgreSQL keeps running and a restarted agent adopts it. See
examples/hamgr.yml for every setting.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("--config FILE is required (see examples/hamgr.yml)")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if err := cfg.CheckPaths(); err != nil {
				return err
			}
			log := newLogger(cfg.Log)
			if err := cfg.CheckSecrets(log); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, cfg, log)
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "path of the agent's YAML config file")
	return c
}

func newLogger(l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// runAgent wires the configured parts together and runs until ctx ends.
func runAgent(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tuneGC()
	tuneMaxProcs()
	stopHeapSampling()
	store, closeStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()

	dbe, err := openDatabase(cfg, log)
	if err != nil {
		return err
	}
	defer dbe.db.Close()

	pubs, err := publishers(cfg, log)
	if err != nil {
		return err
	}
	fencer, err := buildFencer(cfg.Fencing, log)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	observers, tags, err := lifecycle(ctx, cfg, log, watchdog.Open, stop)
	if err != nil {
		return err
	}
	mx := metrics.New(cfg.Cluster, cfg.Name)
	// Operator endpoints and POST /failsafe (bearer token from
	// api.token_file) and /metrics.
	token, err := readAPIToken(cfg.API, log)
	if err != nil {
		return err
	}
	peers, err := failsafePeers(cfg.API, token)
	if err != nil {
		return err
	}
	linkClient, err := apiClient(cfg.API)
	if err != nil {
		return err
	}
	ag := agent.New(agent.Options{
		Cluster: cfg.Cluster, Name: cfg.Name, Tags: tags, Config: cfg.Dynamic(),
		DB: dbe.db, Store: store, APIURL: cfg.API.Advertise, ConnHost: dbe.host, ConnPort: dbe.port,
		Logger: log, Metrics: mx, Engine: dbe.caps,
		OnStop: onStop(cfg.OnStop), Publishers: pubs, Fencer: fencer, Observers: observers,
		PublishTimeout: time.Duration(cfg.Discovery.Timeout), PrePromote: prePromoter(pubs), Peers: peers,
		Link: api.AliveClient{HTTP: linkClient},
	})
	h := api.NewHandler(ag, api.Options{
		Logger: log, Operator: api.NewOperator(store), Token: token, Metrics: mx.Handler(), Failsafe: ag,
	})
	srv, err := listenAPI(cfg.API, h)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(); err != nil {
			// The agent serves its API for its whole life: the other
			// agents take a refused API port (with a refused database
			// port) as proof that this agent is gone (the failover
			// before the ttl), so an agent without its API stops.
			log.Error("api server stopped; stopping the agent", "err", err)
			stop(fmt.Errorf("api server: %w", err))
		}
	}()
	log.Info("agent started", "cluster", cfg.Cluster, "api", srv.Addr(), dbe.engine, fmt.Sprintf("%s:%d", dbe.host, dbe.port))
	// Once start-up is over (see releaseStartupPages).
	release := time.AfterFunc(startupPagesDelay, func() {
		releaseStartupPages(log)
		// And the heap start-up needed: the runtime otherwise returns
		// free heap pages to the OS only gradually.
		debug.FreeOSMemory()
	})
	defer release.Stop()
	err = ag.Run(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	log.Info("agent stopped", "on_stop", cfg.OnStop)
	if cause := context.Cause(ctx); errors.Is(cause, errWatchdogRequired) {
		return &exitError{code: exitWatchdogRequired, err: cause}
	}
	return err
}

// listenAPI listens on api.listen, with TLS when api.tls is set.
func listenAPI(a config.API, h http.Handler) (*api.Server, error) {
	if !a.TLS.Enabled() {
		srv, err := api.Listen(a.Listen, h)
		if err != nil {
			return nil, fmt.Errorf("api.listen %s: %w", a.Listen, err)
		}
		return srv, nil
	}
	tc, err := a.TLS.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	srv, err := api.ListenTLS(a.Listen, h, tc)
	if err != nil {
		return nil, fmt.Errorf("api.listen %s: %w", a.Listen, err)
	}
	return srv, nil
}

// onStop maps the config file's on_stop to the agent's mode.
func onStop(s string) agent.OnStop {
	switch s {
	case config.OnStopStop:
		return agent.OnStopStop
	case config.OnStopLeaveRunning:
		return agent.OnStopLeaveRunning
	}
	return agent.OnStopHandover
}

// openStore starts the embedded etcd when configured, creates the store
// client with the etcd password and TLS, and checks every endpoint once
// (checkEtcd). The returned func closes the store and the embedded etcd.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*etcd.Store, func(), error) {
	endpoints := cfg.Etcd.Endpoints
	closeEmbedded := func() {}
	if e := cfg.Etcd.Embedded; e != nil {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		eps, closeSrv, err := startEmbeddedEtcd(sctx, e)
		cancel()
		if err != nil {
			return nil, nil, err
		}
		closeEmbedded = closeSrv
		endpoints = eps
		log.Warn("using an embedded single-member etcd: fine for demos, not highly available", "endpoints", endpoints)
	}
	etcdPass, err := cfg.Etcd.Password()
	if err != nil {
		closeEmbedded()
		return nil, nil, err
	}
	etcdTLS, err := cfg.Etcd.TLS.ClientConfig()
	if err != nil {
		closeEmbedded()
		return nil, nil, fmt.Errorf("etcd.tls: %w", err)
	}
	store, err := etcd.New(etcd.Options{
		Endpoints: endpoints, Prefix: cfg.Etcd.Prefix, Cluster: cfg.Cluster,
		DialTimeout: time.Duration(cfg.Etcd.DialTimeout), Username: cfg.Etcd.Username, Password: etcdPass,
		TLS: etcdTLS, Logger: log,
	})
	if err != nil {
		closeEmbedded()
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	checkEtcd(ctx, store, endpoints, log)
	return store, func() { store.Close(); closeEmbedded() }, nil
}

// checkEtcd dials every etcd endpoint once (bounded by etcd.dial_timeout)
// and logs, for each that cannot be reached, why. The agent starts all the
// same: etcd may come up later, and every failing request says the same.
func checkEtcd(ctx context.Context, store *etcd.Store, endpoints []string, log *slog.Logger) {
	err := store.CheckEndpoints(ctx)
	if err == nil {
		log.Info("etcd endpoints reachable", "endpoints", endpoints)
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		log.Error("etcd endpoint unreachable at start; the agent keeps retrying", "err", e)
	}
}

// readAPIToken returns the bearer token of the API's operator endpoints
// (config.API.Token: a file other users may read or write is refused, an
// empty one too); "" (endpoints disabled) when no file is configured. The
// token itself is never logged; CheckSecrets has already warned about a
// group-readable file.
func readAPIToken(a config.API, log *slog.Logger) (string, error) {
	if a.TokenFile == "" {
		log.Info("api operator endpoints disabled: api.token_file is not set")
		return "", nil
	}
	token, err := a.Token()
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(a.Listen)
	if ip := net.ParseIP(host); !a.TLS.Enabled() && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Warn("api.token_file is set but the API serves plain HTTP: the bearer token crosses the network unencrypted; configure api.tls", "listen", a.Listen)
	}
	return token, nil
}

// database is the local database engine the agent runs.
type database struct {
	db     db.Database
	caps   db.Capabilities
	engine string // "postgresql" or "mysql", for logs
	host   string // how other members reach it
	port   int
}

// openDatabase builds the adapter of the configured engine: PostgreSQL,
// or MariaDB/MySQL when the mysql section is set.
func openDatabase(cfg *config.Config, log *slog.Logger) (database, error) {
	if m := cfg.MySQL; m != nil {
		superPass, err := m.MySQLSuperuserPassword()
		if err != nil {
			return database{}, err
		}
		replPass, err := m.MySQLReplicationPassword()
		if err != nil {
			return database{}, err
		}
		my, err := mysql.New(mysql.Options{
			Name: cfg.Name, DataDir: m.DataDir, ServerBin: m.ServerBin, ToolDir: m.ToolDir,
			ListenHost: m.ListenHost, Port: m.Port, Socket: m.Socket, ServerID: m.ServerID, LogFile: m.LogFile,
			Superuser: m.Superuser.Username, SuperuserPassword: superPass,
			Replication: m.Replication.Username, ReplicationPassword: replPass,
			Parameters: m.Parameters, Logger: log,
		})
		if err != nil {
			return database{}, fmt.Errorf("mysql: %w", err)
		}
		var allowed db.RejoinMethods
		if m.RecloneOnDivergence {
			allowed |= db.RejoinReclone
		}
		return database{db: my, caps: mysql.Capabilities(allowed), engine: "mysql", host: m.ConnectHost, port: m.Port}, nil
	}
	pgc := cfg.PostgreSQL
	superPass, err := pgc.SuperuserPassword()
	if err != nil {
		return database{}, err
	}
	replPass, err := pgc.ReplicationPassword()
	if err != nil {
		return database{}, err
	}
	pg, err := postgres.New(postgres.Options{
		Name: cfg.Name, DataDir: pgc.DataDir, BinDir: pgc.BinDir, ListenHost: pgc.ListenHost, Port: pgc.Port,
		SocketDir: pgc.SocketDir, LogFile: pgc.LogFile,
		Superuser: pgc.Superuser.Username, SuperuserPassword: superPass,
		Replication: pgc.Replication.Username, ReplicationPassword: replPass,
		Parameters: pgc.Parameters, Logger: log,
	})
	if err != nil {
		return database{}, fmt.Errorf("postgresql: %w", err)
	}
	return database{db: pg, caps: postgres.Capabilities(rejoinMethods(pgc)), engine: "postgresql", host: pgc.ConnectHost, port: pgc.Port}, nil
}

// rejoinMethods is what the postgresql section allows a diverged member:
// pg_rewind (use_pg_rewind) and a re-clone (reclone_on_rewind_failure).
func rejoinMethods(pgc config.PostgreSQL) db.RejoinMethods {
	var m db.RejoinMethods
	if pgc.Rewind() {
		m |= db.RejoinResync
	}
	if pgc.RecloneOnRewindFailure {
		m |= db.RejoinReclone
	}
	return m
}

// failsafePeers is the client a leader asks the other members' APIs with
// under failsafe_mode: the API's bearer token (every member's must be the
// same) and, when the API serves HTTPS, its TLS files to verify them. Each
// request is bounded by the agent's own deadline.
func failsafePeers(c config.API, token string) (agent.FailsafePeers, error) {
	cl, err := apiClient(c)
	if err != nil {
		return nil, err
	}
	return api.FailsafeClient{HTTP: cl, Token: token}, nil
}

// apiClient is the HTTP client for the other agents' APIs (failsafe
// requests, the leader link), with api.tls's client side when set.
func apiClient(c config.API) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.TLS.Enabled() {
		tc, err := c.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("api.tls (client side, for the other agents' APIs): %w", err)
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr}, nil
}
