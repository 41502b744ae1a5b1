import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { getIntrospectionQuery } from 'graphql';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { TokenService } from '../src/services/auth.js';
import { GqlClient, preparedIsolation, REDIS_URL, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { STOCK_CHANGED, wsClient } from './support/live.js';
import { PURCHASE } from './support/operations.js';
import { spawnApi, type ApiProcess } from './support/processes.js';

/**
 * Issue 17 b and 5, on a real process (`node dist/main.js`, so the RSS read is the server's own):
 * a WebSocket that floods pings or messages and never reads is closed with 1008 "Too many
 * messages" after its burst (WS_MESSAGE_BURST, default 200), and only that burst is ever answered;
 * one that asks for more than it reads is closed with 1013 once WS_MAX_BUFFERED_BYTES (1 MiB)
 * wait for it. The server's memory stays bounded throughout, and honest clients never notice.
 */
const JWT_SECRET = 'websocket-limits-secret';
const tokens = new TokenService(JWT_SECRET);
const FLOOD = 200_000;
/** What the server may hold above its resting size while one client floods it, and keep after. */
const GROWTH_LIMIT_MB = 100;
const RSS_LIMIT_MB = 300;

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

let api: ApiProcess;
let client: GqlClient;
let admin: string;
let restingMb: number;

beforeAll(async () => {
  const iso = await preparedIsolation('wslimits', cleanups);
  // The WebSocket limits are the defaults.
  api = await spawnApi({
    DATABASE_URL: iso.databaseUrl, REDIS_URL, REDIS_PREFIX: iso.redisPrefix, SEED_SAMPLE_SALE: 'false', LOG_LEVEL: 'warn', RATE_LIMIT_ENABLED: 'false', JWT_SECRET,
  });
  client = new GqlClient(api.url, 8);
  cleanups.push(async () => {
    await client.close();
    await api.stop();
  });
  admin = (await tokens.sign('ws-admin', 'admin')).token;
  // Warm: a sale, a purchase, a subscription, so the resting size includes what serving costs.
  const { itemIds: [itemId] } = await createSale(via(), { stock: 5 });
  await client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'warm' } }, await customer('warm'));
  const ws = await rawSocket();
  ws.close();
  await new Promise((r) => setTimeout(r, 1000));
  restingMb = rssMb();
});

const via = () => ({ client, admin }) as unknown as TestServer;
const customer = async (name: string) => (await tokens.sign(name, 'customer')).token;
const rssMb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${api.pid}/status`, 'utf8'))![1]) / 1024;

/** The highest RSS seen while `work` runs (sampled every 50 ms). */
async function peakRss(work: () => Promise<void>): Promise<number> {
  let peak = rssMb();
  const timer = setInterval(() => (peak = Math.max(peak, rssMb())), 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssMb());
}

/** A graphql-transport-ws socket, acknowledged. */
async function rawSocket(): Promise<WebSocket> {
  const ws = new WebSocket(`${api.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'connection_init', payload: {} }));
  await new Promise<void>((resolve) => ws.once('message', () => resolve()));
  return ws;
}

const within = <T>(ms: number, p: Promise<T>, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: none within ${ms} ms`)), ms))]);

const closeOf = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));

/** Sends `n` frames as fast as the client's socket takes them. */
async function flood(ws: WebSocket, n: number, send: () => void): Promise<void> {
  for (let i = 0; i < n && ws.readyState === ws.OPEN; i++) {
    send();
    if (i % 2000 === 1999) await new Promise((r) => setImmediate(r));
  }
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await request(`${api.url}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** A purchase over HTTP and one over a fresh graphql-ws client, with its stock subscription, all as usual. */
async function honestClientsStillServed(): Promise<void> {
  const { saleId, itemIds: [itemId] } = await createSale(via(), { stock: 10 });
  const token = await customer(`honest-${Date.now()}`);
  const http = await client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'honest-http' } }, token);
  expect(http.data.purchase.__typename).toBe('PurchaseSuccess');

  const ws = wsClient(api.url, token);
  const updates: number[] = [];
  const sub = new Promise<void>((resolve, reject) => {
    ws.subscribe({ query: STOCK_CHANGED, variables: { saleId } }, {
      next: (r) => {
        updates.push((r.data as { stockChanged: { items: { sold: number }[] } }).stockChanged.items[0].sold);
        if (updates.includes(2)) resolve();
      },
      error: reject,
      complete: () => undefined,
    });
  });
  const bought = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let data: Record<string, unknown> = {};
    ws.subscribe({ query: PURCHASE, variables: { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'honest-ws' } } }, {
      next: (r) => (data = r.data?.purchase as Record<string, unknown>),
      error: reject,
      complete: () => resolve(data),
    });
  });
  expect(bought).toMatchObject({ __typename: 'PurchaseSuccess' });
  await sub;
  expect(ws.closes).toEqual([]);
  await ws.dispose();
}

describe('a WebSocket that floods and never reads', () => {
  it('sending ping frames: only its burst is answered, it is closed with 1008, the server stays small', async () => {
    const ws = await rawSocket();
    let pongs = 0;
    ws.on('pong', () => pongs++);
    const closed = closeOf(ws);
    ws.pause();
    const peak = await peakRss(async () => {
      await flood(ws, FLOOD, () => ws.ping());
      await new Promise((r) => setTimeout(r, 500));
    });
    // Now it reads: the pongs it was sent, then the close frame.
    ws.resume();
    const close = await within(10_000, closed, 'close');
    await new Promise((r) => setTimeout(r, 1000));
    const after = rssMb();
    console.log(`ping frames: RSS resting ${restingMb.toFixed(0)} MB, peak ${peak.toFixed(0)} MB, after close ${after.toFixed(0)} MB; ${pongs} pongs; closed ${JSON.stringify(close)}`);
    expect(close).toEqual({ code: 1008, reason: 'Too many messages' });
    expect(pongs).toBeGreaterThan(0);
    expect(pongs).toBeLessThanOrEqual(200);
    expect(peak).toBeLessThan(Math.min(RSS_LIMIT_MB, restingMb + GROWTH_LIMIT_MB));
    expect(after).toBeLessThan(Math.min(RSS_LIMIT_MB, restingMb + GROWTH_LIMIT_MB));
    await honestClientsStillServed();
  });

  it('sending graphql-ws ping messages: only its burst is answered, it is closed with 1008, the server stays small', async () => {
    const ws = await rawSocket();
    let answers = 0;
    ws.on('message', () => answers++);
    const closed = closeOf(ws);
    ws.pause();
    const ping = JSON.stringify({ type: 'ping' });
    const peak = await peakRss(async () => {
      await flood(ws, FLOOD, () => ws.send(ping));
      await new Promise((r) => setTimeout(r, 500));
    });
    ws.resume();
    const close = await within(10_000, closed, 'close').catch((err: Error) => {
      ws.terminate();
      return { code: -1, reason: err.message };
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = rssMb();
    console.log(`ping messages: RSS resting ${restingMb.toFixed(0)} MB, peak ${peak.toFixed(0)} MB, after close ${after.toFixed(0)} MB; ${answers} pongs; closed ${JSON.stringify(close)}`);
    expect(close).toEqual({ code: 1008, reason: 'Too many messages' });
    expect(answers).toBeLessThanOrEqual(200);
    expect(peak).toBeLessThan(Math.min(RSS_LIMIT_MB, restingMb + GROWTH_LIMIT_MB));
    expect(after).toBeLessThan(Math.min(RSS_LIMIT_MB, restingMb + GROWTH_LIMIT_MB));
    await honestClientsStillServed();
  });
});

describe('a WebSocket that asks within its rate but does not read the answers', () => {
  it('is closed with 1013 once more than WS_MAX_BUFFERED_BYTES wait for it', async () => {
    const ws = await rawSocket();
    let received = 0;
    ws.on('message', (data: Buffer) => (received += data.length));
    const closed = closeOf(ws);
    ws.pause();
    const before = await metric('flashsale_websocket_policy_closes_total', 'reason="not-reading"');
    const subscribe = (i: number) => ws.send(JSON.stringify({ id: `q${i}`, type: 'subscribe', payload: { query: getIntrospectionQuery() } }));
    // Each answer is a whole schema (~100 KB): 150 at once, then 20 a second (the budget refills at 50).
    let sent = 0;
    const peak = await peakRss(async () => {
      for (; sent < 150; sent++) subscribe(sent);
      const deadline = Date.now() + 15_000;
      while ((await metric('flashsale_websocket_policy_closes_total', 'reason="not-reading"')) === before && Date.now() < deadline) {
        for (let i = 0; i < 5; i++) subscribe(sent++);
        await new Promise((r) => setTimeout(r, 250));
      }
    });
    const closes = await metric('flashsale_websocket_policy_closes_total', 'reason="not-reading"');
    ws.resume();
    const close = await within(10_000, closed, 'close').catch((err: Error) => {
      ws.terminate();
      return { code: -1, reason: err.message };
    });
    console.log(`slow reader: ${sent} queries sent, ${(received / 1e6).toFixed(1)} MB read after resuming; RSS resting ${restingMb.toFixed(0)} MB, peak ${peak.toFixed(0)} MB; closed ${JSON.stringify(close)}`);
    expect(closes).toBe(before + 1);
    expect(close).toEqual({ code: 1013, reason: 'Not reading fast enough' });
    expect(peak).toBeLessThan(Math.min(RSS_LIMIT_MB, restingMb + GROWTH_LIMIT_MB));
    await honestClientsStillServed();
  });
});

describe('an honest WebSocket client', () => {
  it('opens its subscriptions at once and pings now and then without being limited', async () => {
    const { saleId } = await createSale(via(), { stock: 3 });
    const ws = await rawSocket();
    const frames: string[] = [];
    ws.on('message', (d: Buffer) => frames.push(String(d)));
    let pongs = 0;
    ws.on('pong', () => pongs++);
    // WS_MAX_SUBSCRIPTIONS (20) at once, and a few pings of both kinds.
    for (let i = 0; i < 20; i++) ws.send(JSON.stringify({ id: `s${i}`, type: 'subscribe', payload: { query: STOCK_CHANGED, variables: { saleId } } }));
    for (let i = 0; i < 5; i++) {
      ws.ping();
      ws.send(JSON.stringify({ type: 'ping' }));
    }
    await new Promise((r) => setTimeout(r, 1000));
    expect(ws.readyState).toBe(ws.OPEN);
    expect(pongs).toBe(5);
    expect(frames.filter((f) => f.includes('"pong"'))).toHaveLength(5);
    expect(new Set(frames.filter((f) => f.includes('stockChanged')).map((f) => JSON.parse(f).id)).size).toBe(20);
    const closed = closeOf(ws);
    ws.close(1000);
    expect((await closed).code).toBe(1000);
  });
});
