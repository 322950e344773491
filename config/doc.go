// Package config reads and checks the static YAML configuration of one hamgr
// agent: which cluster it belongs to, its member name, how to reach etcd,
// where its HTTP API listens, where its PostgreSQL server lives, the failover
// timings, its election and load-balancing tags, its logging, what a clean
// stop does, the publishers that tell clients where the primary is
// (discovery.dns), how to fence other members' machines (STONITH), and its
// watchdog device (watchdog.mode: off, automatic or required;
// watchdog.device; see package watchdog).
//
// # Loading
//
// [Load] reads a file and [Parse] decodes YAML strictly: an unknown key is an
// error that names the key, the section it appeared in, the line, and the keys
// that are allowed there. Keys that are absent take their defaults (see
// examples/hamgr.yml for every key with its default). The result is then
// checked by [Config.Validate], which reports every problem at once, each
// naming its YAML key path (for example "timing.ttl"), the offending value and
// what would be accepted.
//
// Validate only looks at the configuration itself. [Config.CheckPaths] does the
// checks that need the local file system (PostgreSQL binaries, password and
// TLS files, the data directory's parent); the agent calls it at start-up, but
// tools that merely read the file on another host need not.
//
// Secrets are never stored in a [Config]: it holds only the names of password,
// token and TSIG key files (and of the variable discovery.dns.key_env;
// [DNS.Key] reads the key when the agent starts). [ReadPassword] (behind [Etcd.Password],
// [PostgreSQL.SuperuserPassword], [PostgreSQL.ReplicationPassword]) and
// [API.Token] read a secret when it is needed, and refuse a file that other
// users may read or write (o+r or o+w), naming the key, the file, its mode
// and "chmod 600 FILE". [Config.CheckSecrets], run once at the agent's start,
// does the same for every secret file at once and logs a warning for one
// that its group may read, and for a TLS private key (key_file) that anyone
// but its owner may read (keys are warned about, never refused). No error,
// log line or String output of this package includes a file's contents.
//
// # Fencing
//
// The fencing section ([Fencing]) maps member names to the way to power
// their machines off (driver ipmi, redfish, fence-agent or command; see
// examples/hamgr.yml). Validate checks each entry against its driver (the
// keys it requires, and keys of another driver set by mistake), naming
// fencing.members.NAME.KEY; CheckPaths checks that password and CA files
// are readable and agents and commands executable; CheckSecrets applies
// the password-file rules to each password_file. [Fencing.Password] reads
// a member's password from password_file or password_env. cmd/hamgr builds
// the drivers (package github.com/hamgr/hamgr/stonith and its
// subpackages) from it.
//
// # Timing
//
// The timing section becomes the cluster-wide dynamic configuration
// ([Config.Dynamic], [cluster.DynamicConfig]) when this agent bootstraps the
// cluster, and is checked by the same function that checks the dynamic
// configuration in etcd ([cluster.DynamicConfig.Validate]), so a file and a
// hamgrctl config set can never disagree. The rules:
//
//   - ttl, loop_wait, retry_timeout and primary_start_timeout are whole
//     seconds;
//   - ttl is 3s to 10m, loop_wait 1s to 1m, retry_timeout 1s to 5m,
//     primary_start_timeout 0 to 1h, maximum_lag_on_failover 0 to 1TB,
//     failover_backoff 0 (off) to 24h;
//   - fencing (the policy: whether promotions use the fencing section
//     below) is off, require or best-effort;
//   - ttl (leader lease) must exceed loop_wait + retry_timeout, so that a
//     leader that can no longer renew its lease notices and demotes itself
//     before the lease expires and another member may be promoted.
//
// The limits' comments in package cluster argue each bound.
//
// The defaults (ttl 10s, loop_wait 2s, retry_timeout 5s) detect a failed
// primary within about 10-12 seconds. The "fast profile" halves that at the
// cost of more etcd traffic and less tolerance for etcd or network hiccups:
//
//	timing:
//	  ttl: 5s
//	  loop_wait: 1s
//	  retry_timeout: 3s
//
// # Units
//
// Durations ([Duration]) are Go duration strings such as "10s" or "500ms", or
// bare integers meaning seconds. Byte sizes ([ByteSize]) are integers meaning
// bytes, or strings such as "16MB" with units B, kB, MB, GB and TB in powers
// of 1024.
package config
