//go:build !agentonly

package main

import (
	"context"
	"fmt"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
)

// startEmbeddedEtcd starts the single-member etcd of etcd.embedded inside
// this process and returns its client URLs and how to stop it. Builds
// with -tags agentonly leave the etcd server out (embedded_agentonly.go).
func startEmbeddedEtcd(ctx context.Context, e *config.EmbeddedEtcd) ([]string, func(), error) {
	srv, err := etcdembed.Start(ctx, etcdembed.Options{Dir: e.Dir, ClientURL: e.ClientURL, PeerURL: e.PeerURL})
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded etcd in %s: %w", e.Dir, err)
	}
	return srv.Endpoints(), srv.Close, nil
}
