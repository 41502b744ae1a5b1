import { auditSale } from '../correctness-audit.js';
import { customerOf, type BenchContext } from '../bench-context.js';
import { GraphqlClient, outcomeOf } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { driveClosedLoop, driveOpenLoop, type Attempt } from '../load-drivers.js';
import { PURCHASE } from '../operations.js';
import { requestBody } from '../persisted.js';
import { createBenchSale } from '../sale-setup.js';
import { CpuMeter, scenarioResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch } from '../server-process.js';

/**
 * The sale-start storm: `attempts` purchases from `customers` against `stock` units, in a closed
 * loop (fixed concurrency) or an open loop (fixed arrival rate). Audited against PostgreSQL after.
 */
export async function runPurchaseStorm(ctx: BenchContext, mode: 'closed' | 'open'): Promise<ScenarioResult> {
  const { opts } = ctx;
  const sale = await createBenchSale(ctx.setup, ctx.admin, { name: `storm-${mode}`, stock: opts.stock, perUserLimit: opts.perUserLimit });
  const connections = mode === 'closed' ? opts.concurrency : opts.maxInFlight;
  const client = new GraphqlClient(ctx.server.origin, connections, opts.origin);
  const recorder = new LatencyRecorder();
  const orderIds = new Set<string>();
  const customers = Math.min(opts.customers, ctx.tokens.length);
  const attempts = mode === 'closed' ? opts.attempts : opts.openAttempts;

  const attempt: Attempt = async (i) => {
    const body = requestBody(PURCHASE, { input: { saleItemId: sale.itemId, quantity: 1, idempotencyKey: `${ctx.runTag}-${mode}-${i}` } });
    const { code, value } = outcomeOf(await client.post(body, ctx.tokens[customerOf(i, customers)]), 'purchase');
    if (code === 'OK' && value && !value.replayed) orderIds.add(value.order.id);
    return code;
  };

  const label = mode === 'closed' ? `storm, closed loop ×${opts.concurrency}` : `storm, open loop ${opts.arrivalRate}/s`;
  const bar = ctx.progress.bar(label, attempts, 'attempts');
  const watch = new ServerWatch(ctx.server);
  const before = ctx.server.rssMb();
  watch.start();
  const cpu = new CpuMeter(() => ctx.server.cpuMs());
  const common = { attempts, timeoutMs: opts.scenarioTimeoutSeconds * 1000, recorder, onProgress: (n: number) => bar.update(n) };
  let drive;
  try {
    drive = mode === 'closed'
      ? await driveClosedLoop(attempt, { ...common, concurrency: opts.concurrency })
      : await driveOpenLoop(attempt, { ...common, ratePerSecond: opts.arrivalRate, maxInFlight: opts.maxInFlight });
  } finally {
    bar.stop();
    await client.close();
  }
  const peaks = watch.stop();
  const result = scenarioResult(
    `storm-${mode}`,
    mode === 'closed'
      ? `${attempts} purchase attempts, ${customers} customers, ${opts.stock} units, ${opts.concurrency} in flight`
      : `${attempts} purchase attempts at ${opts.arrivalRate}/s (max ${opts.maxInFlight} in flight), ${customers} customers, ${opts.stock} units`,
    attempts, drive, recorder,
  );
  Object.assign(result, cpu.perRequest(drive.completed));
  result.audit = await auditSale({ databaseUrl: ctx.databaseUrl, client: ctx.setup, sale, clientOrderIds: orderIds, expectSoldOut: attempts >= opts.stock * 2 });
  result.rssMb = { before, during: peaks.rssPeakMb, after: ctx.server.rssMb() };
  result.acceptQueuePeak = peaks.acceptQueuePeak;
  if (mode === 'open') result.extra = { targetRate: opts.arrivalRate, maxScheduleLagMs: drive.maxScheduleLagMs };
  return result;
}
