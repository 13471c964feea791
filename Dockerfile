# postern: build once, run as an unprivileged user.
FROM node:22-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
WORKDIR /app
# Every listener on all addresses of the container (the defaults are loopback only); the
# data (database, keys, certificate) in the /data volume.
ENV NODE_ENV=production \
    POSTERN_SERVER__DATA_DIR=/data \
    POSTERN_IMAP__HOST=0.0.0.0 \
    POSTERN_POP3__HOST=0.0.0.0 \
    POSTERN_SUBMISSION__HOST=0.0.0.0 \
    POSTERN_LMTP__HOST=0.0.0.0 \
    POSTERN_API__HOST=0.0.0.0
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
COPY bin ./bin
COPY plugins ./plugins
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
# IMAP (STARTTLS, TLS), POP3 (STARTTLS, TLS), submission (STARTTLS, TLS), LMTP, web API.
EXPOSE 1143 1993 1110 1995 1587 1465 2424 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8025/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains within [server] shutdown_grace (10 s), inside docker stop's default wait.
STOPSIGNAL SIGTERM
# The young generation as bin/postern sets it (idle sessions cost less memory; see there).
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/cli/postern.js"]
CMD ["serve"]
