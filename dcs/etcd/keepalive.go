package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keeper renews leases over one LeaseKeepAlive stream that it keeps open:
// a renewal is one message each way. clientv3's KeepAliveOnce opens and
// closes a stream for every call, which cost the agent about a millisecond
// of CPU per renewal (measured with integration/cmd/footprint: a leader
// renewing every 0.5 s went from 0.085 to 0.175 CPU s per idle minute);
// clientv3's own KeepAlive keeps a stream but renews on its own schedule
// (ttl/3) and reports no send time, which the fence deadline needs.
//
// Renewals are serialized; a renewal whose context ends before the answer
// comes, or that fails, closes the stream, and the next one opens a new
// one (so an answer is never taken for another request's). The stream's
// context asks for a leader (clientv3.WithRequireLeader): a member cut off
// from its quorum ends it rather than answer renewals it cannot make
// count.
type keeper struct {
	mu     sync.Mutex
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
}

// renew renews lease id over the stream (opening it on cli's connection
// if needed) and returns the TTL the store answered; an answer of 0 or
// less (the lease is gone) is rpctypes.ErrLeaseNotFound.
func (k *keeper) renew(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stream == nil {
		sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
		st, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return 0, fmt.Errorf("open keepalive stream: %w", err)
		}
		k.stream, k.cancel = st, cancel
	}
	st := k.stream
	stop := context.AfterFunc(ctx, k.cancel)
	err := st.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)})
	var resp *pb.LeaseKeepAliveResponse
	if err == nil {
		resp, err = st.Recv()
	}
	if fired := !stop(); fired || err != nil {
		k.closeLocked()
		if err != nil && ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
	}
	switch {
	case err != nil:
		return 0, err
	case resp.TTL <= 0:
		return 0, rpctypes.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

// close ends the stream, if one is open.
func (k *keeper) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closeLocked()
}

func (k *keeper) closeLocked() {
	if k.cancel != nil {
		k.cancel()
	}
	k.stream, k.cancel = nil, nil
}
