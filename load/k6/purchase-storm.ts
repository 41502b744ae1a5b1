// The sale-start storm: ATTEMPTS purchases from CUSTOMERS against STOCK units.
//   k6 run -e BASE_URL=http://127.0.0.1:4000 load/k6/purchase-storm.ts                 (closed, then open loop)
//   k6 run -e MODE=open -e RATE=3000 load/k6/purchase-storm.ts
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import type { Options } from 'k6/options';
import { PURCHASE } from '../harness/operations.ts';
import { intEnv } from './lib/env.ts';
import { gql, outcome } from './lib/graphql.ts';
import { signToken } from './lib/jwt.ts';
import { checkStockAdds, createSale, type SaleRef } from './lib/sale.ts';

const ATTEMPTS = intEnv('ATTEMPTS', 100_000);
const CUSTOMERS = intEnv('CUSTOMERS', 50_000);
const STOCK = intEnv('STOCK', 1_000);
const CONCURRENCY = intEnv('CONCURRENCY', 500);
const RATE = intEnv('RATE', 3_000);
const MODE = __ENV.MODE || 'both';

const outcomes = new Counter('purchase_outcomes');

const closed = {
  executor: 'shared-iterations' as const,
  vus: CONCURRENCY,
  iterations: ATTEMPTS,
  maxDuration: '3m',
  exec: 'purchase',
};
const open = {
  executor: 'constant-arrival-rate' as const,
  rate: RATE,
  timeUnit: '1s',
  duration: `${Math.ceil(ATTEMPTS / RATE)}s`,
  preAllocatedVUs: Math.min(2000, RATE),
  maxVUs: 2000,
  exec: 'purchase',
  startTime: MODE === 'both' ? '3m' : '0s',
};

export const options: Options = {
  scenarios: MODE === 'closed' ? { closed } : MODE === 'open' ? { open } : { closed, open },
  thresholds: {
    // Rejections are answers, not failures: HTTP and GraphQL errors must stay rare.
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    // k6 computes a counter's rate over the whole test, so the throughput target is only
    // meaningful when the closed loop runs alone (MODE=closed).
    ...(MODE === 'closed' ? { http_reqs: ['rate>=5000'] } : {}),
    'http_req_duration{scenario:open}': ['p(95)<50', 'p(99)<150'],
    'dropped_iterations': ['count==0'],
  },
  setupTimeout: '2m',
};

export function setup(): { sale: SaleRef } {
  return { sale: createSale('k6 storm', STOCK, 2) };
}

// Tokens are signed in the VU (HMAC in k6's Go runtime, a few µs) rather than in setup(): k6 copies
// setup()'s data into every VU, and 50,000 tokens × 500 VUs would be gigabytes.
export function purchase(data: { sale: SaleRef }): void {
  const i = exec.scenario.iterationInTest;
  const token = signToken(`k6-cust-${(i * 7919) % CUSTOMERS}`, 'customer');
  const { res, body } = gql(PURCHASE, { input: { saleItemId: data.sale.itemId, quantity: 1, idempotencyKey: `k6-${exec.scenario.name}-${i}` } }, { token, name: 'purchase' });
  const code = outcome(body, 'purchase');
  outcomes.add(1, { code });
  check(res, {
    'HTTP 200': (r) => r.status === 200,
    'a success or a business rejection': () => code === 'OK' || code === 'SOLD_OUT' || code === 'LIMIT_EXCEEDED',
  });
}

export function teardown(data: { sale: SaleRef }): void {
  checkStockAdds(data.sale, ATTEMPTS >= STOCK * 2);
}
