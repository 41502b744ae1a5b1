import { Pool } from 'undici';
import { newChildId, newId } from '../../../src/services/ids.js';
import type { BenchOptions } from '../bench-options.js';
import { customerOf } from '../bench-context.js';
import { assertLoopback } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { driveClosedLoop, driveOpenLoop, type Attempt } from '../load-drivers.js';
import type { Progress } from '../progress.js';
import { CpuMeter, scenarioResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch, startServerProcess } from '../server-process.js';

/**
 * The same storm against bare-ceiling-server.ts: what this machine can do for a purchase decision
 * without GraphQL. `closed`: the closed loop's attempts, customers, stock, concurrency and workers
 * (its throughput is the ceiling of ours); `open`: the open loop's arrival rate, attempts and
 * in-flight cap (its latency is what a bare server gets from this machine and load generator).
 */
export async function runBareCeiling(opts: BenchOptions, o: { redisUrl: string; prefix: string; progress: Progress }, mode: 'closed' | 'open'): Promise<ScenarioResult> {
  const saleId = newId();
  const itemId = newChildId(saleId);
  const server = await startServerProcess({
    entry: 'load/harness/bare-ceiling-server.ts', nodeArgs: ['--import', 'tsx'], host: opts.host, readyPath: '/ready',
    env: {
      REDIS_URL: o.redisUrl, REDIS_PREFIX: o.prefix, WORKERS: String(opts.workers), CEILING_SALE_ID: saleId, CEILING_ITEM_ID: itemId,
      CEILING_STOCK: String(opts.stock), CEILING_LIMIT: String(opts.perUserLimit),
    },
  });
  assertLoopback(server.origin);
  const attempts = mode === 'closed' ? opts.attempts : opts.openAttempts;
  const pool = new Pool(server.origin, { connections: mode === 'closed' ? opts.concurrency : opts.maxInFlight, pipelining: 1, keepAliveTimeout: 60_000 });
  const recorder = new LatencyRecorder();
  const attempt: Attempt = async (i) => {
    const body = JSON.stringify({ customerId: `c-${customerOf(i, opts.customers)}`, idempotencyKey: `ceiling-${mode}-${i}` });
    const res = await pool.request({ path: '/reserve', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await res.body.text();
    return res.statusCode === 200 ? (JSON.parse(text) as { code: string }).code : `HTTP_${res.statusCode}`;
  };
  const label = mode === 'closed' ? `bare ceiling, closed loop ×${opts.concurrency}` : `bare ceiling, open loop ${opts.arrivalRate}/s`;
  const bar = o.progress.bar(label, attempts, 'attempts');
  const watch = new ServerWatch(server);
  const before = server.rssMb();
  watch.start();
  const cpu = new CpuMeter(() => server.cpuMs());
  try {
    const common = { attempts, timeoutMs: opts.scenarioTimeoutSeconds * 1000, recorder, onProgress: (n: number) => bar.update(n) };
    const drive = mode === 'closed'
      ? await driveClosedLoop(attempt, { ...common, concurrency: opts.concurrency })
      : await driveOpenLoop(attempt, { ...common, ratePerSecond: opts.arrivalRate, maxInFlight: opts.maxInFlight });
    const load = mode === 'closed' ? `${attempts} attempts, ${opts.concurrency} in flight` : `${attempts} attempts at ${opts.arrivalRate}/s (max ${opts.maxInFlight} in flight)`;
    const result = scenarioResult(mode === 'closed' ? 'ceiling' : 'ceiling-open', `bare node:http + StockEngine.reserve (same Lua), ${load}, no GraphQL/JWT/PostgreSQL`, attempts, drive, recorder);
    Object.assign(result, cpu.perRequest(drive.completed));
    const peaks = watch.stop();
    result.rssMb = { before, during: peaks.rssPeakMb, after: server.rssMb() };
    result.acceptQueuePeak = peaks.acceptQueuePeak;
    const sold = result.codes.OK ?? 0;
    result.extra = { unitsReserved: sold, stock: opts.stock, ...(mode === 'open' ? { targetRate: opts.arrivalRate, maxScheduleLagMs: drive.maxScheduleLagMs } : {}) };
    return result;
  } finally {
    bar.stop();
    watch.stop();
    await pool.close();
    await server.stop();
  }
}
