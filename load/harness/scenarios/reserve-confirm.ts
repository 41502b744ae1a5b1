import { auditSale } from '../correctness-audit.js';
import { customerOf, type BenchContext } from '../bench-context.js';
import { GraphqlClient, outcomeOf } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { driveClosedLoop, type Attempt } from '../load-drivers.js';
import { CONFIRM, RESERVE } from '../operations.js';
import { requestBody } from '../persisted.js';
import { createBenchSale } from '../sale-setup.js';
import { CpuMeter, scenarioResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch } from '../server-process.js';
import { performance } from 'node:perf_hooks';

/**
 * The two-step flow: `reserve`, and on success `confirmReservation` at once. The main latency is the
 * whole flow; reserve and confirm are also reported alone.
 */
export async function runReserveConfirm(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts } = ctx;
  const sale = await createBenchSale(ctx.setup, ctx.admin, { name: 'flow', stock: opts.stock, perUserLimit: opts.perUserLimit });
  const client = new GraphqlClient(ctx.server.origin, opts.flowConcurrency, opts.origin);
  const recorder = new LatencyRecorder();
  const reserveLatency = new LatencyRecorder();
  const confirmLatency = new LatencyRecorder();
  const orderIds = new Set<string>();
  const customers = Math.min(opts.customers, ctx.tokens.length);

  const attempt: Attempt = async (i) => {
    const token = ctx.tokens[customerOf(i, customers)];
    const t0 = performance.now();
    const reserveBody = requestBody(RESERVE, { input: { saleItemId: sale.itemId, quantity: 1, idempotencyKey: `${ctx.runTag}-flow-${i}` } });
    const reserved = outcomeOf(await client.post(reserveBody, token), 'reserve');
    reserveLatency.record(performance.now() - t0, reserved.code);
    if (reserved.code !== 'OK' || !reserved.value) return `reserve:${reserved.code}`;
    const confirmBody = requestBody(CONFIRM, { id: reserved.value.reservation.id });
    let confirmed = { code: 'NOT_SENT', value: null as Record<string, any> | null };
    // A phone retries "try again" (a shed or failed commit) on its held reservation; the hold
    // stays ours meanwhile, so the audit can still expect every unit sold.
    for (let attempt = 0; attempt < 5; attempt++) {
      const t1 = performance.now();
      confirmed = outcomeOf(await client.post(confirmBody, token), 'confirmReservation');
      confirmLatency.record(performance.now() - t1, confirmed.code);
      if (confirmed.code !== 'TEMPORARILY_UNAVAILABLE') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (confirmed.code === 'OK' && confirmed.value) orderIds.add(confirmed.value.order.id);
    return `confirm:${confirmed.code}`;
  };

  const bar = ctx.progress.bar(`reserve + confirm ×${opts.flowConcurrency}`, opts.flowAttempts, 'flows');
  const watch = new ServerWatch(ctx.server);
  const before = ctx.server.rssMb();
  watch.start();
  const cpu = new CpuMeter(() => ctx.server.cpuMs());
  let drive;
  try {
    drive = await driveClosedLoop(attempt, { attempts: opts.flowAttempts, concurrency: opts.flowConcurrency, timeoutMs: opts.scenarioTimeoutSeconds * 1000, recorder, onProgress: (n) => bar.update(n) });
  } finally {
    bar.stop();
    await client.close();
  }
  const result = scenarioResult('flow', `${opts.flowAttempts} reserve (+ confirm on success), ${customers} customers, ${opts.stock} units, ${opts.flowConcurrency} in flight`, opts.flowAttempts, drive, recorder);
  Object.assign(result, cpu.perRequest(drive.completed));
  const peaks = watch.stop();
  result.rssMb = { before, during: peaks.rssPeakMb, after: ctx.server.rssMb() };
  result.acceptQueuePeak = peaks.acceptQueuePeak;
  result.extra = { reserve: { latency: reserveLatency.summary(), codes: reserveLatency.byCode() }, confirm: { latency: confirmLatency.summary(), codes: confirmLatency.byCode() } };
  result.audit = await auditSale({ databaseUrl: ctx.databaseUrl, client: ctx.setup, sale, clientOrderIds: orderIds, expectSoldOut: opts.flowAttempts >= opts.stock * 2 });
  return result;
}
