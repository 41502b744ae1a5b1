import pg from 'pg';
import type { GraphqlClient } from './graphql-client.js';
import { SALE_LEVELS } from './operations.js';
import type { BenchSale } from './sale-setup.js';

export interface AuditCheck {
  name: string;
  passed: boolean;
  detail: string;
}

export interface AuditResult {
  passed: boolean;
  unitsSold: number;
  orders: number;
  checks: AuditCheck[];
}

interface LiveItem {
  id: string;
  initialStock: number;
  available: number;
  reserved: number;
  sold: number;
}

/**
 * After a run, reads what PostgreSQL says was sold and compares it with the stock, the customers'
 * limits, the ledger and what the clients were told. `clientOrderIds` are the orders the clients
 * saw succeed (first, not replayed): each must exist, and there must be no other.
 */
export async function auditSale(o: { databaseUrl: string; client: GraphqlClient; sale: BenchSale; clientOrderIds: Set<string>; expectSoldOut: boolean; ledgerWaitMs?: number }): Promise<AuditResult> {
  const db = new pg.Client({ connectionString: o.databaseUrl });
  await db.connect();
  const checks: AuditCheck[] = [];
  const check = (name: string, passed: boolean, detail: string) => checks.push({ name, passed, detail });
  try {
    const { saleId, itemId, stock, perUserLimit } = o.sale;
    const sold = await db.query<{ units: number; orders: number }>(
      `select coalesce(sum(quantity), 0)::int as units, count(*)::int as orders from orders where sale_id = $1 and status = 'CONFIRMED'`, [saleId]);
    const unitsSold = sold.rows[0].units;
    const orders = sold.rows[0].orders;
    check('no oversell', unitsSold <= stock, `${unitsSold} units in CONFIRMED orders, stock ${stock}`);
    if (o.expectSoldOut) check('every unit sold', unitsSold === stock, `${unitsSold} of ${stock} units sold`);

    const over = await db.query<{ customer_id: string; units: number }>(
      `select customer_id, sum(quantity)::int as units from orders where sale_id = $1 and status = 'CONFIRMED'
       group by customer_id, sale_item_id having sum(quantity) > $2 limit 5`, [saleId, perUserLimit]);
    check('nobody over the limit', over.rowCount === 0, over.rowCount === 0 ? `every customer ≤ ${perUserLimit}` : `over: ${JSON.stringify(over.rows)}`);

    const dup = await db.query<{ n: number }>(
      `select count(*)::int as n from (select customer_id, idempotency_key from orders where sale_id = $1 and idempotency_key is not null
       group by customer_id, idempotency_key having count(*) > 1) d`, [saleId]);
    check('no duplicate idempotency keys', dup.rows[0].n === 0, `${dup.rows[0].n} (customer, key) pairs with more than one order`);

    const ids = await db.query<{ id: string }>(`select id from orders where sale_id = $1`, [saleId]);
    const inDb = new Set(ids.rows.map((r) => r.id));
    const missing = [...o.clientOrderIds].filter((id) => !inDb.has(id));
    check('every PurchaseSuccess is committed', missing.length === 0, `${o.clientOrderIds.size} successes seen by clients, ${missing.length} missing in PostgreSQL`);
    check('no order the clients were not told of', inDb.size === o.clientOrderIds.size, `${inDb.size} orders in PostgreSQL, ${o.clientOrderIds.size} successes seen`);

    // The ledger is drained from the Redis outbox every ~200 ms; the contract allows 2 s to catch up.
    const until = Date.now() + (o.ledgerWaitMs ?? 5000);
    let live: LiveItem | undefined;
    let ledger = NaN;
    for (;;) {
      const data = await o.client.must<{ sale: { items: LiveItem[] } }>(SALE_LEVELS, { id: saleId });
      live = data.sale.items.find((i) => i.id === itemId);
      const sum = await db.query<{ s: number | null }>(`select sum(delta)::int as s from stock_events where sale_item_id = $1`, [itemId]);
      ledger = sum.rows[0].s ?? 0;
      if ((live && ledger === live.available) || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!live) throw new Error(`sale item ${itemId} missing from its sale`);
    check('ledger sum equals live available', ledger === live.available, `ledger ${ledger}, live available ${live.available}`);
    check('available + reserved + sold = stock', live.available >= 0 && live.available + live.reserved + live.sold === live.initialStock,
      `${live.available} + ${live.reserved} + ${live.sold} = ${live.available + live.reserved + live.sold}, stock ${live.initialStock}`);
    check('live sold equals PostgreSQL', live.sold === unitsSold, `Redis says ${live.sold} sold, PostgreSQL ${unitsSold}`);
    return { passed: checks.every((c) => c.passed), unitsSold, orders, checks };
  } finally {
    await db.end();
  }
}
