import { performance } from 'node:perf_hooks';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { BenchContext } from '../bench-context.js';
import { GraphqlClient, outcomeOf } from '../graphql-client.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { PURCHASE, SALE_LEVELS, SALE_STATUS_CHANGED, STOCK_CHANGED } from '../operations.js';
import { requestBody } from '../persisted.js';
import { createBenchSale, type BenchSale } from '../sale-setup.js';
import { skippedResult, type ScenarioResult } from '../scenario-result.js';
import { ServerWatch } from '../server-process.js';

const DESCRIPTION = 'WebSocket subscribers (graphql-ws) on saleStatusChanged + stockChanged; time from sell-out to each SOLD_OUT';
/** Units of the watched sale: a small sale sells out in one burst, so the sell-out instant is sharp. */
const WATCHED_STOCK = 20;
const CONNECT_PARALLELISM = 200;
const FIRST_EVENT_TIMEOUT_MS = 15_000;
const SOLD_OUT_TIMEOUT_MS = 10_000;

interface Watcher {
  client: Client;
  firstStatusAt: number;
  firstStockAt: number;
  statusSoldOutAt: number;
  stockSoldOutAt: number;
  failed: string | null;
}

/**
 * Opens `subscribers` WebSocket clients on one sale, sells the sale out with a burst of purchases,
 * and measures, per subscription, the delay from the sale's soldOutAt (the Redis clock of the
 * script that took the last unit) to the SOLD_OUT event. Skipped with the reason when the server
 * does not (yet) take graphql-ws connections.
 */
export async function runSubscribers(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts } = ctx;
  const sale = await createBenchSale(ctx.setup, ctx.admin, { name: 'watched', stock: WATCHED_STOCK, perUserLimit: 1 });
  const wsUrl = `${ctx.server.origin.replace(/^http/, 'ws')}/graphql`;

  const socketClass = webSocketFrom(ctx.opts.origin);
  const probe = await openWatcher(wsUrl, socketClass, sale.saleId, 5000);
  if (probe.failed) {
    probe.client.dispose();
    return skippedResult('subscribers', DESCRIPTION, `the server does not serve graphql-ws subscriptions at ${wsUrl} yet: ${probe.failed}`);
  }
  probe.client.dispose();

  const watch = new ServerWatch(ctx.server);
  const before = ctx.server.rssMb();
  watch.start();
  const watchers: Watcher[] = [];
  const bar = ctx.progress.bar(`subscribers connecting`, opts.subscribers, 'clients');
  const connectStarted = performance.now();
  try {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(CONNECT_PARALLELISM, opts.subscribers) }, async () => {
      while (next < opts.subscribers) {
        next++;
        watchers.push(await openWatcher(wsUrl, socketClass, sale.saleId, FIRST_EVENT_TIMEOUT_MS));
        bar.update(watchers.length);
      }
    }));
    bar.stop();
    const connectSeconds = (performance.now() - connectStarted) / 1000;
    const live = watchers.filter((w) => !w.failed);
    const rssConnected = ctx.server.rssMb();

    const { soldOutAt, codes: sellOutCodes } = await sellOut(ctx, sale);
    const until = Date.now() + SOLD_OUT_TIMEOUT_MS;
    while (Date.now() < until && live.some((w) => !w.statusSoldOutAt || !w.stockSoldOutAt)) await new Promise((r) => setTimeout(r, 20));

    const statusDelay = new LatencyRecorder();
    const stockDelay = new LatencyRecorder();
    for (const w of live) {
      statusDelay.record(w.statusSoldOutAt ? w.statusSoldOutAt - soldOutAt : SOLD_OUT_TIMEOUT_MS, w.statusSoldOutAt ? 'OK' : 'NOT_SEEN');
      stockDelay.record(w.stockSoldOutAt ? w.stockSoldOutAt - soldOutAt : SOLD_OUT_TIMEOUT_MS, w.stockSoldOutAt ? 'OK' : 'NOT_SEEN');
    }
    const failures = new Map<string, number>();
    for (const w of watchers) if (w.failed) failures.set(w.failed, (failures.get(w.failed) ?? 0) + 1);
    const status = statusDelay.summary();
    const peaks = watch.stop();
    const result: ScenarioResult = {
      name: 'subscribers',
      description: `${opts.subscribers} ${DESCRIPTION}`,
      attempts: opts.subscribers,
      seconds: Math.round(connectSeconds * 100) / 100,
      throughput: Math.round(live.length / Math.max(connectSeconds, 1e-9)),
      // The headline latency: sell-out → saleStatusChanged SOLD_OUT, per subscriber; max is the last one.
      latency: status,
      codes: { ...statusDelay.byCode(), ...Object.fromEntries([...failures].map(([k, v]) => [`CONNECT:${k}`, v])) },
      dropped: watchers.length - live.length,
      timedOut: statusDelay.byCode().NOT_SEEN !== undefined,
      rssMb: { before, during: peaks.rssPeakMb, after: 0 },
      acceptQueuePeak: peaks.acceptQueuePeak,
      extra: {
        connected: live.length,
        connectSeconds: Math.round(connectSeconds * 100) / 100,
        rssMbConnected: rssConnected,
        lastStatusSoldOutMs: status.max,
        sellOutPurchases: sellOutCodes,
        stockChanged: { latency: stockDelay.summary(), codes: stockDelay.byCode() },
      },
    };
    // "After" is once every client has gone and the server had 2 s to let go of them.
    disposeAll(watchers);
    await new Promise((r) => setTimeout(r, 2000));
    result.rssMb!.after = ctx.server.rssMb();
    return result;
  } finally {
    bar.stop();
    watch.stop();
    disposeAll(watchers);
  }
}

function disposeAll(watchers: Watcher[]): void {
  for (const w of watchers.splice(0)) w.client.dispose();
}

/** `ws`' WebSocket, sending `origin` on the upgrade as a browser does when one is given. */
export function webSocketFrom(origin: string): typeof WebSocket {
  if (!origin) return WebSocket;
  return class extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { origin });
    }
  } as typeof WebSocket;
}

/** One phone watching the sale: a graphql-ws client with the two subscriptions; resolves once both sent their first event. */
function openWatcher(url: string, socketClass: typeof WebSocket, saleId: string, timeoutMs: number): Promise<Watcher> {
  return new Promise((resolve) => {
    const w: Watcher = { client: null as unknown as Client, firstStatusAt: 0, firstStockAt: 0, statusSoldOutAt: 0, stockSoldOutAt: 0, failed: null };
    let settled = false;
    const settle = (failure: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      w.failed = failure;
      resolve(w);
    };
    const timer = setTimeout(() => settle(`no first event within ${timeoutMs} ms`), timeoutMs);
    w.client = createClient({
      url,
      webSocketImpl: socketClass,
      retryAttempts: 0,
      lazy: true,
      on: {
        closed: (event) => {
          const e = event as { code?: number; reason?: string };
          settle(`closed ${e.code ?? ''} ${e.reason ?? ''}`.trim());
        },
        error: (err) => settle(`error: ${(err as Error)?.message ?? String(err)}`),
      },
    });
    const ready = () => {
      if (w.firstStatusAt && w.firstStockAt) settle(null);
    };
    w.client.subscribe<{ saleStatusChanged: { status: string } }>({ query: SALE_STATUS_CHANGED, variables: { saleId } }, {
      next: (r) => {
        if (r.errors?.length) return settle(`saleStatusChanged: ${r.errors[0].message}`);
        w.firstStatusAt ||= Date.now();
        if (r.data?.saleStatusChanged?.status === 'SOLD_OUT') w.statusSoldOutAt ||= Date.now();
        ready();
      },
      error: (err) => settle(`saleStatusChanged: ${describe(err)}`),
      complete: () => {},
    });
    w.client.subscribe<{ stockChanged: { status: string } }>({ query: STOCK_CHANGED, variables: { saleId } }, {
      next: (r) => {
        if (r.errors?.length) return settle(`stockChanged: ${r.errors[0].message}`);
        w.firstStockAt ||= Date.now();
        if (r.data?.stockChanged?.status === 'SOLD_OUT') w.stockSoldOutAt ||= Date.now();
        ready();
      },
      error: (err) => settle(`stockChanged: ${describe(err)}`),
      complete: () => {},
    });
  });
}

function describe(err: unknown): string {
  if (Array.isArray(err)) return err.map((e) => (e as Error).message).join('; ');
  if (err && typeof err === 'object' && 'code' in err) return `closed ${(err as { code: number }).code} ${(err as { reason?: string }).reason ?? ''}`.trim();
  return (err as Error)?.message ?? String(err);
}

/**
 * Buys every unit at once (one unit each from WATCHED_STOCK customers, retrying answers that say
 * "try again") and returns the sale's soldOutAt in ms plus the purchase outcomes seen on the way.
 */
async function sellOut(ctx: BenchContext, sale: BenchSale): Promise<{ soldOutAt: number; codes: Record<string, number> }> {
  const client = new GraphqlClient(ctx.server.origin, sale.stock, ctx.opts.origin);
  const codes: Record<string, number> = {};
  try {
    await Promise.all(Array.from({ length: sale.stock }, async (_, i) => {
      const body = requestBody(PURCHASE, { input: { saleItemId: sale.itemId, quantity: 1, idempotencyKey: `${ctx.runTag}-watch-${i}` } });
      for (let attempt = 0; attempt < 50; attempt++) {
        const { code } = outcomeOf(await client.post(body, ctx.tokens[i % ctx.tokens.length]), 'purchase');
        codes[code] = (codes[code] ?? 0) + 1;
        if (code === 'OK' || code === 'SOLD_OUT') return;
        await new Promise((r) => setTimeout(r, 100));
      }
    }));
  } finally {
    await client.close();
  }
  const levels = await ctx.setup.must<{ sale: { soldOutAt: string | null } }>(SALE_LEVELS, { id: sale.saleId });
  if (!levels.sale.soldOutAt) throw new Error(`the watched sale did not sell out; purchase outcomes ${JSON.stringify(codes)}`);
  return { soldOutAt: Date.parse(levels.sale.soldOutAt), codes };
}
