// npm run demo [-- --customers 20000 --stock 1000 --starts-in 10 --linger 15 --keep]
//
// One command that shows a flash sale: starts the API on a fresh database, schedules a sale that
// opens in a few seconds, prints the live page's address, lets simulated customers storm it at the
// start, prints the sale summary and the latency, then stops the server and removes its data.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { deleteKeysWithPrefix, dropDatabase } from '../dev/scratch.js';
import { GraphqlClient, outcomeOf } from '../../load/harness/graphql-client.js';
import { LatencyRecorder } from '../../load/harness/latency-recorder.js';
import { driveClosedLoop } from '../../load/harness/load-drivers.js';
import { CREATE_PRODUCT, PURCHASE, SCHEDULE_SALE } from '../../load/harness/operations.js';
import { API_COMMAND } from '../../load/harness/server-process.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { TokenService } from '../services/auth.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
// The demo only ever talks to a server it started on this machine.
const HOST = '127.0.0.1';

const SALE_SUMMARY = `query DemoSummary($saleId: ID!) { saleSummary(saleId: $saleId) {
  unitsSold orders uniqueBuyers revenueCents attempts reservationsExpired soldOutAt sellOutSeconds
  rejections { code count } sale { status startsAt currency } } }`;

interface DemoOptions {
  customers: number;
  stock: number;
  perUserLimit: number;
  startsInSeconds: number;
  concurrency: number;
  maxStormSeconds: number;
  lingerSeconds: number;
  keep: boolean;
  port: number | null;
}

function parseOptions(argv: string[]): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      customers: { type: 'string', default: '20000' },
      stock: { type: 'string', default: '1000' },
      'per-user-limit': { type: 'string', default: '2' },
      'starts-in': { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '256' },
      'max-storm-seconds': { type: 'string', default: '60' },
      linger: { type: 'string', default: '15' },
      keep: { type: 'boolean', default: false },
      port: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: npm run demo -- [--customers 20000] [--stock 1000] [--per-user-limit 2] [--starts-in 10] [--concurrency 256] [--max-storm-seconds 60] [--linger 15] [--keep] [--port 4000]');
    process.exit(0);
  }
  const whole = (name: string, value: string | undefined, min: number, max: number): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}; got ${value}`);
    return n;
  };
  return {
    customers: whole('customers', values.customers, 1, 200_000),
    stock: whole('stock', values.stock, 1, 1_000_000),
    perUserLimit: whole('per-user-limit', values['per-user-limit'], 1, 100),
    startsInSeconds: whole('starts-in', values['starts-in'], 2, 3600),
    concurrency: whole('concurrency', values.concurrency, 1, 5000),
    maxStormSeconds: whole('max-storm-seconds', values['max-storm-seconds'], 1, 600),
    lingerSeconds: whole('linger', values.linger, 0, 3600),
    keep: values.keep ?? false,
    port: values.port === undefined ? null : whole('port', values.port, 1, 65535),
  };
}

// ---------------------------------------------------------------- the server and its data

interface DemoServer {
  origin: string;
  stop(): Promise<void>;
}

/** The configured port when it is free (a familiar address to open), else any free one. */
async function pickPort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(null));
      srv.listen(port, HOST, () => {
        const got = (srv.address() as { port: number }).port;
        srv.close(() => resolve(got));
      });
    });
  return (preferred > 0 ? await tryListen(preferred) : null) ?? (await tryListen(0))!;
}

async function startServer(env: Record<string, string>, port: number): Promise<DemoServer> {
  // The compiled service as `npm start` runs it (`npm run demo` builds it first).
  const child: ChildProcess = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.once('exit', (code) => ((exitCode = code), resolve())));
  const origin = `http://${HOST}:${port}`;

  const stop = async () => {
    if (exitCode !== undefined) return;
    child.kill('SIGTERM');
    // The server drains in-flight requests and closes subscriptions within its shutdown timeout.
    const force = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(force);
  };

  // Migrations on a fresh database take a few seconds; bounded so a broken start cannot hang the demo.
  for (let waited = 0; ; waited += 100) {
    if (exitCode !== undefined) throw new Error(`the server exited with ${exitCode} before it was ready:\n${log}`);
    const ready = await fetch(`${origin}/ready`).then((r) => r.status === 200, () => false);
    if (ready) return { origin, stop };
    if (waited > 60_000) {
      await stop();
      throw new Error(`the server was not ready within 60 s:\n${log}`);
    }
    await sleep(100);
  }
}

/** A database of the demo's own next to the configured one, so the demo never touches real data. */
function demoDatabase(config: Config, tag: string): { url: string; name: string } {
  const url = new URL(config.DATABASE_URL);
  const name = `flashsale_demo_${tag}`;
  url.pathname = `/${name}`;
  return { url: url.toString(), name };
}

async function dropDemoData(db: { url: string; name: string }, redisUrl: string, prefix: string): Promise<void> {
  if (!/^flashsale_demo_[a-z0-9_]+$/.test(db.name) || !prefix.startsWith('fsdemo:')) throw new Error('refusing to delete data the demo did not make');
  await dropDatabase(db.url);
  await deleteKeysWithPrefix(redisUrl, prefix);
}

// ---------------------------------------------------------------- the sale and the storm

async function scheduleDemoSale(client: GraphqlClient, admin: string, o: DemoOptions): Promise<{ saleId: string; itemId: string; startsAt: number; clockOffsetMs: number }> {
  const product = await client.must(CREATE_PRODUCT, { input: { sku: `DEMO-${randomBytes(4).toString('hex')}`, name: 'Phone X1 128 GB', priceCents: 49_999, currency: 'USD' } }, admin);
  // The server's clock decides when the sale opens; measure it rather than trust this process's.
  const sentAt = Date.now();
  const { serverTime } = await client.must<{ serverTime: string }>('query { serverTime }', {});
  const clockOffsetMs = Date.parse(serverTime) - (sentAt + Date.now()) / 2;
  const startsAt = Date.parse(serverTime) + o.startsInSeconds * 1000;
  const sale = await client.must(SCHEDULE_SALE, {
    input: {
      name: `${o.stock.toLocaleString('en')} phones, flash sale`,
      startsAt: new Date(startsAt).toISOString(),
      endsAt: new Date(startsAt + 3600_000).toISOString(),
      perUserLimit: o.perUserLimit,
      holdSeconds: 120,
      items: [{ productId: product.createProduct.id, priceCents: 19_999, stock: o.stock }],
    },
  }, admin);
  return { saleId: sale.scheduleSale.id, itemId: sale.scheduleSale.items[0].id, startsAt, clockOffsetMs };
}

/**
 * A sale's opening is never a server's first request: a real one has been serving for hours, its
 * code compiled and its pools full. A throwaway sale, bought from on every connection, gives this
 * fresh process the same start, without touching the demo sale's figures.
 */
async function warmUp(client: GraphqlClient, admin: string, tokens: string[], o: DemoOptions, budgetMs: number): Promise<void> {
  const product = await client.must(CREATE_PRODUCT, { input: { sku: `WARMUP-${randomBytes(4).toString('hex')}`, name: 'Warm-up item', priceCents: 100, currency: 'USD' } }, admin);
  const { serverTime } = await client.must<{ serverTime: string }>('query { serverTime }', {});
  const now = Date.parse(serverTime);
  const attempts = Math.min(tokens.length, o.concurrency) * 2;
  const sale = await client.must(SCHEDULE_SALE, {
    input: {
      name: 'Warm-up (not part of the demo)', startsAt: new Date(now - 1000).toISOString(), endsAt: new Date(now + 600_000).toISOString(),
      perUserLimit: 2, items: [{ productId: product.createProduct.id, priceCents: 100, stock: attempts }],
    },
  }, admin);
  const itemId = sale.scheduleSale.items[0].id;
  await driveClosedLoop(
    async (i) => {
      const body = JSON.stringify({ query: PURCHASE, variables: { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `warm-${i}` } } });
      return outcomeOf(await client.post(body, tokens[i % tokens.length]), 'purchase').code;
    },
    { attempts, concurrency: o.concurrency, timeoutMs: budgetMs, recorder: new LatencyRecorder() },
  );
}

/** Codes after which a person taps again (with the same idempotency key, so a retry never buys twice). */
const RETRYABLE = new Set(['TEMPORARILY_UNAVAILABLE', 'RATE_LIMITED']);
const MAX_TRIES = 3;

async function storm(client: GraphqlClient, tokens: string[], itemId: string, o: DemoOptions) {
  const requests = new LatencyRecorder();
  const customers = new LatencyRecorder();
  let sold = 0;
  const bar = new cliProgress.SingleBar(
    {
      format: 'storm {bar} {percentage}% | {value}/{total} customers | {sold} sold | {duration_formatted}',
      hideCursor: true, stream: process.stderr, fps: 8,
      // Off a terminal (CI, a pipe) one plain line a second instead of redrawing.
      noTTYOutput: true, notTTYSchedule: 1000,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(tokens.length, 0, { sold: 0 });
  const drive = await driveClosedLoop(
    async (i) => {
      const body = JSON.stringify({ query: PURCHASE, variables: { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `demo-${i}` } } });
      for (let attempt = 1; ; attempt++) {
        const t0 = performance.now();
        let code: string;
        let retryAfter = 1;
        try {
          const reply = await client.post(body, tokens[i]);
          const outcome = outcomeOf(reply, 'purchase');
          code = outcome.code;
          retryAfter = Number(outcome.value?.retryAfterSeconds ?? reply.errors?.[0]?.extensions?.retryAfterSeconds ?? 1);
        } catch (err) {
          code = `TRANSPORT_${(err as { code?: string }).code ?? 'ERROR'}`;
        }
        requests.record(performance.now() - t0, code);
        if (code === 'OK') sold++;
        if (!RETRYABLE.has(code) || attempt === MAX_TRIES) return code;
        await sleep(Math.min(5, Math.max(0.2, retryAfter)) * 1000);
      }
    },
    {
      attempts: tokens.length, concurrency: o.concurrency, timeoutMs: o.maxStormSeconds * 1000, recorder: customers,
      onProgress: (done) => bar.update(done, { sold }),
    },
  );
  bar.update(drive.completed, { sold });
  bar.stop();
  return { drive, requests, customers };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const config = loadConfig();
  const tag = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const db = demoDatabase(config, tag);
  const prefix = `fsdemo:${tag}:`;
  const port = await pickPort(o.port ?? config.PORT);
  let server: DemoServer | null = null;
  let client: GraphqlClient | null = null;
  let interrupted: (() => void) | null = null;
  let stopRequested = false;
  const interruption = new Promise<void>((resolve) => (interrupted = resolve));
  const onSignal = () => {
    stopRequested = true;
    interrupted?.();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    console.error(`starting the API on ${HOST}:${port} with a fresh database ${db.name} …`);
    server = await Promise.race([
      startServer({
        DATABASE_URL: db.url, REDIS_PREFIX: prefix, SEED_SAMPLE_SALE: 'false', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
        // Every simulated customer shares this machine's one address; real crowds come from many,
        // so the per-IP guard is lifted and the per-customer limit stays.
        RATE_LIMIT_BUYING_PER_IP: '10000000/1s',
      }, port),
      interruption.then(() => null),
    ]);
    if (!server) return 130;
    client = new GraphqlClient(server.origin, o.concurrency);
    const tokenService = new TokenService(config.JWT_SECRET);
    const admin = (await tokenService.sign('demo-admin', 'admin', 3600)).token;

    // Signed before the sale is scheduled: a phone has its token already, and the countdown should not wait on us.
    console.error(`signing ${o.customers.toLocaleString('en')} customer tokens …`);
    const tokens = new Array<string>(o.customers);
    for (let i = 0; i < o.customers && !stopRequested; i++) tokens[i] = (await tokenService.sign(`demo-${tag}-${i}`, 'customer', 3600)).token;
    if (stopRequested) return 130;

    const sale = await scheduleDemoSale(client, admin, o);
    console.log('');
    console.log(`  Live page:   ${server.origin}/live/${sale.saleId}`);
    console.log(`  Storefront:  ${server.origin}/live/${sale.saleId}/shop   (token: npm run token -- alice, with the same JWT_SECRET)`);
    console.log(`  GraphQL:     ${server.origin}/graphql`);
    console.log('');

    // Wait for the opening on a monotonic timer, from the server's clock as measured at scheduling.
    const waitMs = sale.startsAt - (Date.now() + sale.clockOffsetMs);
    const opensAt = performance.now() + waitMs;
    console.error('warming the server up on a throwaway sale …');
    await warmUp(client, admin, tokens, o, Math.max(0, waitMs - 1000));
    if (stopRequested) return 130;
    while (performance.now() < opensAt) {
      const left = (opensAt - performance.now()) / 1000;
      if (process.stderr.isTTY) process.stderr.write(`\r  ${o.stock.toLocaleString('en')} units, ${o.customers.toLocaleString('en')} customers waiting; the sale opens in ${left.toFixed(1)} s `);
      const tick = Math.min(100, opensAt - performance.now());
      const stopped = await Promise.race([sleep(Math.max(0, tick)).then(() => false), interruption.then(() => true)]);
      if (stopped) return 130;
    }
    if (process.stderr.isTTY) process.stderr.write('\n');
    console.error('the sale is open: storm!');

    const result = await storm(client, tokens, sale.itemId, o);
    // Every success was committed before it was answered and rejections are counted in Redis, so the summary is final now.
    const { saleSummary: summary } = await client.must<{ saleSummary: Summary }>(SALE_SUMMARY, { saleId: sale.saleId }, admin);
    printReport(o, result, summary);

    if (o.keep) {
      console.log(`\nThe server keeps running at ${server.origin} (live page above). Ctrl-C stops it and removes the demo's data.`);
      await interruption;
    } else if (o.lingerSeconds > 0) {
      console.log(`\nThe server stays up ${o.lingerSeconds} s more so you can open the live page (--keep keeps it).`);
      await Promise.race([sleep(o.lingerSeconds * 1000), interruption]);
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.close().catch(() => undefined);
    if (server) {
      console.error('stopping the server …');
      await server.stop();
    }
    await dropDemoData(db, config.REDIS_URL, prefix).then(
      () => console.error(`removed ${db.name} and the Redis keys ${prefix}*`),
      (err) => console.error(`cleanup failed (${String(err)}); drop ${db.name} and the keys ${prefix}* by hand`),
    );
  }
}

interface Summary {
  unitsSold: number;
  orders: number;
  uniqueBuyers: number;
  revenueCents: string;
  attempts: string;
  reservationsExpired: number;
  soldOutAt: string | null;
  sellOutSeconds: number | null;
  rejections: { code: string; count: number }[];
  sale: { status: string; startsAt: string; currency: string };
}

function printReport(o: DemoOptions, r: Awaited<ReturnType<typeof storm>>, s: Summary): void {
  const req = r.requests.summary();
  const cust = r.customers.summary();
  const money = new Intl.NumberFormat('en', { style: 'currency', currency: s.sale.currency });
  const line = (label: string, value: string) => console.log(`  ${label.padEnd(26)}${value}`);
  console.log('\nSale summary (saleSummary)');
  line('status', s.sale.status);
  line('units sold', `${s.unitsSold.toLocaleString('en')} of ${o.stock.toLocaleString('en')} in ${s.orders.toLocaleString('en')} orders to ${s.uniqueBuyers.toLocaleString('en')} buyers`);
  line('revenue', money.format(Number(s.revenueCents) / 100));
  line('attempts', Number(s.attempts).toLocaleString('en'));
  line('rejected', s.rejections.length ? s.rejections.map((x) => `${x.code} ${x.count.toLocaleString('en')}`).join(', ') : 'none');
  line('sold out at', s.soldOutAt ? `${s.soldOutAt}${s.sellOutSeconds != null ? ` (${s.sellOutSeconds.toFixed(2)} s after the start)` : ''}` : 'not sold out');
  console.log('\nLoad (this process, loopback)');
  line('customers served', `${r.drive.completed.toLocaleString('en')} of ${o.customers.toLocaleString('en')} in ${r.drive.seconds.toFixed(1)} s, ${o.concurrency} at a time${r.drive.timedOut ? ' (time limit reached)' : ''}`);
  line('purchase requests', `${req.count.toLocaleString('en')} (${Math.round(req.count / Math.max(r.drive.seconds, 0.001)).toLocaleString('en')}/s)`);
  line('outcomes', Object.entries(r.requests.byCode()).map(([code, n]) => `${code} ${n.toLocaleString('en')}`).join(', '));
  line('latency per request', `p50 ${req.p50} ms, p95 ${req.p95} ms, p99 ${req.p99} ms, max ${req.max} ms`);
  line('customer time to outcome', `p95 ${cust.p95} ms (with retries after TEMPORARILY_UNAVAILABLE / RATE_LIMITED)`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let exitCode = 1;
try {
  exitCode = await main();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `demo failed: ${(err as Error).stack ?? String(err)}`);
}
// Idle keep-alive sockets (fetch's global pool) would hold the process open for seconds after the work is done.
process.exit(exitCode);
