# Build: compile src/ to dist/ (tsc, plus the Lua scripts, persisted operations and live page).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# Run: production dependencies and dist/ only, with plain node (no TypeScript loader: ~55 MB less RSS).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
EXPOSE 4000
USER node
# A 32 MB young generation: requests in flight under a storm outlive the default one and were
# promoted, growing the old generation (peak RSS 530 MB against 360 MB; bench/NOTES.md).
# The old generation may grow to twice what the last full GC kept (V8 allows up to four times on a
# large machine): a storm's promoted garbage peaked at 180-370 MB of old space against ~50 MB live.
# Source maps turn stack traces in the logs back into src/ lines (~1 MB).
CMD ["node", "--enable-source-maps", "--max-semi-space-size=32", "--heap-growing-percent=100", "dist/main.js"]
