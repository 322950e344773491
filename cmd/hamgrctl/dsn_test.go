package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd"
)

// dsnSnapshot: n2 leads; n1 streams from it, n3 is a replica that is not
// streaming, n4 has published no address yet.
func dsnSnapshot() cluster.Snapshot {
	return cluster.Snapshot{
		Leader: &cluster.Leader{Name: "n2", Epoch: 7},
		Members: []cluster.Member{
			{Name: "n1", Role: cluster.RoleReplica, Streaming: true, ConnHost: "10.0.0.1", ConnPort: 5432},
			{Name: "n2", Role: cluster.RolePrimary, ConnHost: "10.0.0.2", ConnPort: 5433},
			{Name: "n3", Role: cluster.RoleReplica, ConnHost: "db3.example", ConnPort: 5432},
			{Name: "n4", Role: cluster.RoleReplica, Streaming: true},
		},
	}
}

func TestBuildDSN(t *testing.T) {
	for _, tc := range []struct {
		o    dsnOptions
		want string
	}{
		{dsnOptions{role: dsnPrimary, format: formatLibpq, database: "postgres"},
			"host=10.0.0.2,10.0.0.1,db3.example port=5433,5432,5432 dbname=postgres target_session_attrs=read-write"},
		{dsnOptions{role: dsnPrimary, format: formatLibpq, database: "my db", user: "o'neil"},
			`host=10.0.0.2,10.0.0.1,db3.example port=5433,5432,5432 user='o\'neil' dbname='my db' target_session_attrs=read-write`},
		{dsnOptions{role: dsnReplica, format: formatLibpq, database: "app"},
			"host=10.0.0.1 port=5432 dbname=app target_session_attrs=standby"},
		{dsnOptions{role: dsnPrimary, format: formatURL, database: "app", user: "app"},
			"postgresql://app@10.0.0.2:5433,10.0.0.1:5432,db3.example:5432/app?target_session_attrs=read-write"},
		{dsnOptions{role: dsnPrimary, format: formatJDBC, database: "app", user: "app"},
			"jdbc:postgresql://10.0.0.2:5433,10.0.0.1:5432,db3.example:5432/app?targetServerType=primary&user=app"},
		{dsnOptions{role: dsnReplica, format: formatJDBC, database: "app"},
			"jdbc:postgresql://10.0.0.1:5432/app?loadBalanceHosts=true&targetServerType=secondary"},
	} {
		got, err := buildDSN(dsnSnapshot(), tc.o)
		if err != nil || got != tc.want {
			t.Errorf("%+v:\n got %q, %v\nwant %q", tc.o, got, err, tc.want)
		}
	}
}

// The libpq and URL forms must be what libpq (pgx follows its grammar)
// parses back into the hosts, user, database and session attribute.
func TestDSNParsesBack(t *testing.T) {
	for _, f := range []dsnFormat{formatLibpq, formatURL} {
		s, err := buildDSN(dsnSnapshot(), dsnOptions{role: dsnPrimary, format: f, database: "my db", user: "o'neil"})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig(s)
		if err != nil {
			t.Fatalf("%s: %q does not parse: %v", f, s, err)
		}
		hosts := []string{cfg.Host}
		for _, fb := range cfg.Fallbacks {
			// sslmode=prefer gives each host two fallbacks (TLS, then not).
			if fb.Host != hosts[len(hosts)-1] {
				hosts = append(hosts, fb.Host)
			}
		}
		if strings.Join(hosts, ",") != "10.0.0.2,10.0.0.1,db3.example" || cfg.Port != 5433 ||
			cfg.User != "o'neil" || cfg.Database != "my db" {
			t.Errorf("%s: %q parsed as hosts %v port %d user %q db %q", f, s, hosts, cfg.Port, cfg.User, cfg.Database)
		}
		if cfg.ValidateConnect == nil {
			t.Errorf("%s: %q: target_session_attrs not understood", f, s)
		}
	}
}

func TestDSNErrors(t *testing.T) {
	if _, err := buildDSN(cluster.Snapshot{}, dsnOptions{role: dsnPrimary, format: formatLibpq, database: "p"}); err == nil ||
		!strings.Contains(err.Error(), "no member of the cluster has published its address") {
		t.Errorf("empty cluster: %v", err)
	}
	snap := dsnSnapshot()
	snap.Members = snap.Members[1:2]
	if _, err := buildDSN(snap, dsnOptions{role: dsnReplica, format: formatLibpq, database: "p"}); err == nil ||
		!strings.Contains(err.Error(), "no member of the cluster runs as a streaming replica") {
		t.Errorf("no replica: %v", err)
	}
	for _, argv := range [][]string{
		{"dsn", "--role", "leader", "--cluster", "c", "--etcd", "http://127.0.0.1:1"},
		{"dsn", "--format", "odbc", "--cluster", "c", "--etcd", "http://127.0.0.1:1"},
	} {
		code, _, stderr := runCLI(t, "", false, argv...)
		if code != 2 || !strings.Contains(stderr, argv[2]) {
			t.Errorf("%v: exit %d, %q; want a usage error naming %q", argv, code, stderr, argv[2])
		}
	}
}

// hamgrctl dsn against a real etcd holding member records as agents write
// them.
func TestDSNAgainstEtcd(t *testing.T) {
	srv, _ := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range dsnSnapshot().Members[:3] {
		ms, err := etcd.New(etcd.Options{Endpoints: srv.Endpoints(), Cluster: "c", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		if err := ms.Grant(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := ms.PublishMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	code, out, stderr := runCLI(t, "", false, "dsn", "--cluster", "c", "--etcd", srv.Endpoints()[0], "--dbname", "app")
	if code != 0 || strings.TrimSpace(out) != "host=10.0.0.1,10.0.0.2,db3.example port=5432,5433,5432 dbname=app target_session_attrs=read-write" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
