# syntax=docker/dockerfile:1
# The agent-runtime image: every agent-runtime process of docker-compose.yml (audit aggregator,
# observer, approvals service, agents and tools workers, the one-shot keys and search-attribute jobs)
# runs `node /app/bin/agent-runtime.js <command>` from it. No HEALTHCHECK: compose defines one per
# service (node's fetch against the service's /healthz).
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the root `prepare` (the build) runs below instead; the dependencies' own scripts
# (@swc/core, protobufjs) only check for a native binary that npm already installed, or print a notice
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# A numeric, unprivileged user, and the mount points of the compose volumes owned by it: an empty named
# volume takes the ownership and mode of the directory it is mounted on. Key directories are 0700.
RUN groupadd --system --gid 10001 agent-runtime \
  && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin agent-runtime \
  && mkdir -p /keys/votes /keys/audit /keys/governance /keys/public \
    /data/workspace /data/state /data/observer \
  && chown -R 10001:10001 /keys /data \
  && chmod 0700 /keys/votes /keys/audit /keys/governance
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY examples ./examples
COPY deploy/config ./deploy/config
USER 10001:10001
ENTRYPOINT ["node", "/app/bin/agent-runtime.js"]
