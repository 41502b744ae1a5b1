// SUBSCRIBERS WebSocket clients (graphql-transport-ws) watch one sale; after WATCH_SECONDS of
// connecting, a burst of purchases sells it out; each client records how long after soldOutAt
// its saleStatusChanged SOLD_OUT arrived.
//   k6 run -e BASE_URL=http://127.0.0.1:4000 load/k6/subscribers.ts
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { WebSocket } from 'k6/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import { PURCHASE } from '../harness/operations.ts';
import { intEnv, ORIGIN, WS_URL } from './lib/env.ts';
import { gql, outcome } from './lib/graphql.ts';
import { signToken } from './lib/jwt.ts';
import { createSale, type SaleRef } from './lib/sale.ts';

const SUBSCRIBERS = intEnv('SUBSCRIBERS', 10_000);
const WATCH_SECONDS = intEnv('WATCH_SECONDS', 60);
const STOCK = 20;
const soldOutDelay = new Trend('sold_out_delay', true);
const soldOutSeen = new Counter('sold_out_seen');

const STATUS = `subscription($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status soldOutAt } }`;

export const options: Options = {
  scenarios: {
    watchers: { executor: 'per-vu-iterations', vus: SUBSCRIBERS, iterations: 1, maxDuration: `${WATCH_SECONDS + 30}s`, exec: 'watch' },
    buyers: { executor: 'shared-iterations', vus: STOCK, iterations: STOCK, startTime: `${WATCH_SECONDS}s`, exec: 'buy' },
  },
  thresholds: {
    sold_out_delay: ['max<1000'],
    sold_out_seen: [`count>=${SUBSCRIBERS}`],
    checks: ['rate>0.99'],
  },
};

export function setup(): SaleRef {
  return createSale('k6 watched', STOCK, 1);
}

export function watch(sale: SaleRef): void {
  const ws = new WebSocket(WS_URL, null, { headers: { 'Sec-WebSocket-Protocol': 'graphql-transport-ws', ...(ORIGIN ? { Origin: ORIGIN } : {}) } });
  const giveUp = setTimeout(() => ws.close(), (WATCH_SECONDS + 20) * 1000);
  ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: {} }));
  ws.onmessage = (e) => {
    if (!e) return;
    const msg = JSON.parse(String(e.data)) as { type: string; payload?: any };
    if (msg.type === 'connection_ack') {
      ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: STATUS, variables: { saleId: sale.saleId } } }));
    } else if (msg.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong' }));
    } else if (msg.type === 'next' && msg.payload?.data?.saleStatusChanged?.status === 'SOLD_OUT') {
      const at = Date.parse(msg.payload.data.saleStatusChanged.soldOutAt);
      soldOutDelay.add(Date.now() - at);
      soldOutSeen.add(1);
      clearTimeout(giveUp);
      ws.close();
    }
  };
  ws.onerror = () => check(null, { 'WebSocket without error': () => false });
}

export function buy(sale: SaleRef): void {
  const i = exec.scenario.iterationInTest;
  const { body } = gql(PURCHASE, { input: { saleItemId: sale.itemId, quantity: 1, idempotencyKey: `k6-watch-${i}` } }, { token: signToken(`k6-watch-buyer-${i}`, 'customer'), name: 'purchase' });
  check(body, { 'sell-out purchase succeeded': (b) => outcome(b, 'purchase') === 'OK' });
}
