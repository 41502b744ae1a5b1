import type { Logger } from 'pino';
import { z } from 'zod';
import type { OrderRow } from '../db/types.js';
import type { Viewer } from './auth.js';
import { invalidInput, rateLimited, rejected, UnavailableError, type ErrorCode, type Rejected } from './errors.js';
import { newId, saleIdOf } from './ids.js';
import type { OrderStore, Refusal } from './orders.js';
import { ReservationReader, type ReservationView } from './reservations.js';
import type { SaleEvents } from './sale-events.js';
import type { SalesService } from './sales.js';
import type { EngineReject, ReserveOutcome, StockEngine } from './stock/engine.js';
import type { OutcomeMetrics } from './outcome-metrics.js';
import type { BucketCheck } from './rate-buckets.js';
import { zodToRejected } from './zod-errors.js';

const buyInput = z.object({
  saleItemId: z.string().min(1, 'must be an id').max(64, 'must be an id of at most 64 characters'),
  quantity: z.number().int('must be a whole number').min(1, 'must be at least 1').max(1000, 'is more than one customer may buy'),
  idempotencyKey: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters'),
  admissionToken: z.string().max(4096).nullish(),
});
export type BuyInput = z.input<typeof buyInput>;

export type PurchaseResult = { kind: 'PurchaseSuccess'; order: OrderRow; replayed: boolean } | Rejected;
export type ReserveResult = { kind: 'ReserveSuccess'; reservation: ReservationView; replayed: boolean } | Rejected;
export type ReleaseResult = { kind: 'ReleaseSuccess'; reservation: ReservationView } | Rejected;
export type CancelResult = { kind: 'CancelOrderSuccess'; order: OrderRow } | Rejected;

const POLL_MS = 15;

/** Over a rate limit the reserve script counted: thrown as the contract's GraphQL error once counted in the metrics. */
type RateLimited = { kind: 'RateLimited'; retryAfterMs: number };
/** A hold the reserve script granted (or replayed), with the validated input that asked for it. */
type Taken = { kind?: undefined; saleId: string; saleItemId: string; quantity: number; idempotencyKey: string; hold: Exclude<ReserveOutcome, EngineReject> };

/** Encrypts delivery details for storage; supplied by the accounts part of the service. */
export type DeliverySealer = (delivery: unknown, field: string) => { ok: true; sealed: string | null } | { ok: false; rejected: Rejected };
const noDelivery: DeliverySealer = () => ({ ok: true, sealed: null });

/** Checks an admission token locally (no I/O): the customer's own, for this sale, unexpired. */
export type AdmissionCheck = (customerId: string, saleId: string, token: string) => Promise<boolean>;
const noAdmission: AdmissionCheck = async () => false;

/**
 * The buying path: reserve (Lua) → commit the order (PostgreSQL) → confirm (Lua).
 * A failed commit releases the hold at once; a process that dies between the steps leaves a
 * CONFIRMING hold that the sweeper resolves against PostgreSQL after its deadline.
 */
export class PurchaseService {
  constructor(
    private readonly engine: StockEngine,
    private readonly sales: SalesService,
    private readonly orders: OrderStore,
    private readonly reservations: ReservationReader,
    private readonly events: SaleEvents,
    private readonly metrics: OutcomeMetrics,
    private readonly log: Logger,
    private readonly sealDelivery: DeliverySealer = noDelivery,
    private readonly admission: AdmissionCheck = noAdmission,
  ) {}

  /** `rateChecks`: buying limits the reserve script counts in the same round trip (see FOLDED_FIELDS). */
  async purchase(viewer: Viewer, input: BuyInput & { delivery?: unknown }, rateChecks?: readonly BucketCheck[]): Promise<PurchaseResult> {
    const result = await this.purchaseInner(viewer, input, rateChecks).catch((err) => this.unavailable(err));
    return this.settle('purchase', result);
  }

  async reserve(viewer: Viewer, input: BuyInput, rateChecks?: readonly BucketCheck[]): Promise<ReserveResult> {
    const result = await this.reserveInner(viewer, input, rateChecks).catch((err) => this.unavailable(err));
    return this.settle('reserve', result);
  }

  private settle<T extends { kind: string }>(mutation: 'purchase' | 'reserve', result: T | Rejected | RateLimited): T | Rejected {
    this.metrics.outcome(mutation, result.kind === 'Rejected' ? (result as Rejected).code : result.kind === 'RateLimited' ? 'RATE_LIMITED' : 'OK');
    if (result.kind === 'RateLimited') throw rateLimited((result as RateLimited).retryAfterMs);
    return result as T | Rejected;
  }

  /**
   * Redis or PostgreSQL failed outside the steps that compensate themselves: nothing was
   * decided that a retry could double (a hold left behind expires or is resolved), so say retry.
   */
  private unavailable(err: unknown): Rejected {
    this.log.warn({ err: String(err) }, 'buying failed on an unavailable dependency');
    const retryAfterSeconds = err instanceof UnavailableError ? err.retryAfterSeconds : 2;
    return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds });
  }

  /**
   * The decision both buying mutations share: validate, then one reserve script call. Returns the
   * rejection, or the hold (new or replayed) with the validated input.
   */
  private async take(viewer: Viewer, input: BuyInput, mutation: 'purchase' | 'reserve', rateChecks: readonly BucketCheck[] | undefined): Promise<Taken | Rejected | RateLimited> {
    const parsed = buyInput.safeParse(input);
    if (!parsed.success) return zodToRejected(parsed.error, 'input');
    const { saleItemId, quantity, idempotencyKey, admissionToken } = parsed.data;
    const saleId = saleIdOf(saleItemId);
    if (!saleId) return rejected('NOT_FOUND', { field: 'input.saleItemId' });
    const admitted = await this.isAdmitted(viewer, saleId, admissionToken);
    const r = await this.reserveWithLiveSale(saleId, { saleItemId, customerId: viewer.id, quantity, idempotencyKey, mutation, admitted, rateChecks });
    if ('kind' in r) return r;
    void this.events.holdsEnded(saleId, r.ended);
    if (r.ok === false && r.code === 'RATE_LIMITED') return { kind: 'RateLimited', retryAfterMs: r.retryAfterMs };
    if (r.ok === false) return this.toRejected(r, saleItemId);
    return { saleId, saleItemId, quantity, idempotencyKey, hold: r };
  }

  private async purchaseInner(viewer: Viewer, input: BuyInput & { delivery?: unknown }, rateChecks: readonly BucketCheck[] | undefined): Promise<PurchaseResult | RateLimited> {
    const sealed = input.delivery == null ? { ok: true as const, sealed: null } : this.sealDelivery(input.delivery, 'input.delivery');
    if (!sealed.ok) return sealed.rejected;
    const taken = await this.take(viewer, input, 'purchase', rateChecks);
    if (taken.kind) return taken;
    const { saleId, saleItemId, quantity, idempotencyKey, hold: r } = taken;
    if (r.ok === 'replay') return this.replayPurchase(saleId, r.reservationId);

    const facts = await this.sales.itemFactsOf(saleItemId);
    if (!facts) {
      const released = await this.engine.release(saleId, r.reservationId, '', 'CONFIRM_FAILED', true);
      void this.events.holdsEnded(saleId, released.ended);
      return rejected('NOT_FOUND', { field: 'input.saleItemId' });
    }
    return this.commitOrder(saleId, {
      reservationId: r.reservationId, saleItemId, customerId: viewer.id, quantity, unitPriceCents: facts.unitPriceCents,
      idempotencyKey, deliveryEnc: sealed.sealed, deadline: r.createdAt + this.engine.confirmWindowMs, saleAvailable: r.saleAvailable,
      liveEpoch: r.epoch, liveVersion: r.version,
    });
  }

  private async reserveInner(viewer: Viewer, input: BuyInput, rateChecks: readonly BucketCheck[] | undefined): Promise<ReserveResult | RateLimited> {
    const taken = await this.take(viewer, input, 'reserve', rateChecks);
    if (taken.kind) return taken;
    const { saleId, hold: r } = taken;
    const reservation = await this.reservations.byId(r.reservationId);
    if (!reservation) return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
    if (r.ok === true) {
      void this.events.reservationChanged(saleId, r.reservationId, viewer.id);
      void this.events.stockChanged(saleId);
      if (r.saleAvailable === 0) void this.events.saleChanged(saleId);
    }
    return { kind: 'ReserveSuccess', reservation, replayed: r.ok === 'replay' };
  }

  /**
   * Verified before the script runs, locally, so the hot path stays one Redis round trip; the
   * script itself decides whether the sale needs it (missing or bad tokens answer NOT_ADMITTED).
   */
  private isAdmitted(viewer: Viewer, saleId: string, token: string | null | undefined): Promise<boolean> {
    return token ? this.admission(viewer.id, saleId, token) : Promise.resolve(false);
  }

  /** Runs the reserve script; a sale missing from Redis is brought live (or reported unavailable) once. */
  private async reserveWithLiveSale(saleId: string, args: Parameters<StockEngine['reserve']>[1]) {
    const first = await this.engine.reserve(saleId, args);
    if (first.ok !== false || first.code !== 'NO_SALE') return first;
    const facts = await this.sales.itemFactsOf(args.saleItemId);
    if (!facts) return rejected('NOT_FOUND', { field: 'input.saleItemId' });
    try {
      await this.sales.snapshot(saleId);
    } catch (err) {
      return this.unavailable(err);
    }
    return this.engine.reserve(saleId, args);
  }

  private toRejected(r: EngineReject, saleItemId: string): Rejected {
    const available = r.available;
    const retryAfterSeconds = r.retryAfterMs > 0 ? Math.ceil(r.retryAfterMs / 1000) : null;
    switch (r.code) {
      case 'INVALID_QUANTITY':
        return invalidInput('input.quantity', 'input.quantity is more than one customer may buy of this item.');
      case 'NOT_FOUND':
        return rejected('NOT_FOUND', { field: 'input.saleItemId' });
      case 'NO_SALE':
        return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2 });
      case 'SOLD_OUT':
        return rejected('SOLD_OUT', {
          available,
          retryAfterSeconds,
          waitlistOpen: available === 0,
          message: available && available > 0 ? `Only ${available} left: ask for fewer.` : retryAfterSeconds ? 'Sold out for now: held units may come back if their holds expire.' : 'Sorry, this item is sold out.',
        });
      default:
        void saleItemId;
        return rejected(r.code as ErrorCode, { available, retryAfterSeconds });
    }
  }

  private async commitOrder(
    saleId: string,
    o: {
      reservationId: string; saleItemId: string; customerId: string; quantity: number; unitPriceCents: number; idempotencyKey: string | null;
      deliveryEnc: string | null; deadline: number; saleAvailable: number; liveEpoch: number; liveVersion: number; fromWaitlist?: boolean;
    },
  ): Promise<PurchaseResult> {
    const orderId = newId();
    const { fromWaitlist, ...row } = o;
    let outcome;
    try {
      outcome = await this.orders.insert({ id: orderId, saleId, ...row, deadline: new Date(o.deadline) });
    } catch (err) {
      return this.compensate(saleId, o.reservationId, err);
    }
    if (!outcome.ok) {
      // The freed units may go straight to the waitlist: its offers are announced with the release.
      const released = await this.engine.release(saleId, o.reservationId, '', 'CONFIRM_FAILED', true);
      void this.events.holdsEnded(saleId, released.ended);
      if (outcome.reason === 'KEY_TAKEN') {
        // Redis no longer remembered the key (its order was cancelled, or the sale rebuilt): the
        // order that holds it answers, if it is the same request.
        const e = outcome.existing;
        if (e.sale_item_id !== o.saleItemId || e.quantity !== o.quantity) return rejected('IDEMPOTENCY_KEY_REUSED');
        return { kind: 'PurchaseSuccess', order: e, replayed: true };
      }
      if (outcome.reason === 'REFUSED') return this.refused(saleId, o.saleItemId, outcome.refusal);
      return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
    }
    let confirmed: Awaited<ReturnType<StockEngine['confirm']>>;
    try {
      confirmed = await this.engine.confirm(saleId, o.reservationId, orderId);
    } catch (err) {
      // The order is committed, so it is sold: the sweeper (or a rebuild) confirms the hold from it.
      this.log.warn({ err: String(err), saleId, orderId }, 'confirm after commit failed; left to the sweeper');
      return { kind: 'PurchaseSuccess', order: outcome.order, replayed: false };
    }
    if (confirmed.ok === false && confirmed.status === 'NO_SALE') {
      // The live state went missing after the commit: the order is sold, and the rebuild counts it.
      this.sales.liveStateSuspect(saleId, 'missing or incomplete at confirm', 'check');
      return { kind: 'PurchaseSuccess', order: outcome.order, replayed: false };
    }
    if (confirmed.ok === true && (fromWaitlist || confirmed.fromWaitlist)) void this.events.waitlistChanged(saleId, o.saleItemId, o.customerId);
    if (confirmed.ok === false) {
      this.sales.liveStateSuspect(saleId, `hold ${confirmed.status} after its order committed`, 'check');
      // Only possible if the hold was resolved while we were past the deadline: undo the order.
      this.log.error({ saleId, reservationId: o.reservationId, orderId, status: confirmed.status }, 'hold gone after order commit; cancelling the order');
      await this.orders.cancel(orderId);
      return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
    }
    void this.events.orderChanged(saleId, orderId, o.customerId);
    void this.events.reservationChanged(saleId, o.reservationId, o.customerId);
    void this.events.stockChanged(saleId);
    if (o.saleAvailable === 0) void this.events.saleChanged(saleId);
    return { kind: 'PurchaseSuccess', order: outcome.order, replayed: false };
  }

  /**
   * PostgreSQL refused an order the live state had allowed (the hold is released already). Over
   * stock or over the limit means the live state is wrong: the buyer gets the true answer, and the
   * sale is repaired from PostgreSQL.
   */
  private async refused(saleId: string, saleItemId: string, refusal: Refusal): Promise<Rejected> {
    this.metrics.refused(refusal);
    this.log.warn({ saleId, saleItemId, refusal }, 'PostgreSQL refused an order the live state allowed');
    switch (refusal) {
      case 'OVER_STOCK': {
        this.sales.liveStateSuspect(saleId, 'PostgreSQL refused an order over stock', 'repair');
        const count = await this.orders.itemCount(saleItemId).catch(() => undefined);
        const available = count ? Math.max(0, count.stock - count.sold) : 0;
        return rejected('SOLD_OUT', { available, waitlistOpen: false, message: available > 0 ? `Only ${available} left: ask for fewer.` : 'Sorry, this item is sold out.' });
      }
      case 'OVER_LIMIT':
        this.sales.liveStateSuspect(saleId, 'PostgreSQL refused an order over the per-customer limit', 'repair');
        return rejected('LIMIT_EXCEEDED');
      case 'SALE_CANCELLED':
        // The live state let a purchase into a cancelled sale: it may have gone back to before the cancel.
        this.sales.liveStateSuspect(saleId, 'an order in a cancelled sale', 'check');
        return rejected('SALE_CANCELLED');
      case 'STALE_EPOCH':
        this.sales.liveStateSuspect(saleId, 'an order of an older live state', 'check');
        return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1, message: 'This sale was just brought up to date; nothing was bought. Please retry.' });
    }
  }

  /**
   * PostgreSQL refused or failed the commit. When it surely did not commit, the hold goes back at
   * once; when it may have (a connection lost mid-commit), the sweeper decides after the deadline.
   */
  private async compensate(saleId: string, reservationId: string, err: unknown): Promise<Rejected> {
    const surelyNotCommitted = isDefiniteFailure(err);
    this.log.warn({ err: String(err), saleId, reservationId, surelyNotCommitted }, 'order commit failed');
    if (surelyNotCommitted) {
      try {
        const r = await this.engine.release(saleId, reservationId, '', 'CONFIRM_FAILED', true);
        void this.events.holdsEnded(saleId, r.ended);
      } catch (releaseErr) {
        this.log.error({ err: String(releaseErr), reservationId }, 'compensation failed; the sweeper will resolve the hold');
      }
    }
    return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2, message: 'We could not record your order just now; nothing was bought. Please retry in a moment.' });
  }

  /** The same key already succeeded: answer with its order, waiting while the first call finishes. */
  private async replayPurchase(saleId: string, reservationId: string): Promise<PurchaseResult> {
    const deadline = Date.now() + this.engine.confirmWindowMs + 2000;
    while (Date.now() < deadline) {
      const r = await this.engine.reservation(saleId, reservationId);
      if (r?.status === 'CONFIRMED' && r.orderId) {
        const [order] = await this.orders.byIds([r.orderId]);
        if (order) return { kind: 'PurchaseSuccess', order, replayed: true };
      }
      if (!r || r.status === 'RELEASED' || r.status === 'EXPIRED') return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
      await new Promise((res) => setTimeout(res, POLL_MS));
    }
    return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
  }

  /** Redis or PostgreSQL unreachable: a typed retry, never an internal error (nothing half-done is left behind). */
  async confirmReservation(viewer: Viewer, reservationId: string, delivery: unknown): Promise<PurchaseResult> {
    return this.confirmInner(viewer, reservationId, delivery).catch((err) => this.unavailable(err));
  }

  async releaseReservation(viewer: Viewer, reservationId: string): Promise<ReleaseResult> {
    return this.releaseInner(viewer, reservationId).catch((err) => this.unavailable(err));
  }

  async cancelOrder(viewer: Viewer, orderId: string): Promise<CancelResult> {
    return this.cancelInner(viewer, orderId).catch((err) => this.unavailable(err));
  }

  private async confirmInner(viewer: Viewer, reservationId: string, delivery: unknown): Promise<PurchaseResult> {
    if (!reservationId || reservationId.length > 64) return invalidInput('reservationId', 'reservationId must be an id of 1 to 64 characters.');
    const sealed = delivery == null ? { ok: true as const, sealed: null } : this.sealDelivery(delivery, 'delivery');
    if (!sealed.ok) return sealed.rejected;
    const saleId = saleIdOf(reservationId);
    if (!saleId) return rejected('RESERVATION_NOT_FOUND');
    // The item's price comes from PostgreSQL (cached): read before the hold moves, so an
    // unreachable database changes nothing.
    const held = await this.engine.reservation(saleId, reservationId);
    if (held && held.customerId === viewer.id) await this.sales.itemFactsOf(held.saleItemId);
    const begun = await this.engine.beginConfirm(saleId, reservationId, viewer.id);
    void this.events.holdsEnded(saleId, begun.ended);
    if (begun.ok === 'confirmed') {
      const [order] = await this.orders.byIds([begun.orderId]);
      if (order) return { kind: 'PurchaseSuccess', order, replayed: true };
      return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
    }
    if (begun.ok === false) return this.holdRejection(begun.code, saleId, reservationId);
    // The hold read before begin-confirm: its item, quantity and key do not change with its status.
    const res = held;
    const facts = res && (await this.sales.itemFactsOf(res.saleItemId));
    if (!res || !facts) return rejected('RESERVATION_NOT_FOUND');
    const snap = await this.engine.snapshot(saleId);
    return this.commitOrder(saleId, {
      reservationId, saleItemId: res.saleItemId, customerId: viewer.id, quantity: res.quantity, unitPriceCents: facts.unitPriceCents,
      idempotencyKey: res.fromWaitlist ? null : res.idempotencyKey, deliveryEnc: sealed.sealed, deadline: begun.deadline, saleAvailable: snap?.available ?? 1,
      liveEpoch: begun.epoch, liveVersion: begun.version, fromWaitlist: res.fromWaitlist,
    });
  }

  private async releaseInner(viewer: Viewer, reservationId: string): Promise<ReleaseResult> {
    if (!reservationId || reservationId.length > 64) return invalidInput('reservationId', 'reservationId must be an id of 1 to 64 characters.');
    const saleId = saleIdOf(reservationId);
    if (!saleId) return rejected('RESERVATION_NOT_FOUND');
    const admin = viewer.role === 'admin';
    const r = await this.engine.release(saleId, reservationId, admin ? '' : viewer.id, admin ? 'ADMIN' : 'CUSTOMER');
    void this.events.holdsEnded(saleId, r.ended);
    if (!r.ok) return this.holdRejection(r.code, saleId, reservationId);
    const reservation = await this.reservations.byId(reservationId);
    if (!reservation) return rejected('RESERVATION_NOT_FOUND');
    void this.events.saleChanged(saleId);
    return { kind: 'ReleaseSuccess', reservation };
  }

  /** Says why a hold is gone, so a client can explain it to a person. */
  private async holdRejection(code: string, saleId: string, reservationId: string): Promise<Rejected> {
    if (code === 'NO_SALE') return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2 });
    if (code === 'RESERVATION_NOT_HELD') {
      const r = await this.engine.reservation(saleId, reservationId);
      if (r?.status === 'RELEASED') {
        const why = r.endReason === 'SALE_CANCELLED' ? 'the sale was cancelled' : r.endReason === 'ADMIN' ? 'an admin released it' : r.endReason === 'CONFIRM_FAILED' ? 'its order could not be recorded' : 'it was released';
        return rejected('RESERVATION_NOT_HELD', { message: `This reservation is no longer held: ${why}.` });
      }
      if (r?.status === 'CONFIRMED') return rejected('RESERVATION_NOT_HELD', { message: 'This reservation is already confirmed.' });
      if (r?.status === 'CONFIRMING') return rejected('RESERVATION_NOT_HELD', { message: 'This reservation is being confirmed: its order is being recorded.', retryAfterSeconds: 1 });
    }
    return rejected(code as ErrorCode);
  }

  private async cancelInner(viewer: Viewer, orderId: string): Promise<CancelResult> {
    if (!orderId || orderId.length > 64) return invalidInput('orderId', 'orderId must be an id of 1 to 64 characters.');
    const order = await this.orders.visible(viewer, orderId);
    if (!order) return rejected('NOT_FOUND', { field: 'orderId' });
    if (order.status !== 'CONFIRMED') return rejected('ORDER_NOT_CANCELLABLE', { message: 'This order is already cancelled.' });
    // The order is committed, so a hold still CONFIRMING (its purchase between commit and confirm,
    // or interrupted there) is confirmed first: otherwise the cancel would find no sold units to
    // give back, and the sweeper would later count the unit as sold for a cancelled order.
    const hold = await this.engine.reservation(order.sale_id, order.reservation_id);
    if (hold?.status === 'CONFIRMING') {
      const settled = await this.engine.confirm(order.sale_id, order.reservation_id, order.id);
      if (settled.ok === false) return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1, message: 'This order is still being recorded; please retry in a moment.' });
    }
    const cancelled = await this.orders.cancel(orderId);
    if (!cancelled) return rejected('ORDER_NOT_CANCELLABLE', { message: 'This order is already cancelled.' });
    // PostgreSQL first: a crash between the two steps undersells (reconciled later), never oversells.
    const r = await this.engine.cancelOrder(order.sale_id, order.reservation_id, order.id);
    if (!r.ok) {
      this.log.warn({ orderId, code: r.code }, 'cancelled order had no live units to return');
      this.sales.liveStateSuspect(order.sale_id, 'a cancelled order had no live units', 'check');
    }
    else {
      void this.events.holdsEnded(order.sale_id, r.ended);
      void this.events.stockChanged(order.sale_id);
      void this.events.saleChanged(order.sale_id);
    }
    void this.events.orderChanged(order.sale_id, order.id, order.customer_id);
    return { kind: 'CancelOrderSuccess', order: cancelled };
  }
}

/** True when PostgreSQL surely did not commit: it answered with an error, or was never reached. */
function isDefiniteFailure(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return true;
  if (e?.code === 'ECONNREFUSED' || e?.code === 'ENOTFOUND') return true;
  const msg = String(e?.message ?? '');
  return /pool after calling end|timeout exceeded when trying to connect|Connection terminated due to connection timeout/i.test(msg);
}
