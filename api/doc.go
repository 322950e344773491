// Package api serves each hamgr agent's HTTP API: health checks for load
// balancers such as HAProxy and a read-only view of the cluster.
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
//
// The lag bound is a whole number of bytes, optionally followed by one of the
// units B, kB, MB or GB (powers of 1024): lag=1048576 and lag=1MB are the same
// bound. A malformed bound answers 400 so that a typo in a balancer's config
// shows up as a failing check with an explanation rather than as a silently
// ignored limit.
//
// Every endpoint answers GET, HEAD and OPTIONS with the same status (HAProxy's
// "option httpchk" sends OPTIONS unless told otherwise); any other method
// answers 405 with an Allow header. Unknown paths answer 404. Bodies are JSON:
// health endpoints and the status endpoints carry this member's status (as
// Patroni does), /cluster the cluster view, and errors {"error": "..."}.
// /liveness answers {"alive":true} without consulting the agent, so that it
// reflects only whether the process serves HTTP.
//
// The handler reads nothing but the [State] its [Source] returns, one State
// per request, so every answer is consistent with a single agent loop round.
// It never changes anything: the API has no write endpoints.
package api
