# mdevfs in a container, built from Debian's packages only (Debian 13's own nodejs is 20).
#   docker build -t mdevfs .                 (or: podman build -t mdevfs .)
#   docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined mdevfs
# The daemon serves MDEVFS_PROFILE (a built-in name, or a profile file mounted into the container)
# at MDEVFS_DIR (default /sys-mdev). To let the host or other containers see the tree, bind a host
# directory there with shared propagation (README "Containers"); scripts/test-container checks that.
# BASE: any Debian 13 image; scripts/test-container makes one with debootstrap and podman import.
ARG BASE=debian:trixie-slim

FROM ${BASE} AS build
# libfuse2t64 here too: npm ci checks that fuse-native's prebuilt addon loads (else it would compile one).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates libfuse2t64 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mdevfs
COPY package.json package-lock.json ./
# Behind a proxy that re-signs TLS, give npm its CA bundle as a build secret:
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt   (scripts/test-container does)
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export npm_config_cafile=/run/secrets/ca; fi; \
    npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY src ./src
COPY scripts/mdevfs scripts/container-entrypoint ./scripts/
RUN npm run build --silent && npm prune --omit=dev --no-audit --no-fund --loglevel=error

FROM ${BASE}
# libfuse2t64: fuse-native; fuse3: fusermount3; mdevctl and util-linux (unshare, mount): exec;
# python3: --udev's netlink sender; udev: systemd-udevd and udevadm for exec --udevd.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs libfuse2t64 fuse3 mdevctl util-linux python3 udev \
 && rm -rf /var/lib/apt/lists/*
# What runs, and nothing else: no TypeScript sources, no benchmark, no dev dependencies.
COPY --from=build /opt/mdevfs/package.json /opt/mdevfs/package.json
COPY --from=build /opt/mdevfs/node_modules /opt/mdevfs/node_modules
COPY --from=build /opt/mdevfs/dist /opt/mdevfs/dist
COPY --from=build /opt/mdevfs/scripts /opt/mdevfs/scripts
# The profile schema is read where the sources keep it (error messages quote it, `profiles show` too).
COPY --from=build /opt/mdevfs/src/drivers/profile.schema.json /opt/mdevfs/src/drivers/profile.schema.json
RUN ln -s /opt/mdevfs/scripts/mdevfs /usr/local/bin/mdevfs
ENV MDEVFS_DIR=/sys-mdev MDEVFS_PROFILE=samples
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s CMD mdevfs wait "$MDEVFS_DIR" --timeout 3
ENTRYPOINT ["/opt/mdevfs/scripts/container-entrypoint"]
