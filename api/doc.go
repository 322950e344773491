// Package api serves each hamgr agent's HTTP API: health checks for load
// balancers such as HAProxy, a view of the cluster, Prometheus metrics, and
// token-protected operator endpoints (switchover, failover, pause, resume).
//
// Paths and status codes follow Patroni's REST API, so HAProxy (or any other
// balancer) checks written for Patroni work unchanged:
//
//	/primary, /master, /leader, /read-write
//	    200 only if this member's database is a primary, accepts
//	    connections, and this agent holds the leader key with a live lease;
//	    otherwise 503.
//	/replica[?lag=16MB]
//	    200 if this member is a replica that accepts connections and streams
//	    WAL from its upstream; with lag, also only if its lag behind the
//	    leader is known and at most the bound. Otherwise 503.
//	/read-only[?lag=16MB]
//	    200 for the primary (as /primary) or a replica (as /replica; lag
//	    applies to replicas only); otherwise 503.
//	/health
//	    200 if the local database accepts connections, else 503.
//	/liveness
//	    200 whenever the HTTP server answers (the agent process is alive).
//	/, /patroni, /status
//	    200 with this member's status.
//	/cluster
//	    200 with every member's record, sorted by name, and the leader.
//	/metrics
//	    the agent's Prometheus metrics (see package metrics), when
//	    Options.Metrics is set; otherwise 404.
//
// The lag bound is a whole number of bytes, optionally followed by a unit as
// in the config file: B, kB, MB, GB or TB (powers of 1024, any case; KiB to
// TiB too): lag=1048576 and lag=1MB are the same bound. A malformed bound answers 400 so that a typo in a balancer's config
// shows up as a failing check with an explanation rather than as a silently
// ignored limit.
//
// Every read endpoint answers GET, HEAD and OPTIONS with the same status (HAProxy's
// "option httpchk" sends OPTIONS unless told otherwise); any other method
// answers 405 with an Allow header. Unknown paths answer 404. Bodies are JSON:
// health endpoints and the status endpoints carry this member's status (as
// Patroni does), /cluster the cluster view, and errors {"error": "..."}.
// /liveness answers {"alive":true} without consulting the agent, so that it
// reflects only whether the process serves HTTP.
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
//
// They require "Authorization: Bearer TOKEN" with the token of
// api.token_file, compared in constant time: a missing token answers 401
// with WWW-Authenticate: Bearer, a wrong one 403, and when no token is
// configured every mutating request answers 403. A malformed body (not a
// JSON object, an unknown field, a field of the wrong type, a bad
// scheduled_at) answers 400 naming the field; a request the cluster's state
// refuses answers 409 with the reason; a store that fails or does not
// answer within 8 s answers 503. The request and the history name the
// requester as "api from ADDR" (see [Requester]).
package api
