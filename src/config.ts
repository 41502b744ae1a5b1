import { z } from 'zod';

const DEV_JWT_SECRET = 'dev-secret-change-me';
/** Production refuses a shorter JWT_SECRET. */
const MIN_PRODUCTION_JWT_SECRET_BYTES = 32;
// 32 bytes of zeros is obviously not a secret; production refuses it.
const DEV_DATA_KEY = Buffer.alloc(32, 7).toString('base64');

/** "<max>/<window>", e.g. "20/1s" or "10/60s": at most max calls per fixed window. */
const rateRule = z
  .string()
  .regex(/^\d+\/\d+(ms|s|m|h)$/, 'must look like "20/1s" (calls per window; ms, s, m or h)')
  .transform((v) => {
    const [, max, amount, unit] = /^(\d+)\/(\d+)(ms|s|m|h)$/.exec(v)!;
    const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
    return { max: Number(max), windowMs: Number(amount) * unitMs };
  })
  .refine((r) => r.max >= 1 && r.windowMs >= 1, 'max and window must be at least 1');

/**
 * A token bucket (GCRA): "burst:<n>,per_s:<rate>", e.g. "burst:10,per_s:2" — up to n calls at once,
 * then `rate` a second (decimals allowed: per_s:0.5 is one call every 2 s). The fixed-window form
 * "<max>/<window>" still parses, as burst max refilled at max per window.
 */
const bucketRule = z
  .string()
  .transform((v, ctx) => {
    const fields = /^\s*burst\s*:\s*(\d+)\s*,\s*per_s\s*:\s*(\d+(?:\.\d+)?)\s*$/.exec(v);
    const windowed = /^(\d+)\/(\d+)(ms|s|m|h)$/.exec(v);
    if (fields) return { burst: Number(fields[1]), perSecond: Number(fields[2]) };
    if (windowed) {
      const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[windowed[3] as 'ms' | 's' | 'm' | 'h'];
      return { burst: Number(windowed[1]), perSecond: (Number(windowed[1]) * 1000) / (Number(windowed[2]) * unitMs) };
    }
    ctx.addIssue({ code: 'custom', message: 'must look like "burst:10,per_s:2" (calls at once, then calls a second)' });
    return z.NEVER;
  })
  .refine((r) => r.burst >= 1 && r.perSecond > 0, 'burst must be at least 1 and per_s above 0');

/** A rateRule, or "off" (null): no limit at all, not even its Redis call (load tests from one address). */
const rateRuleOrOff = z.string().transform((v, ctx) => {
  if (v === 'off') return null;
  const rule = rateRule.safeParse(v);
  if (rule.success) return rule.data;
  for (const issue of rule.error.issues) ctx.addIssue({ code: 'custom', message: `${issue.message}, or "off"` });
  return z.NEVER;
});

const boolish = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    PORT: z.coerce.number().int().min(0).max(65535).default(4000),
    HOST: z.string().min(1).default('127.0.0.1'),
    DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/flashsale'),
    DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(20),
    /**
     * A streaming read replica (optional; unset: the primary serves every read). Catalogue, sale
     * lists, order history and admin reports read from it; writes and the buying path stay on the
     * primary; a viewer who just wrote reads from the primary; a replica down or lagging beyond
     * DATABASE_READ_MAX_LAG_MS is left for the primary (src/db/read-routing.ts).
     */
    DATABASE_READ_URL: z.preprocess((v) => (v === '' ? undefined : v), z.string().url().optional()),
    DATABASE_READ_MAX_LAG_MS: z.coerce.number().int().min(100).max(600_000).default(2000),
    REDIS_URL: z.string().url().default('redis://127.0.0.1:6379/0'),
    REDIS_CLUSTER_NODES: z.string().optional(),
    /**
     * Redis Sentinel instead of one REDIS_URL host: "host:port,host:port" of the sentinels and the
     * name of the primary they watch (both or neither). REDIS_URL's user, password and database
     * still apply; its host and port are not used. Every connection (commands, publisher, pub/sub
     * subscribers) asks the sentinels for the current primary and follows a failover.
     */
    REDIS_SENTINELS: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
    REDIS_SENTINEL_NAME: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
    REDIS_PREFIX: z.string().max(64).default('fs:'),
    JWT_SECRET: z.string().min(8).default(DEV_JWT_SECRET),
    JWT_JWKS_URL: z.string().url().optional(),
    /** When set, identity-provider tokens must carry this `iss` / `aud`. */
    JWT_JWKS_ISSUER: z.string().min(1).optional(),
    JWT_JWKS_AUDIENCE: z.string().min(1).optional(),
    /** Provider tokens claiming role admin are admins only when this is true; else customers. */
    JWT_JWKS_ALLOW_ADMIN: boolish.default(false),
    /**
     * The longest a bearer token may be valid, ours (HS256) and a provider's alike: a token without
     * `exp`, or valid longer (exp − iat, or exp − now without iat), is refused. Login sessions and
     * `npm run token` last this long at most. Default 24 h.
     */
    JWT_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(60).max(30 * 86_400).default(86_400),
    DATA_KEY: z.string().default(DEV_DATA_KEY),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    SEED_SAMPLE_SALE: boolish.optional(),
    GRAPHIQL: boolish.optional(),
    /** Schema introspection; default on outside production, where it only helps someone map the API. */
    INTROSPECTION: boolish.optional(),
    /**
     * /metrics (contract): open on the API port outside production. In production the API port
     * serves it only with `Authorization: Bearer <METRICS_TOKEN>`, and not at all without a token;
     * METRICS_PORT (any environment) serves it on a listener of its own (METRICS_HOST, default HOST),
     * which in production asks for the token too when one is set. See src/server/metrics-endpoint.ts.
     */
    METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
    METRICS_HOST: z.string().min(1).optional(),
    METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    /**
     * Document limits for a public endpoint; the contract's operations stay far inside them. Cost is
     * graphql-armor's: objects 2, scalars 1, ×1.5 per level, × a literal `first`; a full catalogue
     * page (100 sales with items and products) costs about 19,000.
     */
    GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(1).max(100).default(12),
    GRAPHQL_MAX_COST: z.coerce.number().int().min(1).max(10_000_000).default(50_000),
    GRAPHQL_MAX_ALIASES: z.coerce.number().int().min(0).max(1000).default(30),
    GRAPHQL_MAX_DIRECTIVES: z.coerce.number().int().min(0).max(1000).default(50),
    GRAPHQL_MAX_TOKENS: z.coerce.number().int().min(50).max(100_000).default(2000),
    /** Operations one HTTP request may carry as a JSON array; 0 refuses batches. */
    GRAPHQL_BATCH_LIMIT: z.coerce.number().int().min(0).max(100).default(0),
    /** Larger request bodies are refused with 413 before they are parsed. */
    HTTP_MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(50_000_000).default(100_000),
    /** Time a client has to send a whole request (headers and body). */
    HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
    /** Time a client has to send a request's headers (capped by HTTP_REQUEST_TIMEOUT_MS); a silent new connection gets as long. */
    HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(10_000),
    /**
     * Open TCP connections (HTTP, SSE, WebSocket) one client address may hold; more are closed on
     * arrival. 0 turns it off. Default 2048, but off with TRUST_PROXY_HOPS > 0: then every
     * connection comes from the proxy, which should limit per client itself.
     */
    HTTP_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(0).max(1_000_000).optional(),
    /** Browser origins allowed to call the API: "*", a comma-separated list, or "" for none; default "*" outside production, none in it. */
    CORS_ORIGINS: z.string().optional(),
    SECURITY_HEADERS: boolish.default(true),
    /** The CSP frame-ancestors sources: who may embed our pages (GraphiQL) in a frame. */
    FRAME_ANCESTORS: z.string().min(1).default("'none'"),
    REFERRER_POLICY: z.string().min(1).default('no-referrer'),
    /** Strict-Transport-Security max-age; 0 sends none (set it where TLS ends at us or the proxy passes it). */
    HSTS_MAX_AGE_SECONDS: z.coerce.number().int().min(0).max(63_072_000).default(0),
    /**
     * Load shedding: while this many GraphQL requests are in flight, or the event loop's p99 delay
     * is over the threshold, new customer mutations answer TEMPORARILY_UNAVAILABLE at once instead
     * of queueing. 0 turns a check off. The event-loop check defaults to 1000 ms, but off under
     * NODE_ENV=test: tests run client and server in one process and count exact outcomes.
     */
    LOAD_SHED_MAX_IN_FLIGHT: z.coerce.number().int().min(0).max(1_000_000).default(2000),
    LOAD_SHED_EVENT_LOOP_P99_MS: z.coerce.number().int().min(0).max(60_000).optional(),
    LOAD_SHED_RETRY_AFTER_SECONDS: z.coerce.number().int().min(1).max(60).default(1),
    /** How often each instance sweeps overdue holds; the contract promises units back within 2 s. */
    SWEEP_INTERVAL_MS: z.coerce.number().int().min(50).max(1000).default(250),
    /**
     * How long after its end a sale stays in the live set that sweepers, drainers and watchers visit
     * (and recovery rebuilds); then, once idle, it is retired and costs nothing per tick. Keep it
     * above an hour: `me.reservations` lists holds that ended within the last hour.
     */
    SALE_RETIRE_AFTER_MS: z.coerce.number().int().min(1000).max(30 * 86_400_000).default(2 * 3_600_000),
    /** How often each instance copies the Redis ledger outbox into PostgreSQL. */
    DRAIN_INTERVAL_MS: z.coerce.number().int().min(50).max(2000).default(200),
    /**
     * Rate limits, counted in Redis and shared by every instance; admins are never limited. Login and
     * register: fixed windows. Buying and fairness mutations: token buckets (GCRA) per customer (by
     * tier) and per client address.
     */
    RATE_LIMIT_ENABLED: boolish.default(true),
    /**
     * login/register per email from one client address: the brute-force guard ("20 rapid wrong
     * logins get RATE_LIMITED"), counted before the password check; a success from that address
     * clears it. Per address, so guesses from elsewhere never lock the owner out (issue 17 d).
     */
    RATE_LIMIT_AUTH_PER_EMAIL: rateRule.default({ max: 10, windowMs: 60_000 }),
    /**
     * login/register per email from every address together: a generous ceiling against guessing
     * from many addresses. Past it the email is slowed, not closed: one attempt per backoff
     * interval, 1 s doubling up to RATE_LIMIT_AUTH_BACKOFF_MAX_SECONDS, while the attempts go on.
     */
    RATE_LIMIT_AUTH_EMAIL_CEILING: rateRule.default({ max: 100, windowMs: 15 * 60_000 }),
    RATE_LIMIT_AUTH_BACKOFF_MAX_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
    /** login/register per client IP: credential stuffing across many emails; scrypt caps throughput near this anyway. */
    RATE_LIMIT_AUTH_PER_IP: rateRule.default({ max: 300, windowMs: 10_000 }),
    /**
     * Buying and fairness mutations per customer, by the customer's tier ("burst:<n>,per_s:<rate>"):
     * a person's taps and a few tabs at the opening, not a script's. A new attempt draws a token; a
     * replay of an idempotency key draws none. The tier is an admin's `setCustomerTier`, else the
     * identity provider's `tier` claim, else STANDARD.
     */
    RATE_LIMIT_TIER_STANDARD: bucketRule.default({ burst: 10, perSecond: 2 }),
    RATE_LIMIT_TIER_TRUSTED: bucketRule.default({ burst: 30, perSecond: 5 }),
    RATE_LIMIT_TIER_RESTRICTED: bucketRule.default({ burst: 3, perSecond: 0.5 }),
    /** Replaced by RATE_LIMIT_TIER_STANDARD; refused when set, so an old setting is not silently dropped. */
    RATE_LIMIT_BUYING_PER_CUSTOMER: z.string().optional(),
    /** Buying and fairness mutations per client address, whatever the tier: high, since a load test or a carrier NAT is one address. */
    RATE_LIMIT_BUYING_PER_IP: bucketRule.default({ burst: 10_000, perSecond: 10_000 }),
    /** How often each instance reloads the customer tiers changed in PostgreSQL (by another instance's setCustomerTier). */
    CUSTOMER_TIER_REFRESH_MS: z.coerce.number().int().min(50).max(60_000).default(1000),
    /**
     * Queries per client through @envelop/rate-limiter (src/server/query-rate-limit.ts): each root
     * field selected counts one, in fixed windows counted in Redis. A client is a customer (valid
     * customer token) by id, else an address (see TRUST_PROXY_HOPS: behind a proxy, set it, or
     * every anonymous client shares the proxy's address). Anonymous reads the response cache
     * answers are not counted. "off" lifts a limit. Per customer: 50/s on average, bursts of 500.
     */
    RATE_LIMIT_QUERY_PER_CUSTOMER: rateRuleOrOff.default({ max: 500, windowMs: 10_000 }),
    /** Queries per client address without a customer token: higher, since a carrier NAT or an office is one address. */
    RATE_LIMIT_QUERY_PER_IP: rateRuleOrOff.default({ max: 1000, windowMs: 10_000 }),
    /** Subscriptions a customer may start (SSE or graphql-ws); ones already running are never cut. */
    RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER: rateRuleOrOff.default({ max: 50, windowMs: 10_000 }),
    /** Subscriptions a client address without a customer token may start. */
    RATE_LIMIT_SUBSCRIBE_PER_IP: rateRuleOrOff.default({ max: 200, windowMs: 10_000 }),
    /** Proxies in front of us that append to X-Forwarded-For; 0 trusts only the socket's address. */
    TRUST_PROXY_HOPS: z.coerce.number().int().min(0).max(10).default(0),
    /** How long a purchase's order commit may take before its hold is resolved against PostgreSQL; also how long a rebuild after Redis data loss waits. */
    CONFIRM_WINDOW_MS: z.coerce.number().int().min(500).max(60_000).default(10_000),
    /** How often each instance checks that every current sale is live in Redis (rebuilding lost ones). */
    RECOVERY_INTERVAL_MS: z.coerce.number().int().min(100).max(60_000).default(1000),
    /** How often each instance compares units sold in Redis with PostgreSQL (drift metric and log). */
    RECONCILE_INTERVAL_MS: z.coerce.number().int().min(1000).max(3_600_000).default(30_000),
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).max(60000).default(8000),
    /** Subscriptions one WebSocket connection may hold at once; a client needing more is misbehaving. */
    WS_MAX_SUBSCRIPTIONS: z.coerce.number().int().min(1).max(1000).default(20),
    /** WebSocket ping period; a socket that misses a pong within it is closed (dead phones, silent proxies). */
    WS_KEEPALIVE_MS: z.coerce.number().int().min(1000).max(120_000).default(12_000),
    /**
     * Frames (messages, pings, pongs) one WebSocket may send: a token bucket of WS_MESSAGE_BURST refilled
     * at WS_MAX_MESSAGES_PER_SECOND. Over it the socket is closed with 1008 "Too many messages".
     */
    WS_MAX_MESSAGES_PER_SECOND: z.coerce.number().min(0.1).max(100_000).default(50),
    WS_MESSAGE_BURST: z.coerce.number().int().min(1).max(1_000_000).default(200),
    /** Bytes waiting to be written to one WebSocket; a client that lets more pile up (does not read) is closed with 1013. */
    WS_MAX_BUFFERED_BYTES: z.coerce.number().int().min(16_384).max(1_073_741_824).default(1_048_576),
    /** How often each instance looks for status transitions; the contract promises them within 1 s. */
    STATUS_WATCH_INTERVAL_MS: z.coerce.number().int().min(50).max(900).default(200),
    /** Minimum gap between two stock events of one sale per instance (100 ms: at most ~10 a second). */
    LIVE_STOCK_INTERVAL_MS: z.coerce.number().int().min(20).max(5000).default(100),
    /** How long an admission token (and its waiting-room ticket) stays valid once admitted. */
    ADMISSION_TOKEN_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
    /** How often each instance advances waiting-room admission; reads advance it too. */
    QUEUE_ADMIT_INTERVAL_MS: z.coerce.number().int().min(20).max(1000).default(200),
    /**
     * Anonymous stock reads (`sale(id)`, `saleItem(id)` of public fields) share one answer per
     * instance until their sale changes (see src/server/response-cache.ts); false turns it off.
     */
    RESPONSE_CACHE_ENABLED: boolish.default(true),
    /** The longest a shared answer is served even if no change was heard (a lost event, a late clock transition). */
    RESPONSE_CACHE_MAX_AGE_MS: z.coerce.number().int().min(1).max(10_000).default(1000),
    /**
     * Automatic persisted queries (Apollo's `persistedQuery` extension): a hash sent with its text
     * is registered in Redis for every instance, so later requests send the hash alone
     * (src/server/apq.ts). false: only the trusted documents' hashes are known.
     */
    APQ_ENABLED: boolish.default(true),
    /** How long a registered text is kept in Redis; after that the client registers it again on its next NOT_FOUND. */
    APQ_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 86_400).default(86_400),
    /** Longer texts (UTF-8 bytes) are answered but not registered. */
    APQ_MAX_QUERY_BYTES: z.coerce.number().int().min(256).max(1_048_576).default(16_384),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV !== 'production') return;
    if (env.JWT_SECRET === DEV_JWT_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'the development default is refused when NODE_ENV=production; set a secret of your own' });
    } else if (Buffer.byteLength(env.JWT_SECRET, 'utf8') < MIN_PRODUCTION_JWT_SECRET_BYTES) {
      // HS256 is as strong as its key: RFC 7518 asks for at least the hash's 256 bits.
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: `must be at least ${MIN_PRODUCTION_JWT_SECRET_BYTES} bytes when NODE_ENV=production (e.g. openssl rand -base64 48)` });
    }
    if (env.DATA_KEY === DEV_DATA_KEY) {
      ctx.addIssue({ code: 'custom', path: ['DATA_KEY'], message: 'the development default is refused when NODE_ENV=production; set 32 random bytes, base64' });
    }
  })
  .superRefine((env, ctx) => {
    if ((env.REDIS_SENTINELS === undefined) !== (env.REDIS_SENTINEL_NAME === undefined)) {
      const missing = env.REDIS_SENTINELS === undefined ? 'REDIS_SENTINELS' : 'REDIS_SENTINEL_NAME';
      ctx.addIssue({ code: 'custom', path: [missing], message: 'REDIS_SENTINELS and REDIS_SENTINEL_NAME go together: set both (sentinel addresses and the primary\'s name) or neither' });
    }
    if (env.REDIS_SENTINELS !== undefined) {
      const bad = env.REDIS_SENTINELS.split(',').map((a) => a.trim()).filter((a) => !/^[^\s:,]+:\d{1,5}$/.test(a) || Number(a.split(':').pop()) > 65535);
      if (bad.length) ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINELS'], message: `must be a comma-separated list of host:port (not ${bad.map((b) => JSON.stringify(b)).join(', ')})` });
      if (env.REDIS_CLUSTER_NODES !== undefined) ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINELS'], message: 'use either REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both (a cluster fails over by itself)' });
    }
  })
  .superRefine((env, ctx) => {
    if (env.METRICS_PORT !== undefined && env.METRICS_PORT === env.PORT) {
      ctx.addIssue({ code: 'custom', path: ['METRICS_PORT'], message: 'must differ from PORT' });
    }
  })
  .superRefine((env, ctx) => {
    if (env.RATE_LIMIT_BUYING_PER_CUSTOMER !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['RATE_LIMIT_BUYING_PER_CUSTOMER'], message: 'replaced by RATE_LIMIT_TIER_STANDARD (and _TRUSTED, _RESTRICTED), e.g. "burst:10,per_s:2"' });
    }
  })
  .superRefine((env, ctx) => {
    if (Buffer.from(env.DATA_KEY, 'base64').length !== 32) {
      ctx.addIssue({ code: 'custom', path: ['DATA_KEY'], message: 'must be 32 bytes, base64-encoded' });
    }
  });

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {}

/** Parses an environment once; every problem is listed, not just the first. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}

export function loadConfig(overrides: Partial<Record<keyof Config, string>> = {}): Config {
  return parseConfig({ ...process.env, ...overrides });
}
