import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Config } from './config.js';
import { createDb, ensureDatabase, migrateToLatest, type Db } from './db/database.js';
import { DbRouter } from './db/read-routing.js';
import { createLogger } from './logger.js';
import { SaleDirectory } from './live-page/directory.js';
import { startUrls } from './live-page/landing.js';
import { isPagePath, servePage } from './live-page/serve.js';
import { createRedis, createSubscriber, redisTarget, type RedisClient } from './redis.js';
import type { Context } from './schema/context.js';
import { schema } from './schema/index.js';
import { createLoaders } from './schema/loaders.js';
import { errorBodies, errorCodes, maskError } from './server/error-codes.js';
import { apqPlugin, RedisApqStore } from './server/apq.js';
import { FastLane } from './server/fast-lane.js';
import { GraphqlSse } from './server/graphql-sse.js';
import { PersistedOperations } from './server/persisted-operations.js';
import { graphiqlOptions, renderGraphiQL } from './server/graphiql-examples.js';
import { createHardening } from './server/hardening.js';
import { LoadShedder, withLoadShedding } from './server/load-shedding.js';
import { createMetrics } from './server/metrics.js';
import { MetricsEndpoint } from './server/metrics-endpoint.js';
import { buyingLimitsFromConfig, rateLimit, rateLimitsFromConfig } from './server/rate-limit.js';
import { QueryRateLimits, queryRateLimitsFromConfig } from './server/query-rate-limit.js';
import { Readiness } from './server/readiness.js';
import { readYourWrites } from './server/read-your-writes.js';
import { RateBuckets } from './services/rate-buckets.js';
import { RateCounter } from './services/rate-counter.js';
import { LoginGuard } from './services/login-guard.js';
import { loginLimit } from './server/login-limit.js';
import { Repeater } from './server/repeater.js';
import { requestLogging } from './server/request-logging.js';
import { ResponseCache } from './server/response-cache.js';
import { ResponseCacheInvalidation } from './server/response-cache-events.js';
import { attachWebSocket } from './server/websocket.js';
import { createServices, type Services } from './services/index.js';
import { seedSampleSale } from './services/seed.js';

export interface App {
  config: Config;
  db: Db;
  redis: RedisClient;
  services: Services;
  log: Logger;
  server: Server;
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  url: string;
  stop(): Promise<void>;
}

/** Builds and starts the whole service: database, Redis, GraphQL over HTTP, background workers. */
export async function startApp(config: Config, opts: { log?: Logger; workers?: boolean } = {}): Promise<App> {
  const log = opts.log ?? createLogger(config.LOG_LEVEL);
  await ensureDatabase(config.DATABASE_URL);
  const { db: untimedDb, pool } = createDb(config.DATABASE_URL, config.DATABASE_POOL_SIZE);
  await migrateToLatest(untimedDb);

  const redisError = (err: Error, connection: string) => log.warn({ err: err.message, connection }, 'redis connection error');
  // Every connection follows REDIS_SENTINELS when set (src/redis.ts): commands, publisher, subscribers.
  const target = redisTarget(config);
  const redis = createRedis(target, 'flashsale', redisError);
  const publisher = createRedis(target, 'flashsale-pub', redisError);
  const subscriberConnection = (name: string) => createSubscriber(target, name, redisError);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = createMetrics(registry);
  // The services' queries are timed; migrations above are not worth a series.
  const db = untimedDb.withPlugin(metrics.postgres);
  // DATABASE_READ_URL: catalogue, lists, history and reports may read from a replica (src/db/read-routing.ts).
  const replica = config.DATABASE_READ_URL ? createDb(config.DATABASE_READ_URL, config.DATABASE_POOL_SIZE) : null;
  const reads = new DbRouter({
    primary: db, replica: replica ? replica.db.withPlugin(metrics.postgres) : null, redis, prefix: config.REDIS_PREFIX,
    maxLagMs: config.DATABASE_READ_MAX_LAG_MS, registry, log: log.child({ source: 'read-replica' }),
  });
  replica?.pool.on('error', (err: Error) => reads.replicaFailed(err.message));
  await reads.start();
  const services = createServices({
    db, reads, redis, publisher, prefix: config.REDIS_PREFIX, jwtSecret: config.JWT_SECRET, jwksUrl: config.JWT_JWKS_URL,
    jwksIssuer: config.JWT_JWKS_ISSUER, jwksAudience: config.JWT_JWKS_AUDIENCE, jwksAllowAdmin: config.JWT_JWKS_ALLOW_ADMIN, jwtMaxLifetimeSeconds: config.JWT_MAX_LIFETIME_SECONDS, confirmWindowMs: config.CONFIRM_WINDOW_MS,
    registry, log, dataKeys: [config.DATA_KEY], admissionTokenSeconds: config.ADMISSION_TOKEN_SECONDS,
    createSubscriber: subscriberConnection, liveStockIntervalMs: config.LIVE_STOCK_INTERVAL_MS,
    saleRetireAfterMs: config.SALE_RETIRE_AFTER_MS, tierRefreshMs: config.CUSTOMER_TIER_REFRESH_MS,
  });
  // Tiers are read from memory on the buying path: loaded before the first request.
  await services.tiers.start();

  const seedWanted = config.SEED_SAMPLE_SALE ?? (config.NODE_ENV === 'development');
  let sampleSaleId: string | null = null;
  if (seedWanted && config.NODE_ENV !== 'production') {
    const sample = await seedSampleSale(db, services.catalog, services.sales);
    sampleSaleId = sample?.saleId ?? null;
    if (sample?.created) log.info({ saleId: sample.saleId }, 'sample sale "1,000 phones" is ACTIVE');
  }

  const hardening = createHardening(config);
  const shedder = LoadShedder.fromConfig(config, registry, log.child({ source: 'load-shedding' }));
  const persisted = PersistedOperations.generated();
  // graphql-sse's single-connection and distinct-connections modes at /graphql/stream (src/server/graphql-sse.ts).
  const sse = new GraphqlSse(shedder);
  const queryLimits = new QueryRateLimits({
    counter: new RateCounter(redis, config.REDIS_PREFIX), redis, limits: queryRateLimitsFromConfig(config), trustProxyHops: config.TRUST_PROXY_HOPS,
    authenticate: (authorization) => services.tokens.authenticate(authorization), log: log.child({ source: 'query-rate-limit' }),
  });
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema: withLoadShedding(schema, shedder),
    extraParamNames: ['documentId'],
    cors: hardening.cors,
    batching: hardening.batching,
    graphiql: graphiqlOptions(config.GRAPHIQL ?? config.NODE_ENV !== 'production'),
    // GraphiQL's scripts and styles from node_modules, inlined in the page: no CDN, works offline.
    renderGraphiQL,
    landingPage: false,
    logging: log.child({ source: 'yoga' }),
    maskedErrors: { maskError },
    plugins: [
      // Automatic persisted queries, registered in Redis for every instance (src/server/apq.ts); before
      // the trusted documents, and only while arbitrary documents are accepted.
      ...(config.APQ_ENABLED && persisted.allowsArbitraryOperations
        ? [apqPlugin(new RedisApqStore({
          redis, prefix: config.REDIS_PREFIX, persisted, ttlSeconds: config.APQ_TTL_SECONDS, maxQueryBytes: config.APQ_MAX_QUERY_BYTES,
          log: log.child({ source: 'apq' }),
        }))]
        : []),
      persisted.plugin(),
      sse.plugin(),
      requestLogging(log.child({ source: 'graphql' })),
      metrics.graphql,
      ...hardening.plugins,
      errorCodes(),
      errorBodies(),
      rateLimit({
        counter: new RateCounter(redis, config.REDIS_PREFIX),
        limits: rateLimitsFromConfig(config),
        buckets: new RateBuckets(redis, config.REDIS_PREFIX),
        bucketLimits: buyingLimitsFromConfig(config),
        tierOf: (viewer) => services.tiers.tierOf(viewer),
        trustProxyHops: config.TRUST_PROXY_HOPS,
        log: log.child({ source: 'rate-limit' }),
      }),
      // login/register per (email, client address), with a per-email ceiling (src/server/login-limit.ts).
      loginLimit({
        guard: config.RATE_LIMIT_ENABLED
          ? new LoginGuard(redis, config.REDIS_PREFIX, {
            perAddress: config.RATE_LIMIT_AUTH_PER_EMAIL, ceiling: config.RATE_LIMIT_AUTH_EMAIL_CEILING, backoffMaxMs: config.RATE_LIMIT_AUTH_BACKOFF_MAX_SECONDS * 1000,
          })
          : null,
        trustProxyHops: config.TRUST_PROXY_HOPS,
        log: log.child({ source: 'login-limit' }),
      }),
      queryLimits.plugin(),
      readYourWrites(reads),
    ],
    context: async ({ request }) => {
      const auth = await services.tokens.authenticate(request.headers.get('authorization'));
      return { viewer: auth.viewer, authError: auth.error, services, loaders: createLoaders(services, auth.viewer?.id ?? null) };
    },
  });

  // /ready answers within 1 s whatever PostgreSQL and Redis do (src/server/readiness.ts).
  const readyLog = log.child({ source: 'readiness' });
  const readiness = new Readiness({
    probes: {
      postgresql: () => db.selectNoFrom((eb) => eb.lit(1).as('one')).execute(),
      redis: async () => {
        // While ioredis reconnects, a ping would wait in its offline queue: not ready, now.
        if (redis.status !== 'ready') throw new Error(`connection ${redis.status}`);
        await redis.ping();
      },
    },
    onChange: (dependency, ok, detail) => {
      if (ok) readyLog.info({ dependency }, 'dependency answers again');
      else readyLog.warn({ dependency, detail }, 'dependency does not answer; /ready says 503');
    },
  });

  // Anonymous stock reads are answered by the fast lane from here while their sale has not changed.
  const responseCache = config.RESPONSE_CACHE_ENABLED
    ? new ResponseCache({ schema, persisted, registry, maxAgeMs: config.RESPONSE_CACHE_MAX_AGE_MS })
    : null;
  const cacheEvents = responseCache && new ResponseCacheInvalidation(
    responseCache, subscriberConnection, config.REDIS_PREFIX, log.child({ source: 'response-cache' }),
  );
  await cacheEvents?.start(services.events);
  const metricsEndpoint = new MetricsEndpoint(registry, config, log.child({ source: 'metrics' }));
  const fastLane = new FastLane(yoga as unknown as ConstructorParameters<typeof FastLane>[0], persisted, registry, hardening.cors, responseCache);
  // The landing page, the /live index and the sale pages (src/live-page/serve.ts).
  const pages = { directory: new SaleDirectory(db), graphiql: config.GRAPHIQL ?? config.NODE_ENV !== 'production' };
  const server = createServer(hardening.serverOptions, async (req: IncomingMessage, res: ServerResponse) => {
    hardening.applyHeaders(res);
    const path = req.url?.split('?')[0];
    if (path === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (path === '/ready') {
      // Names the dependencies only: what a driver said stays in the log.
      const failed = await readiness.check();
      // A read replica down or behind degrades, never fails: its reads go to the primary meanwhile.
      const replicaState = reads.replica ? reads.status() : null;
      const readReplica = replicaState && { state: replicaState.state, lagMs: replicaState.lagMs, paused: replicaState.paused, ...(replicaState.reason ? { reason: replicaState.reason } : {}) };
      const degraded = replicaState && replicaState.state !== 'ok' ? { status: 'degraded', degraded: ['read-replica'] } : null;
      res.writeHead(failed.length ? 503 : 200, { 'content-type': 'application/json' })
        .end(JSON.stringify(failed.length
          ? { status: 'unavailable', reason: failed.join(', '), ...(readReplica ? { readReplica } : {}) }
          : { status: 'ready', ...degraded, ...(readReplica ? { readReplica } : {}) }));
      return;
    }
    if (path === '/metrics') {
      // Open outside production; in production only with METRICS_TOKEN (src/server/metrics-endpoint.ts).
      await metricsEndpoint.serveOnApiPort(req, res);
      return;
    }
    if (isPagePath(path)) {
      await servePage(req, res, path, pages);
      return;
    }
    shedder.track(req, res);
    fastLane.handle(req, res);
  });
  server.keepAliveTimeout = 65_000;
  hardening.configureServer(server, registry);
  const websocket = attachWebSocket({
    server, yoga, tokens: services.tokens, maxSubscriptions: config.WS_MAX_SUBSCRIPTIONS, keepAliveMs: config.WS_KEEPALIVE_MS,
    maxPayloadBytes: config.HTTP_MAX_BODY_BYTES, log: log.child({ source: 'websocket' }),
    maxMessagesPerSecond: config.WS_MAX_MESSAGES_PER_SECOND, messageBurst: config.WS_MESSAGE_BURST, maxBufferedBytes: config.WS_MAX_BUFFERED_BYTES, registry,
    admitShared: queryLimits.enabled ? queryLimits.admitShared : undefined,
  });
  metrics.observe({ services, redis, websocketConnections: () => websocket.connections });

  const workers: Repeater[] = [];
  if (opts.workers !== false) {
    workers.push(
      new Repeater('hold-sweeper', config.SWEEP_INTERVAL_MS, () => services.sweeper.sweepAll(), log),
      new Repeater('ledger-drainer', config.DRAIN_INTERVAL_MS, () => services.ledger.drainAll().then(() => undefined), log),
      new Repeater('stock-recovery', config.RECOVERY_INTERVAL_MS, () => services.recovery.checkAll(), log),
      new Repeater('stock-reconciler', config.RECONCILE_INTERVAL_MS, () => services.recovery.reconcile().then(() => undefined), log),
      new Repeater('sale-status-watch', config.STATUS_WATCH_INTERVAL_MS, () => services.live.watch.tick(), log),
      new Repeater('queue-admission', config.QUEUE_ADMIT_INTERVAL_MS, () => services.waitingRoom.advanceAll(), log),
    );
  }

  // A storm opens thousands of connections at once; Node's default accept queue (511) overflowed
  // while the event loop was busy, and each dropped SYN cost its client a 1 s, then 3 s, retry.
  // The kernel caps this at net.core.somaxconn.
  await new Promise<void>((resolve) => server.listen({ port: config.PORT, host: config.HOST, backlog: 4096 }, resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.HOST}:${port}`;
  log.info({ url: `${url}/graphql` }, 'flash-sale API listening');
  // Every start, not only the one that seeded: where a browser should go.
  const open = startUrls(url, { graphiql: pages.graphiql, sampleSaleId });
  log.info(open.urls, open.msg);
  await metricsEndpoint.listen();

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      // Stop accepting, let in-flight requests finish, then close the workers and connections.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Subscriptions never finish by themselves: once the WebSocket queries and mutations already
      // running are answered, sockets close with 1001 and SSE streams end; then requests are awaited.
      await websocket.close(config.SHUTDOWN_TIMEOUT_MS).catch((err) => log.warn({ err: String(err) }, 'closing WebSocket server failed'));
      await services.live.close();
      sse.close();
      await cacheEvents?.close();
      // Keep-alive connections go idle as their request (or SSE stream) finishes; close them then, not at the client's whim.
      const idleSweep = setInterval(() => server.closeIdleConnections(), 50);
      await Promise.race([closed, new Promise((r) => setTimeout(r, config.SHUTDOWN_TIMEOUT_MS))]);
      clearInterval(idleSweep);
      server.closeAllConnections();
      await metricsEndpoint.close();
      await Promise.all(workers.map((w) => w.stop()));
      shedder.close();
      services.tiers.close();
      await services.ledger.drainAll().catch(() => undefined);
      await Promise.allSettled([redis.quit(), publisher.quit()]);
      reads.close();
      await db.destroy().catch(() => undefined);
      await replica?.db.destroy().catch(() => undefined);
      void pool;
    })());

  return { config, db, redis, services, log, server, yoga, url, stop };
}
