FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY contract ./contract
EXPOSE 4000
USER node
# A 32 MB young generation: requests in flight under a storm outlive the default one and were
# promoted, growing the old generation (peak RSS 530 MB against 360 MB; bench/NOTES.md).
# The old generation may grow to twice what the last full GC kept (V8 allows up to four times on a
# large machine): a storm's promoted garbage peaked at 180-370 MB of old space against ~50 MB live.
CMD ["node", "--max-semi-space-size=32", "--heap-growing-percent=100", "--import", "tsx", "src/main.ts"]
