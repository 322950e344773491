// Package api serves each hamgr agent's HTTP API: health checks for load
// balancers such as HAProxy, a view of the cluster, Prometheus metrics, and
// token-protected operator endpoints (switchover, failover, pause, resume).
//
// Paths and status codes follow Patroni's REST API (patroni/api.py), so
// HAProxy checks, Kubernetes probes and monitoring written for Patroni work
// unchanged; docs/api.md has the full table and every difference. In short:
//
//	/, /primary, /master, /leader, /read-write
//	    200 only if this member's database is a primary, accepts
//	    connections, and this agent holds the leader key with a live lease.
//	    GET / is a primary check, as in Patroni, so a bare "option httpchk"
//	    (OPTIONS /) selects the primary.
//	/standby-leader, /standby_leader
//	    always 503: hamgr has no standby clusters.
//	/replica[?lag=16MB][&replication_state=streaming][&tag_NAME=VALUE...]
//	    200 if this member's database runs as a replica and accepts
//	    connections, its agent reports it running, it is not tagged
//	    noloadbalance and its record does not say diverged. It need not
//	    stream at the moment (a replica of a failed primary keeps serving
//	    reads): replication_state=streaming asks for that. lag bounds the
//	    WAL it has not replayed behind the leader's last published position
//	    (the last one seen, during a failover); unknown lag fails a bound.
//	/read-only
//	    the primary (as /primary) or a replica (as /replica).
//	/synchronous, /sync; /asynchronous, /async
//	    a replica (as /replica) that the leader's record lists, or does not
//	    list, as a synchronous standby.
//	/read-only-sync, /read-only-synchronous
//	    the primary, or a synchronous standby.
//	/quorum: always 503; /read-only-quorum: the primary only. Synchronous
//	    mode sets FIRST n (priority), never ANY n, so no member is a quorum
//	    standby.
//	/health
//	    200 if the local database accepts connections.
//	/readiness[?lag=...][&mode=apply|write]
//	    200 for the leader key's holder, or a replica that streams and
//	    trails the leader by at most lag (default maximum_lag_on_failover)
//	    of replayed (apply, the default) or received (write) WAL.
//	/liveness
//	    503 once the agent's loop has not completed a round for longer than
//	    [LivenessBound] (2 × ttl + primary_start_timeout), except while the
//	    cluster is paused.
//	/patroni, /status
//	    200 with this member's status.
//	/cluster
//	    200 with every member's record, sorted by name, and the leader.
//	/metrics
//	    the agent's Prometheus metrics (see package metrics), when
//	    Options.Metrics is set; otherwise 404.
//	/alive
//	    GET answers 200 at once and holds the response open, sending
//	    nothing, until the client leaves or the server shuts down: the
//	    other agents hold one to the leader's agent, and its drop (the
//	    agent process died) wakes them at once (the failover before the
//	    ttl, docs/design.md). HEAD and OPTIONS answer 200 and return.
//
// Every check except the primary ones (and /readiness, /liveness) also
// applies ?tag_NAME=VALUE filters, as Patroni does: a check that would pass
// answers 503 unless the member has every named tag with exactly that
// value. The tags are the member's custom tags, priority, and nofailover
// and noloadbalance (which exist, with value "true", only when set).
//
// A lag bound is a whole number of bytes, optionally followed by a unit as
// in the config file: B, kB, MB, GB or TB (powers of 1024, any case; KiB to
// TiB too): lag=1048576 and lag=1MB are the same bound. A malformed
// parameter (lag, replication_state, mode, tag_NAME, or one given twice)
// answers 400, so that a typo in a balancer's config shows up as a failing
// check with an explanation rather than as a silently ignored condition;
// other parameters are ignored.
//
// Every read endpoint answers GET, HEAD and OPTIONS with the same status
// (HAProxy's "option httpchk" sends OPTIONS unless told otherwise); any
// other method answers 405 with an Allow header. Unknown paths answer 404.
// Bodies are JSON: the check and status endpoints carry this member's
// status (as Patroni does), /readiness {"ready","reason"}, /liveness
// {"alive",...}, /cluster the cluster view, and errors {"error": "..."}.
//
// The read endpoints read nothing but the [State] its [Source] returns, one
// State per request, so every answer is consistent with a single agent loop
// round. They need no authorization.
//
// # Operator endpoints
//
// The mutating endpoints write a request to the store through an [Operator]
// (package operator validates it against a fresh snapshot, exactly as
// hamgrctl does); the agents act on it in their loop. Bodies are JSON
// objects of at most 1 MiB; Patroni's field names are accepted alongside
// hamgr's:
//
//	POST /switchover  {"to": "pg2", "scheduled_at": "2026-03-04T05:06:07Z"}
//	                  or {"leader": "pg1", "candidate": "pg2", "scheduled_at": ...}
//	    All fields are optional: without to (or candidate) the leader hands
//	    over to the best replica; scheduled_at is RFC 3339 with a time zone;
//	    leader, if given, must be the leader in this agent's latest view.
//	    202 with the accepted request.
//	DELETE /switchover
//	    Cancels the pending switchover or failover that has not started its
//	    handoff. 200 with the cancelled request.
//	POST /failover    {"to": "pg2"} or {"candidate": "pg2"}
//	    Promotes the named replica when there is no healthy primary. 202.
//	POST /pause, POST /resume
//	    Suspend or re-enable automatic failover (no body, or {}). 202.
//	POST /failsafe    {"cluster": "c", "leader": "pg1", "epoch": 42, "ttl": "10s"}
//	    Agent to agent (failsafe_mode): a leader that cannot reach etcd
//	    asks this member to confirm it; 200 with the confirmation, 409
//	    with the reason of a refusal (see [FailsafeClient]).
//
// They require "Authorization: Bearer TOKEN" with the token of
// api.token_file, compared in constant time: a missing token answers 401
// with WWW-Authenticate: Bearer, a wrong one 403, and when no token is
// configured every mutating request answers 403. A malformed body answers
// 400 naming the field: anything but a JSON object (null, an array, a
// string, a number or a boolean; an empty body counts as {}), an unknown
// field, a field of the wrong type, a bad scheduled_at. A request the
// cluster's state refuses answers 409 with the reason, in the API's words
// (package operator's refusals name hamgrctl's flags; the API rewrites them
// as its JSON fields and requests, e.g. scheduled_at, DELETE /switchover);
// a store that fails or does not answer within 8 s answers 503. The request and the history name the
// requester as "api from ADDR" (see [Requester]).
package api
