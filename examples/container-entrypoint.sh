#!/bin/sh
# Entrypoint of the hamgr-node image (see the Dockerfile): runs the agent as
# the postgres user with /etc/hamgr/hamgr.yml.
#
# Mount your own /etc/hamgr (config and 0600 password files owned by the
# container's postgres user), or pass them as environment variables, which
# this script writes there first:
#   HAMGR_CONFIG                the whole hamgr.yml
#   HAMGR_SUPERUSER_PASSWORD    -> /etc/hamgr/superuser.password
#   HAMGR_REPLICATION_PASSWORD  -> /etc/hamgr/replication.password
#   HAMGR_API_TOKEN             -> /etc/hamgr/api.token
# Arguments replace the default command (agent --config /etc/hamgr/hamgr.yml).
set -eu
umask 077
secret() { # secret VALUE FILE: write VALUE to FILE (0600) when set
  [ -z "$1" ] || printf '%s\n' "$1" > "$2"
}
[ -z "${HAMGR_CONFIG:-}" ] || printf '%s\n' "$HAMGR_CONFIG" > /etc/hamgr/hamgr.yml
secret "${HAMGR_SUPERUSER_PASSWORD:-}" /etc/hamgr/superuser.password
secret "${HAMGR_REPLICATION_PASSWORD:-}" /etc/hamgr/replication.password
secret "${HAMGR_API_TOKEN:-}" /etc/hamgr/api.token
unset HAMGR_SUPERUSER_PASSWORD HAMGR_REPLICATION_PASSWORD HAMGR_API_TOKEN
[ $# -gt 0 ] || set -- agent --config /etc/hamgr/hamgr.yml
exec /usr/local/bin/hamgr "$@"
