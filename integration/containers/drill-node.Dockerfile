# The drills' node image: the Dockerfile's hamgr-node target plus iptables,
# so that a drill can cut a node off from some peers only (one-way and
# partial partitions; the container needs --cap-add NET_ADMIN).
# build-images.sh builds it as local/hamgr-drill-node:dev.
ARG NODE_IMAGE=local/hamgr-node:dev
FROM ${NODE_IMAGE}
USER root
RUN apt-get update --error-on=any \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
USER postgres
