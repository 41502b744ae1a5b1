// The ceiling of this machine for a purchase decision: node:http + the same reserve Lua script
// through the same StockEngine, and nothing else (no GraphQL, no token check, no PostgreSQL).
// Started by the bench as a child process; env: PORT, HOST, REDIS_URL, REDIS_PREFIX, WORKERS,
// CEILING_SALE_ID, CEILING_ITEM_ID, CEILING_STOCK, CEILING_LIMIT.
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { createRedis } from '../../src/redis.js';
import { StockEngine } from '../../src/services/stock/engine.js';

const env = process.env;
const workers = Math.max(1, Number(env.WORKERS ?? '1'));
const saleId = env.CEILING_SALE_ID!;
const itemId = env.CEILING_ITEM_ID!;

if (cluster.isPrimary) {
  const redis = createRedis({ url: env.REDIS_URL ?? 'redis://127.0.0.1:6379/0' }, 'bench-ceiling-init');
  const engine = new StockEngine(redis, env.REDIS_PREFIX!);
  const now = Date.now();
  await engine.initSale(saleId, {
    startsAt: now - 1000, endsAt: now + 3600_000, perUserLimit: Number(env.CEILING_LIMIT ?? '2'), holdSeconds: 300,
    state: 'OPEN', waitingRoom: false, epoch: 1, items: [{ id: itemId, stock: Number(env.CEILING_STOCK ?? '1000') }],
  });
  redis.disconnect();
}

if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  });
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
} else {
  const redis = createRedis({ url: env.REDIS_URL ?? 'redis://127.0.0.1:6379/0' }, 'bench-ceiling');
  const engine = new StockEngine(redis, env.REDIS_PREFIX!);
  const server = createServer((req, res) => {
    if (req.url === '/ready') {
      res.writeHead(200).end('ready');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      try {
        const { customerId, idempotencyKey } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { customerId: string; idempotencyKey: string };
        const r = await engine.reserve(saleId, { saleItemId: itemId, customerId, quantity: 1, idempotencyKey, mutation: 'purchase' });
        const body = r.ok === false ? { code: r.code, available: r.available } : { code: 'OK', reservationId: r.reservationId };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(Number(env.PORT), env.HOST ?? '127.0.0.1');
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    redis.disconnect();
    process.exit(0);
  });
}
