import { readFileSync } from 'node:fs';
import { newChildId } from '../ids.js';
import type { RedisClient } from '../../redis.js';
import { RATE_BUCKET_LUA, RateBuckets, type BucketCheck } from '../rate-buckets.js';
import { SaleKeys } from './keys.js';

const luaDir = new URL('./lua/', import.meta.url);
const prelude = readFileSync(new URL('prelude.lua', luaDir), 'utf8');
// Waiting-room scripts share a second prelude of their own (queue-prelude.lua).
const queuePrelude = readFileSync(new URL('queue-prelude.lua', luaDir), 'utf8');
// reserve.lua also charges the buying rate limits folded into it (rate-bucket.lua).
const script = (name: string) =>
  `${prelude}\n${name.startsWith('queue-') ? `${queuePrelude}\n` : ''}${name === 'reserve' ? `${RATE_BUCKET_LUA}\n` : ''}${readFileSync(new URL(`${name}.lua`, luaDir), 'utf8')}`;

const SCRIPTS = {
  fsReserve: 'reserve',
  // The same script with token buckets as KEYS[2..]; standalone Redis only (see `reserve`).
  fsReserveLimited: 'reserve',
  fsBeginConfirm: 'begin-confirm',
  fsConfirm: 'confirm',
  fsRelease: 'release',
  fsExpire: 'expire',
  fsCancelOrder: 'cancel-order',
  fsAdjust: 'adjust',
  fsInitSale: 'init-sale',
  fsSetSale: 'set-sale',
  fsSnapshot: 'snapshot',
  fsOutboxRead: 'outbox-read',
  fsRebuildSale: 'rebuild-sale',
  fsWaitlistJoin: 'waitlist-join',
  fsWaitlistLeave: 'waitlist-leave',
  fsWaitlistRead: 'waitlist-read',
  fsQueueJoin: 'queue-join',
  fsQueueTicket: 'queue-ticket',
  fsQueueAdvance: 'queue-advance',
  fsQueuePrequeue: 'queue-prequeue',
  fsQueueShuffle: 'queue-shuffle',
  fsLiveCheck: 'live-check',
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Raw = any;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    fsReserve(meta: string, ...args: (string | number)[]): Promise<Raw>;
    /** The only script call with a variable key count: KEYS[2..] are token buckets it charges a new attempt to. */
    fsReserveLimited(numKeys: number, meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsBeginConfirm(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsConfirm(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsRelease(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsExpire(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsCancelOrder(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsAdjust(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsInitSale(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsSetSale(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsSnapshot(meta: string): Promise<Raw>;
    fsOutboxRead(meta: string, count: number, first?: string, last?: string): Promise<Raw>;
    fsRebuildSale(meta: string, payload: string): Promise<Raw>;
    fsWaitlistJoin(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsWaitlistLeave(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsWaitlistRead(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsQueueJoin(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsQueueTicket(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsQueueAdvance(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsQueuePrequeue(meta: string): Promise<Raw>;
    fsQueueShuffle(meta: string, ...args: (string | number)[]): Promise<Raw>;
    fsLiveCheck(meta: string): Promise<Raw>;
  }
}

/**
 * A hold that a script ended (expired, released, cancelled with its sale) or created as a waitlist
 * offer; or (reservationId '', status LAPSED) a waitlist entry that ended without an offer.
 */
export interface EndedHold {
  reservationId: string;
  customerId: string;
  saleItemId: string;
  quantity: number;
  status: 'EXPIRED' | 'RELEASED' | 'OFFERED' | 'LAPSED';
  reason: string;
  /** A waitlist offer (or entry): its customer's waitlist entry changed too. */
  fromWaitlist: boolean;
}

export interface WaitlistRecord {
  saleItemId: string;
  sequence: number;
  quantity: number;
  status: 'WAITING' | 'OFFERED' | 'FULFILLED' | 'LAPSED' | 'LEFT';
  joinedAt: number;
  offerId: string | null;
  /** 1-based among WAITING entries; 0 when not WAITING. */
  position: number;
  /** When a FULFILLED, LAPSED or LEFT entry ended (Redis ms); null while it waits or is offered. */
  endedAt: number | null;
}

export type EngineReject = { ok: false; code: string; available: number | null; retryAfterMs: number; ended: EndedHold[] };

export type ReserveOutcome =
  | { ok: true; reservationId: string; createdAt: number; expiresAt: number; available: number; saleAvailable: number; version: number; epoch: number; ended: EndedHold[] }
  | { ok: 'replay'; reservationId: string; ended: EndedHold[] }
  | EngineReject;

export interface RebuildState {
  /** The sale's new fencing epoch (PostgreSQL's `sales.live_epoch`, raised for this rebuild). */
  epoch: number;
  /** The highest live version any order of the sale recorded: the rebuilt state starts above it. */
  minVersion: number;
  meta: { start: number; end: number; limit: number; hold: number; state: string; wr: 0 | 1 };
  items: { id: string; init: number; adj: number; sold: number }[];
  /** `key` '' for orders without an idempotency key (waitlist offers): cjson has no string for null. */
  orders: { res: string; item: string; cust: string; qty: number; order: string; key: string; cancelled: boolean }[];
}

export interface ItemLevel {
  available: number;
  reserved: number;
  sold: number;
  initial: number;
  adjusted: number;
}

export interface SaleSnapshot {
  now: number;
  startsAt: number;
  endsAt: number;
  state: 'OPEN' | 'PAUSED' | 'CANCELLED';
  perUserLimit: number;
  holdSeconds: number;
  available: number;
  version: number;
  /**
   * Revision of the sale's PostgreSQL rows (meta field `rev`): SalesService writes a fresh token
   * in the same set-sale call as every admin change, so cached rows are checked against it.
   * Null until one is written (a new or rebuilt sale).
   */
  revision: string | null;
  soldOutAt: number | null;
  items: Map<string, ItemLevel>;
}

/** One entry of a sale's outbox: a stock change, appended by the script that made it. */
export interface OutboxEntry {
  streamId: string;
  saleItemId: string;
  kind: string;
  delta: number;
  availableAfter: number;
  customerId: string | null;
  reservationId: string | null;
  reason: string | null;
  /** Milliseconds since the epoch, by Redis' clock. */
  at: number;
  /** The sale's live version right after this change (0 for entries written before versions were recorded). */
  version: number;
  /** The outbox event before this one (null for the first, and for entries written before chains were recorded). */
  prev: string | null;
}

function liveReservation(saleId: string, id: string, h: Record<string, string>, epoch?: string | null): LiveReservation | null {
  if (!h.item) return null;
  // A hold of an older epoch died when the sale was rebuilt, whatever its status still says.
  const dead = epoch != null && h.ep !== epoch && (h.status === 'HELD' || h.status === 'CONFIRMING');
  if (dead) return liveReservation(saleId, id, { ...h, status: 'RELEASED', reason: 'STOCK_REBUILT' });
  return {
    id,
    saleId,
    saleItemId: h.item,
    customerId: h.cust,
    quantity: Number(h.qty),
    status: h.status as LiveReservation['status'],
    createdAt: Number(h.created),
    expiresAt: Number(h.expires),
    endReason: h.reason || null,
    orderId: h.order || null,
    idempotencyKey: h.idem || null,
    fromWaitlist: h.wl === '1',
    cancelled: h.cancelled === '1',
  };
}

export interface LiveReservation {
  id: string;
  saleId: string;
  saleItemId: string;
  customerId: string;
  quantity: number;
  /** CONFIRMING is internal: the order is being committed; clients see HELD. */
  status: 'HELD' | 'CONFIRMING' | 'CONFIRMED' | 'RELEASED' | 'EXPIRED';
  createdAt: number;
  expiresAt: number;
  endReason: string | null;
  orderId: string | null;
  idempotencyKey: string | null;
  fromWaitlist: boolean;
  cancelled: boolean;
}

function parseEnded(list: Raw): EndedHold[] {
  if (!Array.isArray(list)) return [];
  return list.map((s: string) => {
    const [reservationId, saleItemId, quantity, status, reason, wl, ...customer] = s.split('|');
    const customerId = customer.join('|');
    return { reservationId, customerId, saleItemId, quantity: Number(quantity), status: status as EndedHold['status'], reason, fromWaitlist: wl === '1' };
  });
}

/** What the recovery loop compares with PostgreSQL (see live-check.lua). */
export type LiveCheck =
  | { complete: false }
  | {
      complete: true; epoch: number; version: number;
      /** `confirming`: units of CONFIRMING holds; `held`: units of the HELD and CONFIRMING holds that exist (= reserved when whole). */
      items: Map<string, ItemLevel & { confirming: number; held: number }>;
      /** The sale's definition as the scripts enforce it. */
      definition: { state: string; start: number; end: number; limit: number; hold: number };
    };

/** A Redis field/value list (HGETALL, a stream entry) as an object. */
function flatToRecord(flat: string[]): Record<string, string> {
  const r: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) r[flat[i]] = flat[i + 1];
  return r;
}

/** One field of a sale's stock hash ("<item>:a|r|s|init|adj") into an item's figures. */
function applyStockField(level: ItemLevel, kind: string, n: number): void {
  if (kind === 'a') level.available = n;
  else if (kind === 'r') level.reserved = n;
  else if (kind === 's') level.sold = n;
  else if (kind === 'init') level.initial = n;
  else if (kind === 'adj') level.adjusted = n;
}

function flatToMap(flat: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < flat.length; i += 2) m.set(flat[i], flat[i + 1]);
  return m;
}

/** A waiting-room ticket as the queue scripts see it (see queue-prelude.lua). */
export interface QueueFacts {
  kind: 'NONE' | 'PENDING' | 'QUEUED';
  /** Place in the queue, 1..seq; 0 while PENDING. */
  score: number;
  /** Tickets with score <= upto are admitted. */
  upto: number;
  admittedAt: number | null;
  now: number;
  saleAvailable: number;
  /** HELD and CONFIRMING holds of the sale: units that may still come back. */
  holds: number;
  /** 'SHUFFLE' when the sale has started and its pre-queue still needs its order. */
  advance: 'WAIT' | 'SHUFFLE' | 'OK';
}

export type QueueRead = { ok: true; facts: QueueFacts } | { ok: false; code: 'NO_SALE' | 'NO_WAITING_ROOM' | 'SALE_CANCELLED' | 'SALE_ENDED' };

function parseQueueRead(r: Raw): QueueRead {
  if (r[0] !== 'OK') return { ok: false, code: r[1] };
  return {
    ok: true,
    facts: {
      kind: r[1], score: Number(r[2]), upto: Number(r[3]), admittedAt: Number(r[4]) > 0 ? Number(r[4]) : null, now: Number(r[5]),
      saleAvailable: Number(r[6]), holds: Number(r[7]), advance: r[8],
    },
  };
}

/**
 * Typed wrapper around the stock scripts: the only code that knows their argument order and
 * reply shapes. Every decision that could oversell happens inside one script.
 */
export class StockEngine {
  readonly keys: SaleKeys;
  /** Charges the buying buckets itself on Redis Cluster, where the reserve script cannot reach them. */
  private readonly buckets: RateBuckets;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    /** How long a CONFIRMING hold may wait for its PostgreSQL commit before it is resolved. */
    readonly confirmWindowMs = 10_000,
  ) {
    this.keys = new SaleKeys(prefix);
    this.buckets = new RateBuckets(redis);
    for (const [command, file] of Object.entries(SCRIPTS)) {
      if (!(command in redis)) redis.defineCommand(command, { numberOfKeys: command === 'fsReserveLimited' ? undefined : 1, lua: script(file) });
    }
  }

  async initSale(saleId: string, def: { startsAt: number; endsAt: number; perUserLimit: number; holdSeconds: number; state: string; waitingRoom: boolean; epoch: number; items: { id: string; stock: number }[] }): Promise<boolean> {
    const args: (string | number)[] = [def.startsAt, def.endsAt, def.perUserLimit, def.holdSeconds, def.state, def.waitingRoom ? 1 : 0, def.epoch];
    for (const it of def.items) args.push(it.id, it.stock);
    const created = await this.redis.fsInitSale(this.keys.meta(saleId), ...args);
    await this.redis.sadd(this.keys.liveSales(), saleId);
    return created === 1;
  }

  /**
   * `admitted`: the caller verified an admission token of this customer for this sale.
   * `rateChecks`: token buckets a new attempt draws one token from; a replay of the key (also while
   * its first call is in flight) draws none. Over any of them, the script decides nothing and
   * answers RATE_LIMITED. On standalone Redis the script charges them itself, after its
   * idempotency lookup, in the same round trip. On Redis Cluster they are outside the sale's slot:
   * they are charged just before the script, which answers a replay whatever the verdict, and a
   * charge that bought nothing (a replay, a reused key, a sale not live) is handed back after.
   */
  async reserve(saleId: string, input: { saleItemId: string; customerId: string; quantity: number; idempotencyKey: string; mutation: 'reserve' | 'purchase'; admitted?: boolean; rateChecks?: readonly BucketCheck[] }): Promise<ReserveOutcome> {
    const checks = input.rateChecks ?? [];
    const meta = this.keys.meta(saleId);
    const args: (string | number)[] = [input.saleItemId, input.customerId, input.quantity, input.idempotencyKey, input.mutation, newChildId(saleId), this.confirmWindowMs, input.admitted ? '1' : '0'];
    let r: Raw;
    if (checks.length === 0) {
      r = await this.redis.fsReserve(meta, ...args);
    } else if (this.buckets.cluster) {
      const verdict = await this.buckets.charge(checks);
      r = await this.redis.fsReserve(meta, ...args, verdict.allowed ? -1 : verdict.retryAfterMs);
      const boughtNothing = r[0] === 'REPLAY' || (r[0] === 'REJ' && (r[1] === 'IDEMPOTENCY_KEY_REUSED' || r[1] === 'NO_SALE'));
      if (verdict.allowed && boughtNothing) void this.buckets.refund(checks).catch(() => undefined);
    } else {
      // Separate commands because ioredis' cluster auto-pipelining routes a call by its first
      // argument: the sale's meta key for fsReserve, a key count for the other (off-cluster only).
      r = await this.redis.fsReserveLimited(1 + checks.length, meta, ...checks.map((c) => c.key), ...args, '', ...checks.flatMap((c) => [c.burst, c.intervalUs]));
    }
    if (r[0] === 'RATE') return { ok: false, code: 'RATE_LIMITED', available: null, retryAfterMs: Number(r[1]), ended: parseEnded(r[2]) };
    if (r[0] === 'OK') {
      return { ok: true, reservationId: r[1], createdAt: Number(r[2]), expiresAt: Number(r[3]), available: Number(r[4]), saleAvailable: Number(r[5]), version: Number(r[6]), epoch: Number(r[8]), ended: parseEnded(r[7]) };
    }
    if (r[0] === 'REPLAY') return { ok: 'replay', reservationId: r[1], ended: parseEnded(r[2]) };
    return { ok: false, code: r[1], available: Number(r[2]) >= 0 ? Number(r[2]) : null, retryAfterMs: Number(r[3]), ended: parseEnded(r[4]) };
  }

  async beginConfirm(saleId: string, reservationId: string, customerId: string) {
    const r = await this.redis.fsBeginConfirm(this.keys.meta(saleId), reservationId, customerId, this.confirmWindowMs);
    const ended = parseEnded(r[2]);
    if (r[0] === 'OK') return { ok: true as const, deadline: Number(r[1]), epoch: Number(r[3]), version: Number(r[4]), ended };
    if (r[0] === 'CONFIRMED') return { ok: 'confirmed' as const, orderId: r[1] as string, ended };
    return { ok: false as const, code: r[1] as string, ended };
  }

  async confirm(saleId: string, reservationId: string, orderId: string) {
    const r = await this.redis.fsConfirm(this.keys.meta(saleId), reservationId, orderId);
    if (r[0] === 'OK') return { ok: true as const, version: Number(r[1]), fromWaitlist: r[2] === '1' };
    if (r[0] === 'ALREADY') return { ok: 'already' as const, orderId: r[1] as string };
    // GONE: the hold is not CONFIRMING in this epoch; NO_SALE: the live state is missing or partial.
    return { ok: false as const, status: (r[0] === 'REJ' ? r[1] : r[1]) as string };
  }

  /** customerId '' releases anyone's hold (admins, compensation, the resolver). */
  async release(saleId: string, reservationId: string, customerId: string, reason: string, onlyConfirming = false) {
    const r = await this.redis.fsRelease(this.keys.meta(saleId), reservationId, customerId, reason, onlyConfirming ? '1' : '0');
    if (r[0] === 'OK') return { ok: true as const, ended: parseEnded(r[1]) };
    return { ok: false as const, code: r[1] as string, ended: parseEnded(r[2]) };
  }

  /** `retireAfterMs`: also tell whether the sale ended that long ago and is idle (0: never). */
  async expire(saleId: string, limit = 1000, graceMs = 5000, retireAfterMs = 0): Promise<{ ended: EndedHold[]; overdueConfirming: string[]; retirable: boolean }> {
    const r = await this.redis.fsExpire(this.keys.meta(saleId), limit, graceMs, retireAfterMs);
    return { ended: parseEnded(r[0]), overdueConfirming: r[1] ?? [], retirable: r[2] === 1 };
  }

  /**
   * Takes an ended, idle sale (see `expire`) off the live-sales set, so sweepers, drainers and
   * watchers stop visiting it; its keys stay, so it reads as before. The two scripts that can
   * still change an ended sale (cancel-order, adjust) put it back after they ran; checking again
   * after the removal catches one that ran in between, whatever the order the set and the sale's
   * keys (in another cluster slot) see the commands in. True when it stays retired.
   */
  async retire(saleId: string, retireAfterMs: number): Promise<boolean> {
    await this.redis.srem(this.keys.liveSales(), saleId);
    if ((await this.expire(saleId, 1000, 5000, retireAfterMs)).retirable) return true;
    await this.redis.sadd(this.keys.liveSales(), saleId);
    return false;
  }

  async cancelOrder(saleId: string, reservationId: string, orderId: string) {
    const r = await this.redis.fsCancelOrder(this.keys.meta(saleId), reservationId, orderId);
    // After the script (see `retire`): a retired sale is live again for the drainer of its stock event.
    if (r[0] === 'OK') await this.redis.sadd(this.keys.liveSales(), saleId);
    if (r[0] === 'OK') return { ok: true as const, version: Number(r[1]), ended: parseEnded(r[2]) };
    return { ok: false as const, code: r[1] as string, ended: parseEnded(r[2]) };
  }

  /**
   * `expectedStock`: the item's stock (initial + adjustments) before this change as PostgreSQL has
   * it; a live state that disagrees is stale and refuses (STALE) rather than add to wrong figures.
   */
  async adjust(saleId: string, saleItemId: string, delta: number, reason: string, adminId: string, expected: { stock?: number; epoch?: number } = {}) {
    const r = await this.redis.fsAdjust(this.keys.meta(saleId), saleItemId, delta, reason, adminId, expected.stock ?? '', expected.epoch ?? '');
    if (r[0] === 'OK') await this.redis.sadd(this.keys.liveSales(), saleId);
    if (r[0] === 'OK') return { ok: true as const, available: Number(r[1]), ended: parseEnded(r[2]) };
    return { ok: false as const, code: r[1] as string, available: Number(r[2]), ended: parseEnded(r[3]) };
  }

  async setSale(saleId: string, fields: Record<string, string | number>) {
    const args = Object.entries(fields).flat();
    const r = await this.redis.fsSetSale(this.keys.meta(saleId), ...args);
    if (r[0] === 'OK') return { ok: true as const, ended: parseEnded(r[1]) };
    return { ok: false as const, code: r[1] as string, ended: [] as EndedHold[] };
  }

  /** The sale's meta and all item figures from one script call, or null when the sale is not live in Redis. */
  async snapshot(saleId: string): Promise<SaleSnapshot | null> {
    const [now, metaFlat, stockFlat] = await this.redis.fsSnapshot(this.keys.meta(saleId));
    if (!metaFlat || metaFlat.length === 0) return null;
    const meta = flatToMap(metaFlat);
    const stock = flatToMap(stockFlat);
    const items = new Map<string, ItemLevel>();
    for (const [field, value] of stock) {
      const sep = field.lastIndexOf(':');
      const id = field.slice(0, sep);
      const kind = field.slice(sep + 1);
      let level = items.get(id);
      if (!level) items.set(id, (level = { available: 0, reserved: 0, sold: 0, initial: 0, adjusted: 0 }));
      applyStockField(level, kind, Number(value));
    }
    return {
      now: Number(now),
      startsAt: Number(meta.get('start')),
      endsAt: Number(meta.get('end')),
      state: meta.get('state') as SaleSnapshot['state'],
      perUserLimit: Number(meta.get('limit')),
      holdSeconds: Number(meta.get('hold')),
      available: Number(meta.get('avail')),
      version: Number(meta.get('ver')),
      revision: meta.get('rev') ?? null,
      soldOutAt: meta.has('soldOutAt') ? Number(meta.get('soldOutAt')) : null,
      items,
    };
  }

  async reservation(saleId: string, reservationId: string): Promise<LiveReservation | null> {
    const [h, epoch] = await Promise.all([this.redis.hgetall(this.keys.reservation(saleId, reservationId)), this.redis.hget(this.keys.meta(saleId), 'ep')]);
    return liveReservation(saleId, reservationId, h, epoch);
  }

  /** The oldest `count` outbox entries of a sale, and the current state of the holds they name. */
  /**
   * The oldest outbox entries (from `range.after`, up to and without `range.before` when given) and
   * the current state of every hold they name.
   */
  async readOutbox(saleId: string, count: number, range: { after?: string; before?: string } = {}): Promise<{ entries: OutboxEntry[]; holds: LiveReservation[] }> {
    const bounds: [string, string] | [] = range.after || range.before ? [range.after ? `(${range.after}` : '-', range.before ? `(${range.before}` : '+'] : [];
    const [rawEntries, rawHolds] = (await this.redis.fsOutboxRead(this.keys.meta(saleId), count, ...bounds)) as [[string, string[]][], [string, string[]][]];
    const entries = rawEntries.map(([streamId, flat]): OutboxEntry => {
      const f = flatToRecord(flat);
      return { streamId, saleItemId: f.i, kind: f.k, delta: Number(f.d), availableAfter: Number(f.a), customerId: f.c || null, reservationId: f.r || null, reason: f.w || null, at: Number(f.t), version: Number(f.v ?? 0), prev: f.p || null };
    });
    const holds: LiveReservation[] = [];
    for (const [id, flat] of rawHolds) {
      const r = liveReservation(saleId, id, flatToRecord(flat));
      if (r) holds.push(r);
    }
    return { entries, holds };
  }

  /** Removes outbox entries once they are copied. */
  async trimOutbox(saleId: string, streamIds: readonly string[]): Promise<void> {
    if (streamIds.length > 0) await this.redis.xdel(this.keys.outbox(saleId), ...streamIds);
  }

  /** The customer's reservation ids in a sale, newest first. */
  async customerReservationIds(saleId: string, customerId: string): Promise<string[]> {
    return this.redis.zrevrange(`${this.keys.base(saleId)}cres:${customerId}`, 0, 99);
  }

  /** `admitted`: the caller verified an admission token of this customer for this sale. */
  async joinWaitlist(saleId: string, saleItemId: string, customerId: string, quantity: number, admitted = false) {
    const r = await this.redis.fsWaitlistJoin(this.keys.meta(saleId), saleItemId, customerId, quantity, admitted ? '1' : '0');
    if (r[0] === 'OK') return { ok: true as const, changed: parseEnded(r[1]) };
    return { ok: false as const, code: r[1] as string, available: Number(r[2]), changed: parseEnded(r[3]) };
  }

  async leaveWaitlist(saleId: string, saleItemId: string, customerId: string) {
    const r = await this.redis.fsWaitlistLeave(this.keys.meta(saleId), saleItemId, customerId);
    if (r[0] === 'OK') return { ok: true as const, changed: parseEnded(r[1]) };
    return { ok: false as const, code: r[1] as string, changed: parseEnded(r[2]) };
  }

  /** The customer's entries (any status) on these items, and each item's waitlist size. */
  async readWaitlist(saleId: string, customerId: string, saleItemIds: readonly string[]): Promise<{ entries: WaitlistRecord[]; sizes: Map<string, number> }> {
    const entries: WaitlistRecord[] = [];
    const sizes = new Map<string, number>();
    if (saleItemIds.length === 0) return { entries, sizes };
    const flat = await this.redis.fsWaitlistRead(this.keys.meta(saleId), customerId, ...saleItemIds);
    for (let i = 0; i < flat.length; i += 4) {
      const [item, raw, rank, size] = [flat[i] as string, flat[i + 1] as string, Number(flat[i + 2]), Number(flat[i + 3])];
      sizes.set(item, size);
      if (!raw) continue;
      const [seq, qty, status, joined, offer, endedAt] = raw.split('|');
      entries.push({
        saleItemId: item, sequence: Number(seq), quantity: Number(qty), status: status as WaitlistRecord['status'],
        joinedAt: Number(joined), offerId: offer || null, position: status === 'WAITING' && rank >= 0 ? rank + 1 : 0,
        endedAt: endedAt ? Number(endedAt) : null,
      });
    }
    return { entries, sizes };
  }

  /**
   * Replaces the sale's live state (missing, partial or stale) with PostgreSQL's facts. Returns the
   * outbox id of its REBUILT marker: stock events before it describe the old state.
   */
  async rebuildSale(saleId: string, state: RebuildState): Promise<{ marker: string; version: number }> {
    const [marker, version] = await this.redis.fsRebuildSale(this.keys.meta(saleId), JSON.stringify(state));
    await this.redis.sadd(this.keys.liveSales(), saleId);
    return { marker, version: Number(version) };
  }

  /** The sale's live state as the recovery loop compares it with PostgreSQL (see live-check.lua). */
  async liveCheck(saleId: string): Promise<LiveCheck> {
    const r = await this.redis.fsLiveCheck(this.keys.meta(saleId));
    if (Number(r[0]) !== 1) return { complete: false };
    const items = new Map<string, ItemLevel & { confirming: number; held: number }>();
    for (const [field, value] of flatToMap(r[3] as string[])) {
      const sep = field.lastIndexOf(':');
      const id = field.slice(0, sep);
      let level = items.get(id);
      if (!level) items.set(id, (level = { available: 0, reserved: 0, sold: 0, initial: 0, adjusted: 0, confirming: 0, held: 0 }));
      applyStockField(level, field.slice(sep + 1), Number(value));
    }
    for (const [id, q] of flatToMap(r[4] as string[])) {
      const level = items.get(id);
      if (level) level.confirming = Number(q);
    }
    for (const [id, q] of flatToMap(r[6] as string[])) {
      const level = items.get(id);
      if (level) level.held = Number(q);
    }
    const [state, start, end, limit, hold] = r[5] as string[];
    return { complete: true, epoch: Number(r[1]), version: Number(r[2]), items, definition: { state, start: Number(start), end: Number(end), limit: Number(limit), hold: Number(hold) } };
  }

  /** True when the sale's live state is whole (every script would run on it). */
  async isLive(saleId: string): Promise<boolean> {
    return (await this.liveCheck(saleId)).complete;
  }

  async counters(saleId: string): Promise<Map<string, number>> {
    const h = await this.redis.hgetall(this.keys.counters(saleId));
    return new Map(Object.entries(h).map(([k, v]) => [k, Number(v)]));
  }

  async liveSaleIds(): Promise<string[]> {
    return this.redis.smembers(this.keys.liveSales());
  }

  /** Takes a waiting-room ticket for the customer, or returns the one they hold. */
  async queueJoin(saleId: string, customerId: string, admitPerSecond: number): Promise<QueueRead> {
    return parseQueueRead(await this.redis.fsQueueJoin(this.keys.meta(saleId), customerId, admitPerSecond));
  }

  /** The customer's ticket (kind 'NONE' without one), admission advanced to this moment first. */
  async queueTicket(saleId: string, customerId: string, admitPerSecond: number): Promise<QueueRead> {
    return parseQueueRead(await this.redis.fsQueueTicket(this.keys.meta(saleId), customerId, admitPerSecond));
  }

  async queueAdvance(saleId: string, admitPerSecond: number) {
    const [status, upto, seq, saleAvailable, holds] = await this.redis.fsQueueAdvance(this.keys.meta(saleId), admitPerSecond);
    return {
      status: status as 'NO_SALE' | 'NO_WAITING_ROOM' | 'FINISHED' | 'WAIT' | 'SHUFFLE' | 'OK',
      upto: Number(upto), seq: Number(seq), saleAvailable: Number(saleAvailable), holds: Number(holds),
    };
  }

  /** The frozen pre-queue of a started sale, or why there is none to shuffle. */
  async queuePrequeue(saleId: string): Promise<{ status: 'OK'; members: string[] } | { status: 'DONE' | 'WAIT' | 'NO_SALE' }> {
    const r = await this.redis.fsQueuePrequeue(this.keys.meta(saleId));
    return r[0] === 'OK' ? { status: 'OK', members: r[1] } : { status: r[0] };
  }

  /** Writes the pre-queue's order (first customer first), unless some call already did. */
  async queueShuffle(saleId: string, order: readonly string[]): Promise<'OK' | 'DONE' | 'STALE' | 'WAIT' | 'NO_SALE'> {
    const r = await this.redis.fsQueueShuffle(this.keys.meta(saleId), ...order);
    return r[0];
  }
}
