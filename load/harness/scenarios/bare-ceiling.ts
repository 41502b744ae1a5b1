import { Pool } from 'undici';
import { newChildId, newId } from '../../../src/services/ids.js';
import type { BenchOptions } from '../bench-options.js';
import { customerOf } from '../bench-context.js';
import { assertLoopback } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { driveClosedLoop, type Attempt } from '../load-drivers.js';
import type { Progress } from '../progress.js';
import { CpuMeter, scenarioResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch, startServerProcess } from '../server-process.js';

/**
 * The same closed-loop storm (attempts, customers, stock, concurrency, workers) against
 * bare-ceiling-server.ts: what this machine can do for a purchase decision without GraphQL.
 */
export async function runBareCeiling(opts: BenchOptions, o: { redisUrl: string; prefix: string; progress: Progress }): Promise<ScenarioResult> {
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
  const pool = new Pool(server.origin, { connections: opts.concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const recorder = new LatencyRecorder();
  const attempt: Attempt = async (i) => {
    const body = JSON.stringify({ customerId: `c-${customerOf(i, opts.customers)}`, idempotencyKey: `ceiling-${i}` });
    const res = await pool.request({ path: '/reserve', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await res.body.text();
    return res.statusCode === 200 ? (JSON.parse(text) as { code: string }).code : `HTTP_${res.statusCode}`;
  };
  const bar = o.progress.bar(`bare ceiling ×${opts.concurrency}`, opts.attempts, 'attempts');
  const watch = new ServerWatch(server);
  const before = server.rssMb();
  watch.start();
  const cpu = new CpuMeter(() => server.cpuMs());
  try {
    const drive = await driveClosedLoop(attempt, { attempts: opts.attempts, concurrency: opts.concurrency, timeoutMs: opts.scenarioTimeoutSeconds * 1000, recorder, onProgress: (n) => bar.update(n) });
    const result = scenarioResult('ceiling', `bare node:http + StockEngine.reserve (same Lua), ${opts.attempts} attempts, ${opts.concurrency} in flight, no GraphQL/JWT/PostgreSQL`, opts.attempts, drive, recorder);
    Object.assign(result, cpu.perRequest(drive.completed));
    const peaks = watch.stop();
    result.rssMb = { before, during: peaks.rssPeakMb, after: server.rssMb() };
    result.acceptQueuePeak = peaks.acceptQueuePeak;
    const sold = result.codes.OK ?? 0;
    result.extra = { unitsReserved: sold, stock: opts.stock };
    return result;
  } finally {
    bar.stop();
    watch.stop();
    await pool.close();
    await server.stop();
  }
}
