package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
)

// CreateRequest writes r under request if none is pending, in one
// transaction.
func (s *Store) CreateRequest(ctx context.Context, r cluster.Request) error {
	return s.putRequest(ctx, "create request", r, clientv3.Compare(clientv3.CreateRevision(s.key(keyRequest)), "=", 0))
}

// UpdateRequest replaces the pending request; it fails if none is pending.
func (s *Store) UpdateRequest(ctx context.Context, r cluster.Request) error {
	return s.putRequest(ctx, "update request", r, clientv3.Compare(clientv3.CreateRevision(s.key(keyRequest)), ">", 0))
}

func (s *Store) putRequest(ctx context.Context, op string, r cluster.Request, cmp clientv3.Cmp) error {
	key := s.key(keyRequest)
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).If(cmp).Then(clientv3.OpPut(key, string(v))).Commit()
	if err != nil {
		return s.opErr(op, key, err)
	}
	if !resp.Succeeded {
		if op == "create request" {
			return fmt.Errorf("etcd %s %s: %w", op, key, dcs.ErrRequestPending)
		}
		return fmt.Errorf("etcd %s %s: no request is pending", op, key)
	}
	return nil
}

// ClearRequest deletes the pending request, if any.
func (s *Store) ClearRequest(ctx context.Context) error {
	key := s.key(keyRequest)
	cli, err := s.client()
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := cli.Delete(rctx, key); err != nil {
		return s.opErr("clear request", key, err)
	}
	return nil
}

// SetFailsafe writes (or, for a nil rec, deletes) the failsafe record,
// in a transaction that succeeds only while l still holds the leader key.
func (s *Store) SetFailsafe(ctx context.Context, l cluster.Leader, rec *cluster.FailsafeState) error {
	key := s.key(keyFailsafe)
	cli, err := s.client()
	if err != nil {
		return err
	}
	op := clientv3.OpDelete(key)
	if rec != nil {
		r := *rec
		r.Leader, r.Epoch = l.Name, l.Epoch
		v, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("etcd set failsafe %s: %w", key, err)
		}
		op = clientv3.OpPut(key, string(v))
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.key(keyLeader)), "=", int64(l.Epoch))).
		Then(op).Commit()
	if err != nil {
		return s.opErr("set failsafe", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd set failsafe %s: %s no longer holds the leader key of epoch %d", key, l.Name, l.Epoch)
	}
	return nil
}

// SetSync writes the synchronous standby record, in a transaction that
// succeeds only while l still holds the leader key.
func (s *Store) SetSync(ctx context.Context, l cluster.Leader, rec cluster.SyncState) error {
	key := s.key(keySync)
	cli, err := s.client()
	if err != nil {
		return err
	}
	v, err := json.Marshal(syncValue(l, rec))
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.key(keyLeader)), "=", int64(l.Epoch))).
		Then(clientv3.OpPut(key, string(v))).Commit()
	if err != nil {
		return s.opErr("set sync", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd set sync %s: %s no longer holds the leader key of epoch %d", key, l.Name, l.Epoch)
	}
	return nil
}

// syncValue is rec as stored for leader l: l's name and epoch, and an
// empty list rather than null for no members.
func syncValue(l cluster.Leader, rec cluster.SyncState) cluster.SyncState {
	rec.Leader, rec.Epoch = l.Name, l.Epoch
	if rec.Members == nil {
		rec.Members = []string{}
	}
	return rec
}
