import { randomBytes } from 'node:crypto';
import { deleteKeysWithPrefix, dropDatabase } from '../../src/dev/scratch.js';

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** A database and Redis prefix of the run's own, so a bench never touches anyone's data and cleans up after itself. */
export interface BenchIsolation {
  databaseUrl: string;
  redisPrefix: string;
  /** Prefix for the bare ceiling server and redis-benchmark, apart from the API's keys. */
  ceilingPrefix: string;
}

export function benchIsolation(): BenchIsolation {
  const tag = randomBytes(5).toString('hex');
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/fs_bench_${tag}`;
  return { databaseUrl: url.toString(), redisPrefix: `fsbench:${tag}:`, ceilingPrefix: `fsbench:${tag}:ceiling:` };
}

export async function dropBenchDatabase(databaseUrl: string): Promise<void> {
  const name = new URL(databaseUrl).pathname.slice(1);
  if (!/^fs_bench_[0-9a-f]+$/.test(name)) throw new Error(`refusing to drop ${name}: not a bench database`);
  await dropDatabase(databaseUrl);
}

export async function deleteRedisKeys(prefix: string): Promise<number> {
  if (!prefix.startsWith('fsbench:')) throw new Error(`refusing to delete ${prefix}*: not a bench prefix`);
  return deleteKeysWithPrefix(REDIS_URL, prefix);
}
