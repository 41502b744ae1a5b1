import type { BenchContext } from '../bench-context.js';
import { GraphqlClient, outcomeOf } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { driveForDuration } from '../load-drivers.js';
import { SALE_AVAILABLE } from '../operations.js';
import { requestBody } from '../persisted.js';
import { createBenchSale } from '../sale-setup.js';
import { CpuMeter, scenarioResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch } from '../server-process.js';

/** Browsing during the sale: anonymous `sale { items { available } }` as fast as `readConcurrency` clients can ask. */
export async function runStockReads(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts } = ctx;
  const sale = await createBenchSale(ctx.setup, ctx.admin, { name: 'reads', stock: opts.stock, perUserLimit: opts.perUserLimit });
  const client = new GraphqlClient(ctx.server.origin, opts.readConcurrency, opts.origin);
  const recorder = new LatencyRecorder();
  const body = requestBody(SALE_AVAILABLE, { id: sale.saleId });
  const bar = ctx.progress.bar(`stock reads ×${opts.readConcurrency}`, opts.readSeconds, 's');
  const watch = new ServerWatch(ctx.server);
  const before = ctx.server.rssMb();
  watch.start();
  const cpu = new CpuMeter(() => ctx.server.cpuMs());
  let drive;
  try {
    drive = await driveForDuration(
      async () => {
        const reply = await client.post(body);
        if (reply.data?.sale?.items?.[0]?.available === opts.stock) return 'OK';
        return reply.data?.sale ? 'WRONG_AVAILABLE' : outcomeOf(reply, 'sale').code;
      },
      { seconds: opts.readSeconds, concurrency: opts.readConcurrency, recorder, onProgress: (s) => bar.update(s) },
    );
  } finally {
    bar.stop();
    await client.close();
  }
  const result = scenarioResult('reads', `sale { items { available } } for ${opts.readSeconds} s, ${opts.readConcurrency} in flight, no token`, drive.completed, drive, recorder);
  Object.assign(result, cpu.perRequest(drive.completed));
  const peaks = watch.stop();
  result.rssMb = { before, during: peaks.rssPeakMb, after: ctx.server.rssMb() };
  result.acceptQueuePeak = peaks.acceptQueuePeak;
  return result;
}
