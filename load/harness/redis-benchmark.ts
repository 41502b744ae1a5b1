import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { newChildId, newId } from '../../src/services/ids.js';
import { StockEngine } from '../../src/services/stock/engine.js';

const run = promisify(execFile);

export interface RedisBenchmarkResult {
  command: string;
  requestsPerSecond: number;
  p50Ms: number | null;
  p99Ms: number | null;
  skipped?: string;
}

/**
 * redis-benchmark of the reserve script itself (EVALSHA, 50 clients, not pipelined): the ceiling
 * of Redis for one sale's decisions, with no Node in the path. Skipped when the binary is missing.
 */
export async function benchmarkReserveScript(o: { redisUrl: string; prefix: string; requests: number; customers: number; stock: number; perUserLimit: number }): Promise<RedisBenchmarkResult> {
  const url = new URL(o.redisUrl);
  const host = url.hostname;
  if (!/^(127(\.\d{1,3}){3}|localhost)$/.test(host)) return { command: '', requestsPerSecond: 0, p50Ms: null, p99Ms: null, skipped: `Redis at ${host} is not on the loopback` };
  try {
    await run('redis-benchmark', ['--version']);
  } catch {
    return { command: '', requestsPerSecond: 0, p50Ms: null, p99Ms: null, skipped: 'redis-benchmark is not installed' };
  }
  const redis = new Redis(o.redisUrl);
  try {
    const saleId = newId();
    const itemId = newChildId(saleId);
    const engine = new StockEngine(redis, o.prefix);
    const now = Date.now();
    await engine.initSale(saleId, { startsAt: now - 1000, endsAt: now + 3600_000, perUserLimit: o.perUserLimit, holdSeconds: 300, state: 'OPEN', waitingRoom: false, epoch: 1, items: [{ id: itemId, stock: o.stock }] });
    // The script text exactly as StockEngine defines it (prelude + reserve), so the SHA is the one the servers call.
    const luaDir = new URL('../../src/services/stock/lua/', import.meta.url);
    const text = `${readFileSync(new URL('prelude.lua', luaDir), 'utf8')}\n${readFileSync(new URL('reserve.lua', luaDir), 'utf8')}`;
    const sha = (await redis.script('LOAD', text)) as string;
    // __rand_int__ gives each request its own customer, key and reservation id (within -r).
    const args = ['EVALSHA', sha, '1', engine.keys.meta(saleId), itemId, 'c__rand_int__', '1', 'k__rand_int__', 'purchase', `${saleId}.r__rand_int__`, '10000'];
    const { stdout } = await run('redis-benchmark', ['-h', host, '-p', url.port || '6379', '-n', String(o.requests), '-c', '50', '-r', String(o.customers), '--csv', ...args], { timeout: 120_000 });
    const lines = stdout.trim().split('\n').map((l) => l.split('","').map((c) => c.replace(/"/g, '')));
    const header = lines.find((l) => l[0] === 'test');
    const row = lines.find((l) => l[0] !== 'test');
    if (!row) throw new Error(`unexpected redis-benchmark output: ${stdout}`);
    const col = (name: string) => {
      const i = header?.indexOf(name) ?? -1;
      return i >= 0 ? Number(row[i]) : null;
    };
    return { command: `redis-benchmark -n ${o.requests} -c 50 -r ${o.customers} EVALSHA <reserve> …`, requestsPerSecond: Math.round(Number(row[1])), p50Ms: col('p50_latency_ms'), p99Ms: col('p99_latency_ms') };
  } finally {
    redis.disconnect();
  }
}
