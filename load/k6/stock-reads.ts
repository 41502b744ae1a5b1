// Browsing during the sale: `sale { items { available } }`, no token, READ_VUS clients for DURATION.
//   k6 run -e BASE_URL=http://127.0.0.1:4000 load/k6/stock-reads.ts
import { check } from 'k6';
import type { Options } from 'k6/options';
import { SALE_AVAILABLE } from '../harness/operations.ts';
import { intEnv } from './lib/env.ts';
import { gql } from './lib/graphql.ts';
import { createSale, type SaleRef } from './lib/sale.ts';

export const options: Options = {
  scenarios: {
    reads: { executor: 'constant-vus', vus: intEnv('READ_VUS', 200), duration: __ENV.DURATION || '30s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_reqs: ['rate>=10000'],
    http_req_duration: ['p(95)<50'],
    checks: ['rate>0.999'],
  },
};

export function setup(): SaleRef {
  return createSale('k6 reads', intEnv('STOCK', 1_000), 2);
}

export default function (sale: SaleRef): void {
  const { res, body } = gql(SALE_AVAILABLE, { id: sale.saleId }, { name: 'sale-available' });
  check(res, {
    'HTTP 200': (r) => r.status === 200,
    'available is a number': () => typeof body.data?.sale?.items?.[0]?.available === 'number',
  });
}
