# mdevfs in a container. FUSE needs the host's /dev/fuse and CAP_SYS_ADMIN:
#   docker build -t mdevfs .
#   docker run --rm -it --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined mdevfs
# The tree is mounted at /sys-mdev inside the container; `docker exec` into it to use it, or run
#   docker run ... mdevfs exec -- mdevctl types
FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libfuse2 fuse3 mdevctl util-linux \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mdevfs
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
RUN npm run build --silent && npm prune --omit=dev --no-audit --no-fund --loglevel=error
ENTRYPOINT ["node", "scripts/mdevfs"]
CMD ["mount", "/sys-mdev"]
