import { sql } from 'kysely';
import { brief, DOCS, errorCodes, send, type Answer } from './api.js';
import { instanceName, note, sleep, violation, type Run } from './context.js';
import { CONFIRM_GRACE_MS, CONFIRM_WINDOW_MS, HOLD_SECONDS } from './infra.js';
import { count, maxOf } from './model.js';

/**
 * The invariants. `checkAlways` runs after every command: what must hold at every moment whatever
 * the faults. `settleAndCheck` runs at the end of a run, once faults are over: it waits for holds to
 * expire, interrupted commits to be resolved, lost sales to be rebuilt and the ledger to drain, then
 * checks what must hold eventually.
 *
 * Always (after every command; live figures from both instances, PostgreSQL read directly):
 * - typed answers: an answer (no dropped connection unless the test killed the instance), no 5xx,
 *   no GraphQL error but TEMPORARILY_UNAVAILABLE (and BAD_USER_INPUT for admin refusals), and only
 *   the rejection codes the operation can have (commands.ts);
 * - no negative counts, and available + reserved + sold = the item's stock (initial + the admin's
 *   adjustments; after a Redis rollback or failover, any stock the item had in the run);
 * - CONFIRMED units in PostgreSQL <= stock, per item;
 * - nobody above perUserLimit: CONFIRMED units in PostgreSQL + units the customer sees HELD (holds
 *   not counted after a rollback: the rolled-back state is stale until the recovery notices);
 * - one order per (customer, idempotency key); a purchase retried with a key that bought an order
 *   answers that order (commands.ts);
 * - every PurchaseSuccess a client saw is in PostgreSQL, for that customer, item, quantity and key,
 *   and CONFIRMED unless its customer cancelled it;
 * - no order written after cancelSale was sent (but the one commit in flight then, if any); no
 *   success of purchase/reserve/confirm sent after the cancel, nor purchase/reserve while paused
 *   (holds and pauses exempt right after a rollback, see commands.ts);
 * - the waitlist is served in join order: no entry is OFFERED/FULFILLED/LAPSED while an entry that
 *   joined before it (as the clients saw the joins answered) is still WAITING.
 * Settled (at the end, polled until stable):
 * - nothing reserved; both instances agree; available + sold = PostgreSQL's stock (initial +
 *   stock_adjustments), which is the admin's; live sold = CONFIRMED units in PostgreSQL; the ledger
 *   (stock_events) sums to available; the sale's status follows the admin's last change; and every
 *   always-true invariant once more.
 */

/**
 * The rule for every answer a client gets: an answer (no dead connection unless the test killed
 * the instance), no 5xx, and GraphQL errors only with the codes the caller allows (always
 * TEMPORARILY_UNAVAILABLE). Returns the error codes (empty: the answer has data).
 */
export function typedAnswer(run: Run, what: string, a: Answer, allowed: readonly string[] = []): string[] {
  if (a.kind === 'lost') violation(run, 'typed answers', `${what}: the instance gave no answer (${a.message})`);
  const codes = errorCodes(a);
  const tolerated = run.pgCut !== null && run.lenientOutageErrors && codes.length > 0 && codes.every((c) => c === 'INTERNAL_SERVER_ERROR' || c === 'TEMPORARILY_UNAVAILABLE');
  if (a.status >= 500 && !tolerated) violation(run, 'typed answers', `${what}: HTTP ${a.status}${run.pgCut ? ' (PostgreSQL cut)' : ''}: ${brief(a)}`);
  for (const code of codes) {
    if (code === 'TEMPORARILY_UNAVAILABLE' || allowed.includes(code)) continue;
    if (code === 'INTERNAL_SERVER_ERROR' && run.pgCut && run.lenientOutageErrors) {
      count(run.model, 'internal errors while PostgreSQL was cut');
      continue;
    }
    violation(run, 'typed answers', `${what}: GraphQL error ${code}${run.pgCut ? ' (PostgreSQL cut)' : ''}: ${brief(a)}`);
  }
  return codes;
}

interface Level {
  available: number;
  reserved: number;
  sold: number;
}

/** One reading of the sale's live figures (one snapshot on the server: the items agree). */
interface Levels {
  status: string;
  items: Map<string, Level>;
}

/** The sale's live figures as instance `i` reads them (admin token: never a cached answer), or null if it cannot now. */
async function levels(run: Run, i: number): Promise<Levels | null> {
  const a = await send(run.world.apis[i].client, DOCS.levels, { id: run.saleId }, run.world.admin);
  if (a.kind === 'lost') violation(run, 'typed answers', `sale levels on instance ${instanceName(i)}: no answer (${a.message})`);
  if (a.status >= 500 && !run.pgCut) violation(run, 'typed answers', `sale levels: HTTP ${a.status}: ${brief(a)}`);
  const codes = errorCodes(a);
  if (codes.length > 0 || !a.data?.sale) {
    // Reads touch PostgreSQL (sale rows): while it is cut, any error is the outage's.
    if (!run.pgCut && codes.some((c) => c !== 'TEMPORARILY_UNAVAILABLE')) violation(run, 'typed answers', `sale levels: ${brief(a)}`);
    return null;
  }
  return { status: a.data.sale.status, items: new Map((a.data.sale.items as (Level & { id: string })[]).map((it) => [it.id, it])) };
}

interface OrderRow {
  id: string;
  sale_item_id: string;
  customer_id: string;
  quantity: number;
  status: string;
  idempotency_key: string | null;
  reservation_id: string;
  created_at: Date;
}

async function orders(run: Run): Promise<OrderRow[]> {
  return run.world.db.selectFrom('orders')
    .select(['id', 'sale_item_id', 'customer_id', 'quantity', 'status', 'idempotency_key', 'reservation_id', 'created_at'])
    .where('sale_id', '=', run.saleId).orderBy('created_at').execute() as Promise<OrderRow[]>;
}

const confirmedUnits = (rows: OrderRow[], pred: (o: OrderRow) => boolean) =>
  rows.filter((o) => o.status === 'CONFIRMED' && pred(o)).reduce((n, o) => n + o.quantity, 0);

/** Checks a levels reading: nothing negative, and the three figures add up to a stock the item has (or had, after a rollback). */
function checkLevels(run: Run, where: string, got: Levels): void {
  const m = run.model;
  for (const item of m.items) {
    const l = got.items.get(item.id);
    if (!l) violation(run, 'available + reserved + sold = stock', `${where}: item ${item.index} missing from the sale's live figures`);
    const sum = l.available + l.reserved + l.sold;
    if (l.available < 0 || l.reserved < 0 || l.sold < 0) {
      violation(run, 'no negative counts', `${where}: item ${item.index} reads ${JSON.stringify(l)}`);
    }
    const allowed = m.rolledBack ? item.ever : item.stock;
    if (!allowed.has(sum)) {
      violation(run, 'available + reserved + sold = stock', `${where}: item ${item.index} reads ${JSON.stringify(l)} (sum ${sum}), stock is ${[...item.stock].join(' or ')}${m.rolledBack ? ` (or an earlier ${[...item.ever].join('/')} after a rollback)` : ''}`);
    }
  }
}

/** What must hold after every command. */
export async function checkAlways(run: Run, where: string): Promise<void> {
  const m = run.model;
  const { world } = run;

  // Live figures, from both instances.
  for (const i of [0, 1]) {
    const got = await levels(run, i);
    if (got) checkLevels(run, `${where}, instance ${instanceName(i)}`, got);
  }

  // Each customer's held units (live, from their own view), then PostgreSQL (read after, so an order
  // committed in between is seen; holds whose order exists are not counted twice).
  const held: { cust: number; item: string; id: string; quantity: number }[] = [];
  for (let c = 0; c < m.u.customers; c++) {
    const a = await send(world.apis[(m.step + c) % 2].client, DOCS.myReservations, { sale: run.saleId }, run.tokens[c]);
    if (a.kind === 'lost') violation(run, 'typed answers', `me.reservations: no answer (${a.message})`);
    if (errorCodes(a).length > 0 || !a.data?.me) continue;
    for (const r of a.data.me.reservations as { id: string; status: string; quantity: number; saleItem: { id: string } | null; order: { id: string } | null }[]) {
      if (r.status === 'HELD' && !r.order && r.saleItem) held.push({ cust: c, item: r.saleItem.id, id: r.id, quantity: r.quantity });
    }
  }

  // Waitlists of customers who joined one: served in join order.
  await checkWaitlistOrder(run, where);

  const rows = await orders(run);
  const withOrder = new Set(rows.map((o) => o.reservation_id));
  for (const item of m.items) {
    const sold = confirmedUnits(rows, (o) => o.sale_item_id === item.id);
    if (sold > maxOf(item.stock)) violation(run, 'CONFIRMED units <= stock', `${where}: item ${item.index} has ${sold} units in CONFIRMED orders, stock ${[...item.stock].join(' or ')}`);
    for (let c = 0; c < m.u.customers; c++) {
      const bought = confirmedUnits(rows, (o) => o.sale_item_id === item.id && o.customer_id === run.customers[c]);
      // Live holds count too, except after a rollback: the rolled-back state forgets what was bought
      // since, until the recovery notices (PostgreSQL's own count stays checked).
      const holding = m.rolledBack ? 0 : held.filter((h) => h.cust === c && h.item === item.id && !withOrder.has(h.id)).reduce((n, h) => n + h.quantity, 0);
      if (bought + holding > m.u.perUserLimit) {
        violation(run, 'perUserLimit', `${where}: customer ${c} has ${bought} confirmed + ${holding} held units of item ${item.index} (limit ${m.u.perUserLimit})`);
      }
    }
  }

  const byKey = new Map<string, OrderRow[]>();
  for (const o of rows) {
    if (o.idempotency_key === null) continue;
    const k = `${o.customer_id}|${o.idempotency_key}`;
    byKey.set(k, [...(byKey.get(k) ?? []), o]);
  }
  for (const [k, list] of byKey) if (list.length > 1) violation(run, 'one order per (customer, key)', `${k} has orders ${list.map((o) => o.id).join(', ')}`);

  const byId = new Map(rows.map((o) => [o.id, o]));
  for (const s of m.successes) {
    const o = byId.get(s.orderId);
    if (!o) violation(run, 'every PurchaseSuccess is in PostgreSQL', `order ${s.orderId} (step ${s.step}, customer ${s.cust}) is not in PostgreSQL`);
    const want = { customer_id: run.customers[s.cust], sale_item_id: m.items[s.item].id, quantity: s.quantity };
    if (o.customer_id !== want.customer_id || o.sale_item_id !== want.sale_item_id || o.quantity !== want.quantity || (s.key !== null && o.idempotency_key !== s.key)) {
      violation(run, 'every PurchaseSuccess is in PostgreSQL', `order ${s.orderId} answered as ${JSON.stringify({ ...want, key: s.key })} is stored as ${JSON.stringify(o)}`);
    }
    if (o.status !== 'CONFIRMED' && !m.cancelled.has(o.id) && !m.maybeCancelled.has(o.id)) {
      violation(run, 'every PurchaseSuccess is in PostgreSQL', `order ${s.orderId} (step ${s.step}) was answered as a success but is ${o.status}, and its customer never cancelled it`);
    }
  }

  if (m.cancelSentAt !== null) {
    const allowed = m.inflightAtCancel;
    const late = rows.filter((o) => o.created_at.getTime() > m.cancelSentAt!
      && !(allowed && ((allowed.reservationId && o.reservation_id === allowed.reservationId) || (allowed.key && o.idempotency_key === allowed.key && o.customer_id === run.customers[allowed.cust]))));
    if (late.length > 0) violation(run, 'no order after the sale was cancelled', `${where}: orders ${late.map((o) => `${o.id} (${o.created_at.toISOString()}, ${o.status})`).join(', ')} were written after cancelSale was sent at ${new Date(m.cancelSentAt).toISOString()}`);
  }
}

interface EntryView {
  id: string;
  status: string;
  joinedAt: string;
  saleItem: { id: string } | null;
}

/** A customer's waitlist entries, `${customer}|${entry id}|${joinedAt}` → status; null if the read failed. */
async function waitlistOf(run: Run, c: number): Promise<Map<string, string> | null> {
  const a = await send(run.world.apis[(run.model.step + c) % 2].client, DOCS.myWaitlist, { sale: run.saleId }, run.tokens[c]);
  if (a.kind === 'lost') violation(run, 'typed answers', `me.waitlist: no answer (${a.message})`);
  if (errorCodes(a).length > 0 || !a.data?.me) return null;
  return new Map((a.data.me.waitlist as EntryView[]).map((e) => [`${c}|${e.id}|${e.joinedAt}`, e.status]));
}

/**
 * No entry was offered (or got past its offer) while an entry that joined before it still waits.
 * Entries are read one customer at a time while sweepers may serve the queue; statuses only move
 * forward, so a suspect is read again after the later entry was seen served, and only an entry
 * still WAITING then counts.
 */
async function checkWaitlistOrder(run: Run, where: string): Promise<void> {
  const m = run.model;
  const joined = [...new Set(m.items.flatMap((it) => it.joinLog.map((j) => j.cust)))];
  if (joined.length === 0) return;
  const entries = new Map<string, string>();
  for (const c of joined) {
    const got = await waitlistOf(run, c);
    if (!got) return;
    for (const [k, v] of got) entries.set(k, v);
  }
  for (const item of m.items) {
    const seen = item.joinLog.map((j, order) => ({ ...j, order, key: `${j.cust}|${j.entryId}|${j.joinedAt}` }));
    for (const later of seen) {
      const status = entries.get(later.key);
      if (!status || !['OFFERED', 'FULFILLED', 'LAPSED'].includes(status)) continue;
      for (const ahead of seen.filter((e) => e.order < later.order && entries.get(e.key) === 'WAITING')) {
        const again = await waitlistOf(run, ahead.cust);
        if (again?.get(ahead.key) !== 'WAITING') continue;
        violation(run, 'waitlist served in join order', `${where}: item ${item.index}: customer ${later.cust}'s entry (joined ${later.joinedAt}) is ${status} while customer ${ahead.cust}, who joined before (${ahead.joinedAt}), still waits`);
      }
    }
  }
}

/** How long a settled-looking sale (nothing held) may keep one discrepancy before the run fails. */
const STUCK_MS = 5000;

interface Settled {
  live: Levels[];
  confirmed: Map<string, number>;
  ledger: Map<string, number>;
  durableStock: Map<string, number>;
}

async function readSettled(run: Run): Promise<{ ok: boolean; why: string[]; s: Settled | null }> {
  const { world, model: m } = run;
  const why: string[] = [];
  const live: Levels[] = [];
  for (const i of [0, 1]) {
    const got = await levels(run, i);
    if (!got) return { ok: false, why: [`instance ${instanceName(i)} cannot read the sale's live figures yet`], s: null };
    live.push(got);
  }
  const rows = await orders(run);
  const ledgerRows = await world.db.selectFrom('stock_events').select(['sale_item_id', sql<string>`sum(delta)`.as('sum')]).where('sale_id', '=', run.saleId).groupBy('sale_item_id').execute();
  const adjRows = await world.db.selectFrom('stock_adjustments').select(['sale_item_id', sql<string>`sum(delta)`.as('sum')]).where('sale_id', '=', run.saleId).groupBy('sale_item_id').execute();
  const ledger = new Map(ledgerRows.map((r) => [r.sale_item_id, Number(r.sum)]));
  const adj = new Map(adjRows.map((r) => [r.sale_item_id, Number(r.sum)]));
  const s: Settled = { live, confirmed: new Map(), ledger, durableStock: new Map() };
  // The sale's live state follows the admin's last change (a rollback may have undone it in Redis).
  for (const [n, { status }] of live.entries()) {
    if ((m.state === 'CANCELLED' && status !== 'CANCELLED') || (m.state === 'PAUSED' && status !== 'PAUSED') || (m.state === 'OPEN' && (status === 'PAUSED' || status === 'CANCELLED'))) {
      why.push(`instance ${instanceName(n)} reads the sale ${status}, the admin made it ${m.state}`);
    }
  }
  for (const item of m.items) {
    const stock = item.init + (adj.get(item.id) ?? 0);
    const sold = confirmedUnits(rows, (o) => o.sale_item_id === item.id);
    s.durableStock.set(item.id, stock);
    s.confirmed.set(item.id, sold);
    const [a, b] = live.map((l) => l.items.get(item.id)!);
    const tag = `item ${item.index}`;
    if (!a || !b) {
      why.push(`${tag}: missing from the live figures`);
      continue;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) why.push(`${tag}: the instances disagree (${JSON.stringify(a)} vs ${JSON.stringify(b)})`);
    if (a.reserved !== 0) why.push(`${tag}: ${a.reserved} units still reserved`);
    if (a.available + a.reserved + a.sold !== stock) why.push(`${tag}: available + reserved + sold = ${a.available + a.reserved + a.sold}, stock in PostgreSQL (initial + adjustments) is ${stock}`);
    if (!item.stock.has(stock)) why.push(`${tag}: stock in PostgreSQL is ${stock}, the admin's adjustments make ${[...item.stock].join(' or ')}`);
    if (a.sold !== sold) why.push(`${tag}: live sold ${a.sold} != ${sold} units in CONFIRMED orders in PostgreSQL`);
    if ((ledger.get(item.id) ?? 0) !== a.available) why.push(`${tag}: the ledger sums to ${ledger.get(item.id) ?? 0}, available is ${a.available}`);
    if (sold > stock) why.push(`${tag}: ${sold} units in CONFIRMED orders, stock ${stock}`);
  }
  return { ok: why.length === 0, why, s };
}

/**
 * The end of a run: faults are over (the caller ended them). Waits until the sale is settled — every
 * hold expired or resolved, both instances agreeing, the ledger drained — twice in a row, then
 * checks the eventually-true invariants, and the always-true ones once more.
 */
export async function settleAndCheck(run: Run): Promise<void> {
  // A hold interrupted mid-commit (a kill, PostgreSQL cut) is resolved one window plus the sweeper's
  // grace after its reserve; anything else within a hold's life plus a rebuild's wait.
  const slow = (run.model.stats.get('fault: killed between commit and confirm') ?? 0) + (run.model.stats.get('fault: PostgreSQL cut') ?? 0) > 0;
  const timeoutMs = slow ? CONFIRM_WINDOW_MS + CONFIRM_GRACE_MS + HOLD_SECONDS * 1000 + 4000 : HOLD_SECONDS * 1000 + CONFIRM_WINDOW_MS + 3500;
  const until = Date.now() + timeoutMs;
  let last: { why: string[]; s: Settled | null } = { why: ['not read yet'], s: null };
  let streak = 0;
  const t0 = Date.now();
  // Nothing held anywhere and the same discrepancy for this long: no hold is left to resolve it,
  // only a repair would, and one that is coming comes within a few recovery periods.
  let stuck: { why: string; since: number } | null = null;
  for (;;) {
    const r = await readSettled(run);
    last = r;
    streak = r.ok ? streak + 1 : 0;
    if (streak >= 2) break;
    const idle = r.s !== null && r.s.live.every((l) => [...l.items.values()].every((x) => x.reserved === 0));
    const why = r.why.join('; ');
    if (!idle || r.ok) stuck = null;
    else if (!stuck || stuck.why !== why) stuck = { why, since: Date.now() };
    const stuckFor = stuck ? Date.now() - stuck.since : 0;
    if (Date.now() > until || stuckFor > STUCK_MS) {
      const s = last.s;
      const detail = s
        ? run.model.items.map((it) => `item ${it.index}: live ${JSON.stringify(s.live[0].items.get(it.id))}, PostgreSQL confirmed ${s.confirmed.get(it.id)}, ledger ${s.ledger.get(it.id) ?? 0}, stock ${s.durableStock.get(it.id)}`).join('; ')
        : '';
      const invariant = last.why.some((w) => /the admin made it/.test(w)) ? 'sale state follows the admin (settled)'
        : last.why.some((w) => /live sold/.test(w)) ? 'live sold = PostgreSQL confirmed (settled)'
        : last.why.some((w) => /CONFIRMED orders, stock/.test(w)) ? 'CONFIRMED units <= stock'
          : last.why.some((w) => /available \+ reserved \+ sold/.test(w)) ? 'available + reserved + sold = stock (settled)'
            : last.why.some((w) => /ledger/.test(w)) ? 'ledger sums to available (settled)'
              : 'the sale settles';
      const when = stuckFor > STUCK_MS ? `still so ${Math.round(stuckFor / 1000)} s after every hold ended` : `not settled within ${timeoutMs} ms`;
      violation(run, invariant, `${when}: ${last.why.join('; ')}. ${detail}`);
    }
    await sleep(streak > 0 ? 150 : 250);
  }
  note(run, `settled in ${Date.now() - t0} ms`);
  await checkAlways(run, 'settled');
}
