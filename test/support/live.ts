import { createClient, type Client } from 'graphql-ws';
import { request } from 'undici';
import { expect } from 'vitest';
import WebSocket from 'ws';
import type { StockEngine } from '../../src/services/stock/engine.js';
import { eventually } from './harness.js';

export const STOCK_CHANGED = `subscription($saleId: ID!) { stockChanged(saleId: $saleId) { saleId status version at items { saleItemId available reserved sold } } }`;
export const SALE_STATUS_CHANGED = `subscription($saleId: ID!) { saleStatusChanged(saleId: $saleId) { id status available items { id available } } }`;
export const RESERVATION_CHANGED = `subscription($saleId: ID) { reservationChanged(saleId: $saleId) { id status endReason expiresAt quantity saleItem { id available } } }`;
export const ORDER_CHANGED = `subscription { orderChanged { id status quantity customerId saleItem { id } } }`;

/** What STOCK_CHANGED selects. */
export type StockUpdate = { saleId: string; status: string; version: number; at: string; items: { saleItemId: string; available: number; reserved: number; sold: number }[] };

/** The graphql-ws clients a test file opens against `baseUrl()`, all disposed by `disposeAll()`. */
export class LiveClients {
  private readonly opened: (Client & { closes: number[] })[] = [];
  constructor(private readonly baseUrl: () => string) {}

  open(token?: string): Client & { closes: number[] } {
    return this.track(wsClient(this.baseUrl(), token));
  }

  /** Also disposes a client the test made itself. */
  track<C extends Client & { closes: number[] }>(c: C): C {
    this.opened.push(c);
    return c;
  }

  async disposeAll(): Promise<void> {
    await Promise.all(this.opened.map((c) => c.dispose()));
  }
}

/** A graphql-ws client (Node 20 has no global WebSocket); `closes` records close codes. */
export function wsClient(baseUrl: string, token?: string): Client & { closes: number[] } {
  const closes: number[] = [];
  const client = createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
    lazy: true,
    on: { closed: (event) => closes.push((event as { code: number }).code) },
  });
  return Object.assign(client, { closes });
}

export interface Received<T> {
  at: number;
  data: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** Records every event of one subscription with the time it arrived. */
export class Recorder<T = any> {
  readonly events: Received<T>[] = [];
  error: unknown = null;
  completed = false;
  private readonly dispose: () => void;

  constructor(client: Client, query: string, variables: Record<string, unknown> = {}) {
    this.dispose = client.subscribe<T>(
      { query, variables },
      {
        next: (r) => this.events.push({ at: Date.now(), data: (r.data ?? null) as T | null, errors: r.errors as Received<T>['errors'] }),
        error: (e) => (this.error = e),
        complete: () => (this.completed = true),
      },
    );
  }

  get data(): T[] {
    return this.events.filter((e) => e.data != null).map((e) => e.data as T);
  }

  last(): T | undefined {
    return this.data.at(-1);
  }

  /** Waits for an event matching `match` and returns it. */
  async waitFor(match: (data: T) => boolean, timeoutMs = 5000): Promise<Received<T>> {
    return eventually(async () => this.events.find((e) => e.data != null && match(e.data as T)) ?? null, timeoutMs, 10);
  }

  /** Waits until the subscription failed or completed with errors; returns the error payload. */
  async refusal(timeoutMs = 5000): Promise<{ message: string; extensions?: Record<string, unknown> }[]> {
    return eventually(async () => {
      if (Array.isArray(this.error)) return this.error as { message: string; extensions?: Record<string, unknown> }[];
      const withErrors = this.events.find((e) => e.errors?.length);
      return withErrors?.errors ?? null;
    }, timeoutMs, 10);
  }

  stop(): void {
    this.dispose();
  }
}

/** Opens a subscription over Yoga's SSE and returns its first `next` payload. */
export async function firstSseEvent(baseUrl: string, query: string, variables: Record<string, unknown>, token?: string): Promise<any> {
  const controller = new AbortController();
  const res = await request(`${baseUrl}/graphql`, {
    method: 'POST',
    signal: controller.signal,
    body: JSON.stringify({ query, variables }),
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  if (!String(res.headers['content-type']).startsWith('text/event-stream')) throw new Error(`not an event stream: ${res.statusCode} ${await res.body.text()}`);
  let buffer = '';
  try {
    for await (const chunk of res.body) {
      buffer += chunk.toString();
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end < 0) break;
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (data && !/^event:\s*complete/m.test(block)) return JSON.parse(data);
      }
    }
  } finally {
    controller.abort();
  }
  throw new Error('the event stream ended without an event');
}

/**
 * The setting of the "fresh snapshot after the pub/sub connection returns" tests: a stock
 * subscriber that has its first snapshot and nothing else (status watches settled), then a hold
 * made straight in the stock engine, which no event announces, as if its events were lost.
 * Returns the first snapshot's version.
 */
export async function silentHoldAfterSnapshot(sub: Recorder<{ stockChanged: StockUpdate }>, engine: StockEngine, saleId: string, saleItemId: string, customerId: string): Promise<number> {
  const first = (await sub.waitFor(() => true)).data!.stockChanged;
  // Let the status watches see the new sale first: their first look at a sale may announce it.
  await new Promise((r) => setTimeout(r, 600));
  expect(sub.events).toHaveLength(1);
  const silent = await engine.reserve(saleId, { saleItemId, customerId, quantity: 3, idempotencyKey: 'silent-1', mutation: 'reserve' });
  expect(silent.ok).toBe(true);
  await new Promise((r) => setTimeout(r, 400));
  expect(sub.events).toHaveLength(1);
  return first.version;
}
