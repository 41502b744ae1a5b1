// The two-step flow: reserve, then confirmReservation at once on success.
//   k6 run -e BASE_URL=http://127.0.0.1:4000 load/k6/reserve-confirm.ts
import { check } from 'k6';
import exec from 'k6/execution';
import { Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { CONFIRM, RESERVE } from '../harness/operations.ts';
import { intEnv } from './lib/env.ts';
import { gql, outcome } from './lib/graphql.ts';
import { signToken } from './lib/jwt.ts';
import { checkStockAdds, createSale, type SaleRef } from './lib/sale.ts';

const ATTEMPTS = intEnv('ATTEMPTS', 20_000);
const CUSTOMERS = intEnv('CUSTOMERS', 10_000);
const STOCK = intEnv('STOCK', 1_000);
const flowDuration = new Trend('flow_duration', true);

export const options: Options = {
  scenarios: {
    flow: { executor: 'shared-iterations', vus: intEnv('CONCURRENCY', 200), iterations: ATTEMPTS, maxDuration: '3m' },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:reserve}': ['p(95)<100'],
    'http_req_duration{name:confirm}': ['p(95)<150'],
  },
  setupTimeout: '1m',
};

export function setup(): { sale: SaleRef } {
  return { sale: createSale('k6 flow', STOCK, 2) };
}

export default function (data: { sale: SaleRef }): void {
  const i = exec.scenario.iterationInTest;
  // Signed in the VU: setup() data is copied into every VU, so it carries no token list.
  const token = signToken(`k6-flow-${(i * 7919) % CUSTOMERS}`, 'customer');
  const started = Date.now();
  const reserved = gql(RESERVE, { input: { saleItemId: data.sale.itemId, quantity: 1, idempotencyKey: `k6-flow-${i}` } }, { token, name: 'reserve' });
  const code = outcome(reserved.body, 'reserve');
  check(code, { 'reserve: success or business rejection': (c) => c === 'OK' || c === 'SOLD_OUT' || c === 'LIMIT_EXCEEDED' });
  if (code !== 'OK') return;
  const confirmed = gql(CONFIRM, { id: reserved.body.data!.reserve.reservation.id }, { token, name: 'confirm' });
  check(confirmed.body, { 'confirm: success': (b) => outcome(b, 'confirmReservation') === 'OK' });
  flowDuration.add(Date.now() - started);
}

export function teardown(data: { sale: SaleRef }): void {
  checkStockAdds(data.sale, ATTEMPTS >= STOCK * 2);
}
