# hamgr container images. Targets:
#   hamgr       (default) static hamgr and hamgrctl on Debian 12 slim, run as
#               the non-root user hamgr: the tools, or a layer to copy from
#               (COPY --from=hamgr /usr/local/bin/hamgr ...) into your own
#               PostgreSQL image.
#   hamgr-node  PostgreSQL 15 (Debian's postgresql-15) plus the agent, run as
#               the postgres user: one cluster member per container. The
#               container drills (integration/containers) run it with
#               iptables added (integration/containers/drill-node.Dockerfile).
#   drill-etcd  a test tool: one member of the drills' 3-member etcd (the
#               embedded etcd server hamgr links, integration/containers/drilletcd).
#
#   docker build -t hamgr .
#   docker build --target hamgr-node -t hamgr-node .
#
# Base images are build arguments. Without a registry (this project's CI),
# integration/containers/build-images.sh builds local ones from Debian
# packages and passes GO_IMAGE=local/golang:<version> and
# BASE_IMAGE=local/debian:bookworm.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:12-slim

FROM ${GO_IMAGE} AS build
ARG GOPROXY=https://proxy.golang.org,direct
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=${GOPROXY}
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -tags agentonly -ldflags='-s -w' -o /out/hamgr ./cmd/hamgr \
 && go build -trimpath -ldflags='-s -w' -o /out/hamgrctl ./cmd/hamgrctl \
 && go build -trimpath -ldflags='-s -w' -o /out/drilletcd ./integration/containers/drilletcd

FROM ${BASE_IMAGE} AS hamgr-node
# Optional: the Debian mirror apt uses (the base image's sources otherwise).
ARG DEBIAN_MIRROR=
ARG DEBIAN_SECURITY=
RUN set -e; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
      rm -f /etc/apt/sources.list.d/debian.sources; \
      printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" > /etc/apt/sources.list; \
      [ -z "$DEBIAN_SECURITY" ] || printf 'deb %s bookworm-security main\n' "$DEBIAN_SECURITY" >> /etc/apt/sources.list; \
    fi; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update --error-on=any; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    install -d -o postgres -g postgres -m 0700 /etc/hamgr /var/lib/hamgr
COPY --from=build /out/hamgr /out/hamgrctl /usr/local/bin/
COPY examples/container-entrypoint.sh /usr/local/bin/hamgr-node-entrypoint
RUN chmod 0755 /usr/local/bin/hamgr-node-entrypoint
USER postgres
WORKDIR /var/lib/hamgr
EXPOSE 5432 8008
ENTRYPOINT ["/usr/local/bin/hamgr-node-entrypoint"]

FROM ${BASE_IMAGE} AS drill-etcd
RUN useradd --system --uid 10002 --home-dir /var/lib/etcd --create-home --shell /usr/sbin/nologin etcd
COPY --from=build /out/drilletcd /usr/local/bin/
USER etcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/drilletcd"]

FROM ${BASE_IMAGE} AS hamgr
RUN groupadd --system --gid 10001 hamgr \
 && useradd --system --uid 10001 --gid hamgr --home-dir /var/lib/hamgr --create-home --shell /usr/sbin/nologin hamgr
COPY --from=build /out/hamgr /out/hamgrctl /usr/local/bin/
USER hamgr
WORKDIR /var/lib/hamgr
ENTRYPOINT ["/usr/local/bin/hamgr"]
CMD ["--help"]
