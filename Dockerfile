# syntax=docker/dockerfile:1
# Model registry image: build with dev dependencies, run on node:24-slim (Node.js 24 LTS) with production
# dependencies only, as the unprivileged `node` user.
#
#   docker build -t model-registry .
#   docker run -p 8080:8080 -e AUTH_TOKENS=write:<secret>,read:<secret> -v registry-data:/app/data model-registry
#
# HOST is 0.0.0.0 in the image, so the server refuses to start unless AUTH_TOKENS is set (or
# ALLOW_ANONYMOUS=true is set on purpose). The image sets neither.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM node:${NODE_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:${NODE_VERSION}-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json openapi.yaml ./
# The web page (/ui) is served from the source tree, as openapi.yaml is: no build step of its own.
COPY src/ui ./src/ui
# ./data/models (LOCAL_STORAGE_DIR) and ./data/cache (CACHE_DIR), relative to /app.
RUN mkdir -p /app/data/models /app/data/cache && chown -R node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 8080
# No curl in slim images: ask node. Uses PORT as configured.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM starts the graceful shutdown (SHUTDOWN_GRACE, default 30s): give `docker stop` a
# timeout of SHUTDOWN_GRACE + 20 s (docker stop -t 50, stop_grace_period in compose).
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
