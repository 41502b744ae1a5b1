import type * as fc from 'fast-check';
import { brief, DOCS, send, type Answer } from './api.js';
import { checkAlways, typedAnswer } from './checker.js';
import { instanceName, note, sleep, Violation, violation, type Run } from './context.js';
import { adjustStock, count, type Model, type SaleState } from './model.js';

/**
 * The chaos test's commands: each runs real API calls on one of the two instances, asserts what
 * its answers must satisfy whatever the faults, updates the model, and hands over to the checker.
 */

export abstract class Cmd implements fc.AsyncCommand<Model, Run> {
  /** CutPg starts an outage that the next commands run in; every other command counts it down. */
  readonly startsOutage: boolean = false;
  abstract toString(): string;
  check(_m: Readonly<Model>): boolean {
    return true;
  }
  protected abstract act(m: Model, r: Run): Promise<void>;

  async run(m: Model, r: Run): Promise<void> {
    m.step++;
    note(r, `#${m.step} ${this.toString()}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.act(m, r),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Violation('commands finish', `${this} did not finish within 60 s`)), 60_000))),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (m.pgCutLeft > 0 && !this.startsOutage) {
      m.pgCutLeft--;
      if (m.pgCutLeft === 0) await endPgOutage(r);
    }
    await checkAlways(r, `after #${m.step} ${this}`);
  }
}

/** Ends a PostgreSQL outage once it lasted its minimum, and waits until both instances are ready again. */
export async function endPgOutage(r: Run): Promise<void> {
  const cut = r.pgCut;
  if (!cut) return;
  const left = cut.since + cut.minMs - Date.now();
  if (left > 0) await sleep(left);
  await Promise.all(r.world.pgProxies.map((p) => p.restore()));
  r.pgCut = null;
  r.model.pgCutLeft = 0;
  note(r, `PostgreSQL back after ${Date.now() - cut.since} ms`);
  await r.world.bothReady();
}

const cust = (m: Model, c: number) => c % m.u.customers;
const itemOf = (m: Model, i: number) => i % m.items.length;
/** Keys per mutation (a purchase key and a reserve key never collide by accident; IDEMPOTENCY_KEY_REUSED still comes from another item or quantity). */
const keyName = (k: number, mutation: 'purchase' | 'reserve') => `${mutation === 'purchase' ? 'p' : 'r'}${k}`;

const BUY_REJECTIONS = ['SOLD_OUT', 'LIMIT_EXCEEDED', 'SALE_PAUSED', 'SALE_CANCELLED', 'IDEMPOTENCY_KEY_REUSED', 'TEMPORARILY_UNAVAILABLE'];
const HOLD_REJECTIONS = ['RESERVATION_NOT_FOUND', 'RESERVATION_EXPIRED', 'RESERVATION_NOT_HELD', 'TEMPORARILY_UNAVAILABLE', 'SALE_CANCELLED', 'SALE_PAUSED'];

export interface BuyRequest {
  c: number;
  i: number;
  q: number;
  key: string;
  instance: number;
  sentState: SaleState;
}

function recordSuccess(m: Model, s: { orderId: string; cust: number; item: number; quantity: number; key: string | null; via: 'purchase' | 'confirm' }) {
  if (m.successes.some((x) => x.orderId === s.orderId)) return;
  m.successes.push({ ...s, step: m.step });
}

/** A purchase's answer: a typed outcome; a success for the right request, never a second order for a key, none while paused or cancelled. */
export function onPurchase(r: Run, b: BuyRequest, a: Answer): void {
  const m = r.model;
  const what = `purchase(customer ${b.c}, item ${b.i}, q${b.q}, ${b.key}) on ${instanceName(b.instance)}`;
  const codes = typedAnswer(r, what, a);
  if (codes.length > 0) {
    note(r, `  → ${brief(a)}`);
    count(m, 'purchase: error answer');
    return;
  }
  const p = a.kind === 'data' ? a.data?.purchase : null;
  if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
  const k = `${b.c}|${b.key}`;
  const prior = m.purchaseKeys.get(k);
  if (p.__typename === 'PurchaseSuccess') {
    const o = p.order;
    note(r, `  → PurchaseSuccess ${o.id}${p.replayed ? ' (replayed)' : ''}`);
    count(m, p.replayed ? 'purchase: replayed' : 'purchase: sold');
    if (o.customerId === r.customers[b.c] && o.idempotencyKey === b.key && (o.quantity !== b.q || o.saleItem?.id !== m.items[b.i].id)) {
      violation(r, 'idempotency', `${what}: answered the order this key bought for another item or quantity (${JSON.stringify(o)}) instead of IDEMPOTENCY_KEY_REUSED`);
    }
    if (o.customerId !== r.customers[b.c] || o.quantity !== b.q || o.saleItem?.id !== m.items[b.i].id || o.idempotencyKey !== b.key) {
      violation(r, 'every PurchaseSuccess is in PostgreSQL', `${what}: answered an order of another request: ${JSON.stringify(o)}`);
    }
    if (prior && prior.orderId !== o.id) violation(r, 'one order per (customer, key)', `${what}: answered order ${o.id}; this key already bought order ${prior.orderId} at step ${prior.step}`);
    // An order in a cancelled sale, never; while paused, not unless Redis was rolled back (that
    // stale state is only caught by the recovery's next look, and by the settled checks).
    if (!p.replayed && (b.sentState === 'CANCELLED' || (b.sentState === 'PAUSED' && !m.rolledBack))) {
      violation(r, b.sentState === 'CANCELLED' ? 'no order after the sale was cancelled' : 'no sale while paused', `${what}: sold (order ${o.id}) while the sale was ${b.sentState}`);
    }
    recordSuccess(m, { orderId: o.id, cust: b.c, item: b.i, quantity: b.q, key: b.key, via: 'purchase' });
    if (!prior) m.purchaseKeys.set(k, m.successes.find((s) => s.orderId === o.id)!);
    return;
  }
  note(r, `  → Rejected ${p.code}`);
  count(m, `purchase: ${p.code}`);
  if (!BUY_REJECTIONS.includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
  if (prior && p.code !== 'TEMPORARILY_UNAVAILABLE' && prior.item === b.i && prior.quantity === b.q) {
    violation(r, 'idempotency', `${what}: this key bought order ${prior.orderId} at step ${prior.step}, yet its retry answered ${p.code} instead of that order`);
  }
}

export function onReserve(r: Run, b: BuyRequest, a: Answer): void {
  const m = r.model;
  const what = `reserve(customer ${b.c}, item ${b.i}, q${b.q}, ${b.key}) on ${instanceName(b.instance)}`;
  const codes = typedAnswer(r, what, a);
  if (codes.length > 0) {
    note(r, `  → ${brief(a)}`);
    count(m, 'reserve: error answer');
    return;
  }
  const p = a.kind === 'data' ? a.data?.reserve : null;
  if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
  const k = `${b.c}|${b.key}`;
  if (p.__typename === 'ReserveSuccess') {
    const res = p.reservation;
    note(r, `  → ReserveSuccess ${res.id} ${res.status}${p.replayed ? ' (replayed)' : ''}`);
    count(m, p.replayed ? 'reserve: replayed' : 'reserve: held');
    const known = m.reserveKeys.get(k) ?? new Set<string>();
    if (p.replayed && known.size > 0 && !known.has(res.id)) violation(r, 'idempotency', `${what}: replayed reservation ${res.id}, but this key was answered ${[...known].join(', ')}`);
    // A hold (not an order) in a stopped sale: a contract breach, except right after Redis was
    // rolled back to a state from before the stop (PostgreSQL still refuses its order).
    if (!p.replayed && b.sentState !== 'OPEN' && !m.rolledBack) {
      violation(r, b.sentState === 'CANCELLED' ? 'no hold after the sale was cancelled' : 'no sale while paused', `${what}: held ${res.id} while the sale was ${b.sentState}`);
    }
    if (res.quantity !== b.q) violation(r, 'typed answers', `${what}: reservation ${res.id} holds ${res.quantity} units`);
    known.add(res.id);
    m.reserveKeys.set(k, known);
    if (!m.reservations[b.c].includes(res.id)) m.reservations[b.c].push(res.id);
    return;
  }
  note(r, `  → Rejected ${p.code}`);
  count(m, `reserve: ${p.code}`);
  if (!BUY_REJECTIONS.includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
}

export interface ConfirmRequest {
  c: number;
  reservationId: string;
  instance: number;
  sentState: SaleState;
}

export function onConfirm(r: Run, b: ConfirmRequest, a: Answer): void {
  const m = r.model;
  const what = `confirmReservation(customer ${b.c}, ${b.reservationId}) on ${instanceName(b.instance)}`;
  const codes = typedAnswer(r, what, a);
  if (codes.length > 0) {
    note(r, `  → ${brief(a)}`);
    count(m, 'confirm: error answer');
    return;
  }
  const p = a.kind === 'data' ? a.data?.confirmReservation : null;
  if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
  if (p.__typename === 'PurchaseSuccess') {
    const o = p.order;
    note(r, `  → PurchaseSuccess ${o.id}${p.replayed ? ' (replayed)' : ''}`);
    count(m, p.replayed ? 'confirm: replayed' : 'confirm: sold');
    const item = m.items.findIndex((it) => it.id === o.saleItem?.id);
    if (o.customerId !== r.customers[b.c] || item < 0) violation(r, 'every PurchaseSuccess is in PostgreSQL', `${what}: answered an order of another request: ${JSON.stringify(o)}`);
    if (!p.replayed && b.sentState === 'CANCELLED') violation(r, 'no order after the sale was cancelled', `${what}: confirmed (order ${o.id}) after the sale was cancelled`);
    recordSuccess(m, { orderId: o.id, cust: b.c, item, quantity: o.quantity, key: o.idempotencyKey ?? null, via: 'confirm' });
    return;
  }
  note(r, `  → Rejected ${p.code}`);
  count(m, `confirm: ${p.code}`);
  if (!HOLD_REJECTIONS.includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
}

/** The customer's HELD reservations as they see them (newest first); null when the read failed. */
export async function heldReservations(r: Run, c: number, instance: number): Promise<{ id: string; fromWaitlist: boolean }[] | null> {
  const a = await send(r.world.apis[instance].client, DOCS.myHeld, { sale: r.saleId }, r.tokens[c]);
  if (a.kind !== 'data' || !a.data?.me) return null;
  return (a.data.me.reservations as { id: string; status: string; fromWaitlist: boolean }[]).filter((x) => x.status === 'HELD');
}

/**
 * A reservation to act on: one customer `c` sees HELD; else a waitlist offer another customer holds
 * (offered customers are the ones who come to confirm: an offer is what they waited for); else any
 * reservation `c` was ever answered with (unless `heldOnly`).
 */
export async function pickReservation(r: Run, c: number, pick: number, instance: number, heldOnly = false): Promise<{ c: number; id: string } | null> {
  const n = r.model.u.customers;
  const own = (await heldReservations(r, c, instance)) ?? [];
  if (own.length > 0) return { c, id: own[pick % own.length].id };
  for (let k = 1; k < n; k++) {
    const cc = (c + k) % n;
    const offers = ((await heldReservations(r, cc, instance)) ?? []).filter((x) => x.fromWaitlist);
    if (offers.length > 0) return { c: cc, id: offers[pick % offers.length].id };
  }
  if (heldOnly) return null;
  const known = r.model.reservations[c];
  return known.length > 0 ? { c, id: known[pick % known.length] } : null;
}

export class Purchase extends Cmd {
  constructor(readonly c: number, readonly i: number, readonly q: number, readonly k: number, readonly instance: number) {
    super();
  }
  toString() {
    return `Purchase(c${this.c}, i${this.i}, q${this.q}, p${this.k}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const b: BuyRequest = { c: cust(m, this.c), i: itemOf(m, this.i), q: this.q, key: keyName(this.k, 'purchase'), instance: this.instance, sentState: m.state };
    const a = await send(r.world.apis[b.instance].client, DOCS.purchase, { input: { saleItemId: m.items[b.i].id, quantity: b.q, idempotencyKey: b.key } }, r.tokens[b.c]);
    onPurchase(r, b, a);
  }
}

export class Reserve extends Cmd {
  constructor(readonly c: number, readonly i: number, readonly q: number, readonly k: number, readonly instance: number) {
    super();
  }
  toString() {
    return `Reserve(c${this.c}, i${this.i}, q${this.q}, r${this.k}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const b: BuyRequest = { c: cust(m, this.c), i: itemOf(m, this.i), q: this.q, key: keyName(this.k, 'reserve'), instance: this.instance, sentState: m.state };
    const a = await send(r.world.apis[b.instance].client, DOCS.reserve, { input: { saleItemId: m.items[b.i].id, quantity: b.q, idempotencyKey: b.key } }, r.tokens[b.c]);
    onReserve(r, b, a);
  }
}

/** Several customers (or one, from several connections) buying at the same moment, on both instances. */
export class Burst extends Cmd {
  constructor(readonly buys: { c: number; i: number; k: number; instance: number; reserve: boolean }[]) {
    super();
  }
  toString() {
    return `Burst(${this.buys.map((b) => `${b.reserve ? 'Reserve' : 'Purchase'} c${b.c} i${b.i} ${b.reserve ? 'r' : 'p'}${b.k} @${instanceName(b.instance)}`).join(' | ')})`;
  }
  protected async act(m: Model, r: Run) {
    const reqs = this.buys.map((x) => ({ x, b: { c: cust(m, x.c), i: itemOf(m, x.i), q: 1, key: keyName(x.k, x.reserve ? 'reserve' : 'purchase'), instance: x.instance, sentState: m.state } as BuyRequest }));
    const answers = await Promise.all(reqs.map(({ x, b }) => send(r.world.apis[b.instance].client, x.reserve ? DOCS.reserve : DOCS.purchase, { input: { saleItemId: m.items[b.i].id, quantity: 1, idempotencyKey: b.key } }, r.tokens[b.c])));
    reqs.forEach(({ x, b }, n) => (x.reserve ? onReserve : onPurchase)(r, b, answers[n]));
  }
}

export class Confirm extends Cmd {
  constructor(readonly c: number, readonly pick: number, readonly instance: number) {
    super();
  }
  toString() {
    return `Confirm(c${this.c}, pick ${this.pick}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const picked = await pickReservation(r, cust(m, this.c), this.pick, this.instance);
    if (!picked) return note(r, '  (no reservation to confirm)');
    const { c, id } = picked;
    const sentState = m.state;
    const a = await send(r.world.apis[this.instance].client, DOCS.confirm, { id }, r.tokens[c]);
    onConfirm(r, { c, reservationId: id, instance: this.instance, sentState }, a);
  }
}

export class Release extends Cmd {
  constructor(readonly c: number, readonly pick: number, readonly instance: number) {
    super();
  }
  toString() {
    return `Release(c${this.c}, pick ${this.pick}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const picked = await pickReservation(r, cust(m, this.c), this.pick, this.instance);
    if (!picked) return note(r, '  (no reservation to release)');
    const { c, id } = picked;
    const what = `releaseReservation(customer ${c}, ${id})`;
    const a = await send(r.world.apis[this.instance].client, DOCS.release, { id }, r.tokens[c]);
    if (typedAnswer(r, what, a).length > 0) return note(r, `  → ${brief(a)}`);
    const p = a.kind === 'data' ? a.data?.releaseReservation : null;
    if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
    if (p.__typename === 'ReleaseSuccess') {
      note(r, `  → ReleaseSuccess ${p.reservation.status} ${p.reservation.endReason}`);
      count(m, 'release: released');
      return;
    }
    note(r, `  → Rejected ${p.code}`);
    count(m, `release: ${p.code}`);
    if (!HOLD_REJECTIONS.includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
  }
}

export class CancelOrder extends Cmd {
  constructor(readonly c: number, readonly pick: number, readonly instance: number) {
    super();
  }
  toString() {
    return `CancelOrder(c${this.c}, pick ${this.pick}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const c = cust(m, this.c);
    // The customer's orders as they see them (`me.orders`: committed ones, even those still being confirmed).
    const list = await send(r.world.apis[this.instance].client, DOCS.myOrders, { sale: r.saleId }, r.tokens[c]);
    let orders: { id: string; status: string }[] = [];
    if (list.kind === 'data' && list.data?.me) orders = list.data.me.orders.edges.map((e: { node: { id: string; status: string } }) => e.node);
    else orders = m.successes.filter((s) => s.cust === c).map((s) => ({ id: s.orderId, status: 'CONFIRMED' }));
    const open = orders.filter((o) => o.status === 'CONFIRMED');
    const pool = open.length > 0 ? open : orders;
    if (pool.length === 0) return note(r, '  (no order to cancel)');
    const id = pool[this.pick % pool.length].id;
    const what = `cancelOrder(customer ${c}, ${id})`;
    const a = await send(r.world.apis[this.instance].client, DOCS.cancelOrder, { id }, r.tokens[c]);
    if (typedAnswer(r, what, a).length > 0) {
      m.maybeCancelled.add(id);
      return note(r, `  → ${brief(a)}`);
    }
    const p = a.kind === 'data' ? a.data?.cancelOrder : null;
    if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
    if (p.__typename === 'CancelOrderSuccess') {
      note(r, `  → CancelOrderSuccess ${id}`);
      count(m, 'cancelOrder: cancelled');
      m.cancelled.add(id);
      return;
    }
    note(r, `  → Rejected ${p.code}`);
    count(m, `cancelOrder: ${p.code}`);
    if (p.code === 'TEMPORARILY_UNAVAILABLE') m.maybeCancelled.add(id);
    if (!['ORDER_NOT_CANCELLABLE', 'TEMPORARILY_UNAVAILABLE'].includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
  }
}

export class AdjustStock extends Cmd {
  constructor(readonly i: number, readonly delta: number, readonly instance: number) {
    super();
  }
  toString() {
    return `AdjustStock(i${this.i}, ${this.delta > 0 ? '+' : ''}${this.delta}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const item = m.items[itemOf(m, this.i)];
    const what = `adjustStock(item ${item.index}, ${this.delta})`;
    const a = await send(r.world.apis[this.instance].client, DOCS.adjustStock, { item: item.id, delta: this.delta }, r.world.admin);
    const codes = typedAnswer(r, what, a, ['BAD_USER_INPUT']);
    if (codes.length === 0 && a.kind === 'data' && a.data?.adjustStock) {
      adjustStock(item, this.delta, true);
      count(m, 'adjustStock: done');
      note(r, `  → adjusted; stock now ${[...item.stock].join(' or ')}`);
    } else if (codes.length > 0 && codes.every((code) => code === 'BAD_USER_INPUT')) {
      count(m, 'adjustStock: refused');
      note(r, `  → refused: ${brief(a)}`);
    } else {
      adjustStock(item, this.delta, false);
      note(r, `  → unknown outcome: ${brief(a)}`);
    }
  }
}

export class SaleAdmin extends Cmd {
  constructor(readonly op: 'pause' | 'resume' | 'cancel', readonly instance: number) {
    super();
  }
  toString() {
    return `${this.op === 'pause' ? 'PauseSale' : this.op === 'resume' ? 'ResumeSale' : 'CancelSale'}(@${instanceName(this.instance)})`;
  }
  check(m: Readonly<Model>) {
    if (m.state === 'CANCELLED') return false;
    return this.op === 'resume' ? m.state === 'PAUSED' : this.op === 'pause' ? m.state === 'OPEN' : true;
  }
  protected async act(m: Model, r: Run) {
    const doc = this.op === 'pause' ? DOCS.pauseSale : this.op === 'resume' ? DOCS.resumeSale : DOCS.cancelSale;
    const sentAt = Date.now();
    const a = await send(r.world.apis[this.instance].client, doc, { id: r.saleId }, r.world.admin);
    typedAnswer(r, `${this.op}Sale`, a, ['BAD_USER_INPUT']);
    note(r, `  → ${brief(a)}`);
    // The durable truth of the admin's change.
    const row = await r.world.db.selectFrom('sales').select('state').where('id', '=', r.saleId).executeTakeFirstOrThrow();
    const before = m.state;
    m.state = row.state as SaleState;
    if (m.state === 'CANCELLED' && before !== 'CANCELLED') {
      m.cancelSentAt = sentAt;
      m.inflightAtCancel = m.inflight;
    }
    count(m, `${this.op}Sale: ${before} → ${m.state}`);
  }
}

export class JoinWaitlist extends Cmd {
  constructor(readonly c: number, readonly i: number, readonly q: number, readonly instance: number) {
    super();
  }
  toString() {
    return `JoinWaitlist(c${this.c}, i${this.i}, q${this.q}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const c = cust(m, this.c);
    const item = m.items[itemOf(m, this.i)];
    const what = `joinWaitlist(customer ${c}, item ${item.index}, q${this.q})`;
    const a = await send(r.world.apis[this.instance].client, DOCS.joinWaitlist, { item: item.id, qty: this.q }, r.tokens[c]);
    if (typedAnswer(r, what, a).length > 0) return note(r, `  → ${brief(a)}`);
    const p = a.kind === 'data' ? a.data?.joinWaitlist : null;
    if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
    if (p.__typename === 'WaitlistEntry') {
      note(r, `  → WaitlistEntry ${p.id} ${p.status} position ${p.position}`);
      count(m, `joinWaitlist: ${p.status}`);
      if (!item.joinLog.some((j) => j.cust === c && j.entryId === p.id && j.joinedAt === p.joinedAt)) item.joinLog.push({ cust: c, joinedAt: p.joinedAt, entryId: p.id });
      return;
    }
    note(r, `  → Rejected ${p.code}`);
    count(m, `joinWaitlist: ${p.code}`);
    if (!['WAITLIST_CLOSED', 'ALREADY_ON_WAITLIST', 'LIMIT_EXCEEDED', 'SALE_CANCELLED', 'SALE_PAUSED', 'TEMPORARILY_UNAVAILABLE'].includes(p.code)) {
      violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
    }
  }
}

export class LeaveWaitlist extends Cmd {
  constructor(readonly c: number, readonly i: number, readonly instance: number) {
    super();
  }
  toString() {
    return `LeaveWaitlist(c${this.c}, i${this.i}, @${instanceName(this.instance)})`;
  }
  protected async act(m: Model, r: Run) {
    const c = cust(m, this.c);
    const item = m.items[itemOf(m, this.i)];
    const what = `leaveWaitlist(customer ${c}, item ${item.index})`;
    const a = await send(r.world.apis[this.instance].client, DOCS.leaveWaitlist, { item: item.id }, r.tokens[c]);
    if (typedAnswer(r, what, a).length > 0) return note(r, `  → ${brief(a)}`);
    const p = a.kind === 'data' ? a.data?.leaveWaitlist : null;
    if (!p) violation(r, 'typed answers', `${what}: no result: ${brief(a)}`);
    note(r, `  → ${p.__typename === 'WaitlistEntry' ? `${p.status}` : `Rejected ${p.code}`}`);
    count(m, `leaveWaitlist: ${p.__typename === 'WaitlistEntry' ? p.status : p.code}`);
    if (p.__typename !== 'WaitlistEntry' && !['NOT_ON_WAITLIST', 'TEMPORARILY_UNAVAILABLE'].includes(p.code)) violation(r, 'typed answers', `${what}: rejected ${p.code} (${p.message})`);
  }
}

/** Time passes: holds expire (holdSeconds is short), sweepers, drainers and recovery run. */
export class Wait extends Cmd {
  constructor(readonly ms: number) {
    super();
  }
  toString() {
    return `Wait(${this.ms} ms)`;
  }
  protected async act() {
    await sleep(this.ms);
  }
}
