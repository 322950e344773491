// Package writeclient is the write client that `hamgr demo`, the failover
// drills and the integration tests use to measure write unavailability and
// acknowledged-write loss. It is a top-level package, not under
// integration/, because the hamgr binary itself (the demo) imports it.
//
// It measures hamgr the same way competing failover managers (Patroni,
// pg_auto_failover, repmgr) are commonly measured: a single client connects
// with a multi-host connection string over ALL nodes of the cluster with
// target_session_attrs=read-write, so that after a failover it finds the new
// primary by itself, and it writes rows with client-side, strictly increasing
// ids at a bounded rate.
//
// Every write attempt has a deadline. Only an INSERT whose successful
// completion (the server's CommandComplete and ReadyForQuery for the implicit
// autocommit transaction) has been received counts as acknowledged. An
// attempt that fails — including one whose outcome is ambiguous because the
// error arrived after the statement was sent — is counted as failed: its row
// may or may not exist on the server, and that is not a loss. Loss is an
// acknowledged id that is absent from the table on the current primary, which
// VerifyNoLoss checks.
//
// Unavailability is reported as the gaps between consecutive acknowledged
// writes (see Result and Result.OutageAround). All timestamps carry Go's
// monotonic clock reading, so durations are immune to wall-clock steps.
//
// Typical use in a drill:
//
//	c := writeclient.New(writeclient.Options{Hosts: hosts, User: "postgres", Password: pw})
//	if err := c.Setup(ctx); err != nil { ... }
//	c.Start(ctx)
//	_ = c.WaitAcked(ctx, 50)
//	faultAt := time.Now()
//	// ... inject the fault, let hamgr fail over ...
//	_ = c.WaitAcked(ctx, c.Acked()+20) // writes flow again
//	res := c.Stop()
//	outage := res.OutageAround(faultAt)
//	missing, err := writeclient.VerifyNoLoss(ctx, opts, res.AckedIDs)
package writeclient
