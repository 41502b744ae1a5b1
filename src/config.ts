import { z } from 'zod';

const DEV_JWT_SECRET = 'dev-secret-change-me';
// 32 bytes of zeros is obviously not a secret; production refuses it.
const DEV_DATA_KEY = Buffer.alloc(32, 7).toString('base64');

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
    REDIS_URL: z.string().url().default('redis://127.0.0.1:6379/0'),
    REDIS_CLUSTER_NODES: z.string().optional(),
    REDIS_PREFIX: z.string().max(64).default('fs:'),
    JWT_SECRET: z.string().min(8).default(DEV_JWT_SECRET),
    JWT_JWKS_URL: z.string().url().optional(),
    DATA_KEY: z.string().default(DEV_DATA_KEY),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    SEED_SAMPLE_SALE: boolish.optional(),
    GRAPHIQL: boolish.optional(),
    /** How often each instance sweeps overdue holds; the contract promises units back within 2 s. */
    SWEEP_INTERVAL_MS: z.coerce.number().int().min(50).max(1000).default(250),
    /** How often each instance copies the Redis ledger outbox into PostgreSQL. */
    DRAIN_INTERVAL_MS: z.coerce.number().int().min(50).max(2000).default(200),
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).max(60000).default(8000),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV !== 'production') return;
    if (env.JWT_SECRET === DEV_JWT_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'the development default is refused when NODE_ENV=production; set a secret of your own' });
    }
    if (env.DATA_KEY === DEV_DATA_KEY) {
      ctx.addIssue({ code: 'custom', path: ['DATA_KEY'], message: 'the development default is refused when NODE_ENV=production; set 32 random bytes, base64' });
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
