#!/usr/bin/env bash
# Builds every image the container drills need, from Debian packages, with no
# image registry: a minimal Debian 12 root file system (debootstrap) imported
# as local/debian:bookworm, a Go toolchain image on it (the host's
# /usr/local/go), then the repository's Dockerfile targets:
#   local/hamgr:dev              the image users get (hamgr, hamgrctl, non-root)
#   local/hamgr-node:dev         PostgreSQL 15 + the agent
#   local/hamgr-drill-etcd:dev   the drills' etcd members (the embedded etcd hamgr links)
# and, from drill-node.Dockerfile here, local/hamgr-drill-node:dev
# (hamgr-node plus iptables), what the drills run.
# Idempotent: the base and Go images are skipped when they exist; the four
# hamgr images are always rebuilt, which docker's layer cache makes a matter
# of seconds when the sources are unchanged (REUSE=1 skips them too when
# they exist). Each step is bounded by a timeout; the times are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-/tmp/hamgr-images}
GO_ROOT=${GO_ROOT:-$(go env GOROOT 2>/dev/null || echo /usr/local/go)}
GO_VERSION=$("$GO_ROOT/bin/go" env GOVERSION)
SRC=/etc/apt/sources.list.d/debian.sources
MIRROR=${MIRROR:-$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' $SRC 2>/dev/null || true)}
SECURITY=${SECURITY:-$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' $SRC 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
GOPROXY=${GOPROXY:-$("$GO_ROOT/bin/go" env GOPROXY)}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
have() { docker image inspect "$1" >/dev/null 2>&1; }
mkdir -p "$B"

if ! have local/debian:bookworm; then
  T=$(date +%s%N); rm -rf "$B/rootfs"
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  timeout 600 debootstrap --variant=minbase bookworm "$B/rootfs" "$MIRROR" >"$B/debootstrap.log" 2>&1 ||
    { tail -20 "$B/debootstrap.log"; exit 1; }
  rm -rf "$B"/rootfs/var/cache/apt/archives/*.deb "$B"/rootfs/var/lib/apt/lists/*
  tar --numeric-owner --xattrs -C "$B/rootfs" -c . |
    timeout 300 docker import --change 'CMD ["/bin/bash"]' - local/debian:bookworm >/dev/null
  rm -rf "$B/rootfs"; echo "local/debian:bookworm: $(ms "$T") ms"
fi

if ! have "local/golang:$GO_VERSION"; then
  T=$(date +%s%N)
  # The host's toolchain and CA bundle (the module proxy's certificate may
  # be signed by a local CA) go in as a tar stream: no 270 MB build context.
  tar -C / --dereference -c "${GO_ROOT#/}" etc/ssl/certs/ca-certificates.crt |
    timeout 300 docker import - "local/go-tree:$GO_VERSION" >/dev/null
  printf 'FROM local/go-tree:%s AS tree\nFROM local/debian:bookworm\nCOPY --from=tree / /\nENV PATH=%s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' "$GO_VERSION" "$GO_ROOT" |
    timeout 300 docker build -q -t "local/golang:$GO_VERSION" - >/dev/null
  docker rmi "local/go-tree:$GO_VERSION" >/dev/null
  echo "local/golang:$GO_VERSION: $(ms "$T") ms"
fi

# The repository's Dockerfile, one target at a time (the legacy builder
# builds every stage before the target, so the order follows the file's).
# --network host: RUN steps reach the Debian mirror and the Go module proxy
# the way the host does, whatever the engine's default bridge allows.
build_target() { # build_target TARGET TAG
  if have "$2" && [ -n "${REUSE:-}" ]; then return; fi
  local T; T=$(date +%s%N)
  timeout 1200 docker build --network host --target "$1" -t "$2" \
    --build-arg GO_IMAGE="local/golang:$GO_VERSION" --build-arg BASE_IMAGE=local/debian:bookworm \
    --build-arg GOPROXY="$GOPROXY" --build-arg DEBIAN_MIRROR="$MIRROR" --build-arg DEBIAN_SECURITY="$SECURITY" \
    . >"$B/build-$1.log" 2>&1 || { tail -30 "$B/build-$1.log"; exit 1; }
  echo "$2: $(ms "$T") ms"
}
build_target hamgr-node local/hamgr-node:dev
if ! have local/hamgr-drill-node:dev || [ -z "${REUSE:-}" ]; then
  T=$(date +%s%N)
  timeout 600 docker build --network host -t local/hamgr-drill-node:dev --build-arg NODE_IMAGE=local/hamgr-node:dev \
    -f integration/containers/drill-node.Dockerfile integration/containers >"$B/build-drill-node.log" 2>&1 ||
    { tail -30 "$B/build-drill-node.log"; exit 1; }
  echo "local/hamgr-drill-node:dev: $(ms "$T") ms"
fi
build_target drill-etcd local/hamgr-drill-etcd:dev
build_target hamgr local/hamgr:dev
