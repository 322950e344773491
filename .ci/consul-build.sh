#!/usr/bin/env bash
# Builds a Consul agent for discovery/consul's real-agent test, once per
# machine: Debian 12 has no consul package and prebuilt binaries cannot be
# fetched here, so it is compiled from the Go module proxy's copy of
# github.com/hashicorp/consul v1.16.6 (the last MPL-2.0 release) into
# /var/cache/hamgr-ci/consul/consul, a cache outside the clone that later
# CI runs on the same machine reuse. Nothing of Consul is committed.
#
# `go install` refuses the module (its go.mod replaces its submodules with
# local directories the module zip lacks), so the build drops those
# replaces, takes the submodules at the versions its go.mod requires, and
# leaves out the one subcommand whose package exists in no published
# submodule version of that age ("consul troubleshoot ports").
#
# Bounded by HAMGR_CONSUL_BUILD_TIMEOUT seconds (default 1200). Any failure
# or timeout leaves no binary; the test then skips and says why. Always
# exits 0.
set -uo pipefail
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
version=v1.16.6
cache=${HAMGR_CONSUL_CACHE:-/var/cache/hamgr-ci/consul}
bin=$cache/consul
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "Consul ${version}"; then
  echo "consul: using $bin ($version, cached)"
  exit 0
fi
mkdir -p "$cache" || { echo "consul: cannot create $cache: the real-Consul test will skip"; exit 0; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s)
build() {
  set -e
  cd "$work" # outside any module: nothing of the clone is touched
  dir=$(go mod download -json "github.com/hashicorp/consul@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ]
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  cd "$work/src"
  for m in api envoyextensions proto-public sdk troubleshoot; do
    go mod edit -dropreplace "github.com/hashicorp/consul/$m"
  done
  sed -i '/troubleshootports/d' command/registry.go
  rm -rf command/troubleshoot/ports
  GOFLAGS=-mod=mod nice -n 10 go build -trimpath -o "$work/consul" \
    -ldflags "-X github.com/hashicorp/consul/version.GitCommit=hamgr-ci" .
  install -m 0755 "$work/consul" "$bin.tmp"
  mv "$bin.tmp" "$bin"
}
if (timeout "${HAMGR_CONSUL_BUILD_TIMEOUT:-1200}" bash -c "$(declare -f build); work=$work bin=$bin version=$version build") >"$work/build.log" 2>&1; then
  echo "consul: built $version in $(( $(date +%s) - start ))s: $("$bin" version | head -1)"
else
  echo "consul: building $version failed or ran out of time after $(( $(date +%s) - start ))s: the real-Consul test will skip. Last lines:"
  tail -5 "$work/build.log"
fi
exit 0
