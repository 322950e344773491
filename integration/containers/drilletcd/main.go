// Command drilletcd runs one member of a multi-member etcd cluster: the same
// embedded etcd server (go.etcd.io/etcd/server/v3, the version hamgr links)
// in a binary small enough for the container drills' etcd image. It is a
// test tool, not a way to run etcd in production.
//
//	drilletcd -name e1 -ip 10.1.2.21 -initial-cluster e1=http://10.1.2.21:2380,e2=...
//
// It listens on every address (clients on 2379, peers on 2380), advertises
// -ip, and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "drilletcd:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "", "member name (required)")
	ip := flag.String("ip", "", "address advertised to clients and peers (required)")
	initial := flag.String("initial-cluster", "", "etcd --initial-cluster: name=http://ip:2380,... (required)")
	dir := flag.String("data-dir", "/var/lib/etcd/data", "data directory")
	logLevel := flag.String("log-level", "error", "etcd log level")
	flag.Parse()
	if *name == "" || *ip == "" || *initial == "" {
		flag.Usage()
		return fmt.Errorf("-name, -ip and -initial-cluster are required")
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = *name, *dir, *logLevel
	cfg.InitialCluster = *initial
	cfg.InitialClusterToken = "hamgr-drill"
	lc, _ := url.Parse("http://0.0.0.0:2379")
	lp, _ := url.Parse("http://0.0.0.0:2380")
	ac, err := url.Parse("http://" + *ip + ":2379")
	if err != nil {
		return fmt.Errorf("client URL for %q: %w", *ip, err)
	}
	ap, err := url.Parse("http://" + *ip + ":2380")
	if err != nil {
		return fmt.Errorf("peer URL for %q: %w", *ip, err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*lc}, []url.URL{*ac}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*lp}, []url.URL{*ap}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start member %s in %s: %w", *name, *dir, err)
	}
	defer e.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("member %s: %w", *name, err)
	}
}
