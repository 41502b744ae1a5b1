import { createHmac, randomInt } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Logger } from 'pino';
import type { Viewer } from './auth.js';
import { badUserInput, notFound, rejected, UnavailableError, type Rejected } from './errors.js';
import type { SalesService } from './sales.js';
import type { QueueFacts, QueueRead, StockEngine } from './stock/engine.js';
import { checkIdOrReject, isWellFormedId } from './validation.js';

export type QueueStatus = 'PENDING' | 'WAITING' | 'ADMITTED' | 'EXPIRED';

export interface QueueTicketView {
  readonly kind: 'QueueTicket';
  saleId: string;
  status: QueueStatus;
  /** 1 + WAITING tickets ahead; null while PENDING; 0 once admitted. */
  position: number | null;
  admissionToken: string | null;
  admittedAt: Date | null;
  admissionExpiresAt: Date | null;
  estimatedWaitSeconds: number | null;
  /** Nothing is left to buy: no unit is available and none is held. */
  saleSoldOut: boolean;
  /** Nothing is available right now, but held units may come back. */
  holdsMayFree: boolean;
}

export type QueueResult = QueueTicketView | Rejected;

const ADMISSION_TYP = 'admission+jwt';
const ADMISSION_AUDIENCE = 'flash-sale:admission';

/**
 * Admission tokens: HS256 JWTs bound to a customer (`sub`) and a sale (`sale`), with their own
 * `typ` and audience. They are signed with a key derived from the JWT secret rather than the
 * secret itself, so no admission token can pass as a bearer token (whose verifier knows nothing
 * of `typ` or audience) and no bearer token can pass as an admission token.
 */
export class AdmissionTokens {
  private readonly key: Uint8Array;

  constructor(jwtSecret: string, readonly validitySeconds: number) {
    this.key = createHmac('sha256', jwtSecret).update('flash-sale admission tokens v1').digest();
  }

  /** When a ticket admitted at `admittedAt` stops being valid: whole seconds, as `exp` is. */
  expiresAt(admittedAt: number): number {
    return (Math.floor(admittedAt / 1000) + this.validitySeconds) * 1000;
  }

  /** Deterministic for a ticket (no random claims), so every read hands out the same token. */
  sign(customerId: string, saleId: string, admittedAt: number): Promise<string> {
    return new SignJWT({ sale: saleId })
      .setProtectedHeader({ alg: 'HS256', typ: ADMISSION_TYP })
      .setSubject(customerId)
      .setAudience(ADMISSION_AUDIENCE)
      .setIssuedAt(Math.floor(admittedAt / 1000))
      .setExpirationTime(this.expiresAt(admittedAt) / 1000)
      .sign(this.key);
  }

  /** Local CPU only, so checking a token adds no round trip to the buying hot path. */
  async verify(token: string, customerId: string, saleId: string): Promise<boolean> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], typ: ADMISSION_TYP, audience: ADMISSION_AUDIENCE, subject: customerId });
      return payload.sale === saleId;
    } catch {
      return false;
    }
  }
}

/** A sale's waiting-room setting as PostgreSQL holds it; never changes once the sale exists. */
type RoomOf = { admitPerSecond: number } | 'none' | 'unknown';

/** What one advance of a sale's admission saw; handed to the sale's followers on this instance. */
export interface AdmissionTick {
  status: 'WAIT' | 'SHUFFLE' | 'OK' | 'FINISHED' | 'NO_SALE' | 'NO_WAITING_ROOM';
  upto: number;
  saleAvailable: number;
  holds: number;
}

const stockFlags = (saleAvailable: number, holds: number) => ({ saleSoldOut: saleAvailable <= 0 && holds === 0, holdsMayFree: saleAvailable <= 0 && holds > 0 });

/**
 * The waiting room (contract promise 12). Tickets taken before startsAt form a pre-queue that is
 * shuffled once at the start, so arriving early (a bot firing a millisecond before the start)
 * buys no place; later tickets queue in arrival order behind it. Admission moves through the
 * queue at the sale's admitPerSecond, advanced in Lua from Redis time by every instance's
 * scheduler and by every read; an admitted customer gets a token for purchase/reserve that
 * expires with the ticket.
 */
export class WaitingRoomService {
  private readonly rooms = new Map<string, { admitPerSecond: number } | 'none'>();
  /** Sales whose waiting room has nothing more to do (ended, cancelled): the scheduler skips them. */
  private readonly finished = new Set<string>();
  private readonly shuffles = new Map<string, Promise<void>>();
  private readonly followers = new Map<string, Set<(tick: AdmissionTick) => void>>();

  constructor(
    private readonly engine: StockEngine,
    private readonly sales: SalesService,
    readonly tokens: AdmissionTokens,
    private readonly log: Logger,
  ) {}

  async join(viewer: Viewer, saleId: string): Promise<QueueResult> {
    const bad = checkIdOrReject(saleId, 'saleId');
    if (bad) return bad;
    const room = await this.roomOf(saleId);
    if (room === 'unknown') return rejected('NOT_FOUND', { field: 'saleId' });
    if (room === 'none') return rejected('NO_WAITING_ROOM');
    const read = await this.readLive(saleId, () => this.engine.queueJoin(saleId, viewer.id, room.admitPerSecond));
    if ('kind' in read) return read;
    if (!read.ok) return read.code === 'NO_SALE' ? rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2 }) : rejected(read.code);
    return this.view(saleId, viewer.id, room.admitPerSecond, read.facts);
  }

  /** The viewer's ticket, or null when they hold none (or the sale has no waiting room). */
  async ticket(viewer: Viewer, saleId: string): Promise<QueueTicketView | null> {
    return (await this.readTicket(viewer, saleId))?.view ?? null;
  }

  private async readTicket(viewer: Viewer, saleId: string): Promise<{ view: QueueTicketView; facts: QueueFacts } | null> {
    if (!isWellFormedId(saleId)) return null;
    const room = await this.roomOf(saleId);
    if (room === 'unknown' || room === 'none') return null;
    const read = await this.readLive(saleId, () => this.engine.queueTicket(saleId, viewer.id, room.admitPerSecond));
    if ('kind' in read) throw new UnavailableError('live state of this sale is being rebuilt');
    if (!read.ok || read.facts.kind === 'NONE') return null;
    return { view: await this.view(saleId, viewer.id, room.admitPerSecond, read.facts), facts: read.facts };
  }

  /**
   * Follows the viewer's ticket for a subscription: the current ticket (null without one), then
   * admission, expiry and the PENDING → WAITING step at once, position and stock moves at most
   * every `everyMs`. Positions come from this instance's admission ticks (position = place −
   * upto), so the followers of a sale cost no Redis reads between their own transitions.
   */
  async follow(viewer: Viewer, saleId: string, everyMs: number, push: (ticket: QueueTicketView) => void): Promise<{ current: QueueTicketView | null; stop: () => void }> {
    const room = await this.roomOf(saleId);
    if (room === 'unknown') throw notFound('sale');
    if (room === 'none') throw badUserInput('This sale has no waiting room.', 'saleId');
    let last: QueueTicketView | null = null;
    let place = 0;
    let sentAt = 0;
    let reading = false;
    let stopped = false;
    let expiry: NodeJS.Timeout | null = null;
    const remember = (r: { view: QueueTicketView; facts: QueueFacts } | null) => {
      sentAt = Date.now();
      if (!r) return;
      [last, place] = [r.view, r.facts.score];
      if (expiry) clearTimeout(expiry);
      expiry = null;
      if (r.view.status === 'ADMITTED' && r.view.admissionExpiresAt) {
        expiry = setTimeout(refresh, r.view.admissionExpiresAt.getTime() - Date.now() + 50);
        expiry.unref();
      }
    };
    const refresh = () => {
      if (reading || stopped) return;
      reading = true;
      this.readTicket(viewer, saleId)
        .then((r) => {
          if (stopped) return;
          remember(r);
          if (r) push(r.view);
        })
        .catch((err) => this.log.warn({ err: String(err), saleId }, 'queue ticket read failed'))
        .finally(() => (reading = false));
    };
    const onTick = (tick: AdmissionTick) => {
      if (reading || stopped) return;
      const due = Date.now() - sentAt >= everyMs;
      const current: QueueTicketView | null = last;
      if (!current) return due ? refresh() : undefined;
      if (current.status === 'PENDING') return tick.status === 'OK' ? refresh() : undefined;
      if (current.status === 'WAITING' && tick.upto >= place) return refresh();
      if (!due || current.status === 'EXPIRED') return;
      const next: QueueTicketView = { ...current, ...stockFlags(tick.saleAvailable, tick.holds) };
      if (current.status === 'WAITING') {
        next.position = place - tick.upto;
        next.estimatedWaitSeconds = Math.ceil(next.position / room.admitPerSecond);
      }
      last = next;
      sentAt = Date.now();
      push(next);
    };
    let followers = this.followers.get(saleId);
    if (!followers) this.followers.set(saleId, (followers = new Set()));
    followers.add(onTick);
    const stop = () => {
      stopped = true;
      if (expiry) clearTimeout(expiry);
      const set = this.followers.get(saleId);
      if (set?.delete(onTick) && set.size === 0) this.followers.delete(saleId);
    };
    try {
      remember(await this.readTicket(viewer, saleId));
    } catch (err) {
      stop();
      throw err;
    }
    return { current: last, stop };
  }

  /** Is this the customer's own valid admission token for this sale? */
  admitted(customerId: string, saleId: string, token: string): Promise<boolean> {
    return this.tokens.verify(token, customerId, saleId);
  }

  /** One scheduler pass: advance admission of every live waiting-room sale, shuffling at the start. */
  async advanceAll(): Promise<void> {
    const saleIds = await this.engine.liveSaleIds();
    await Promise.all(saleIds.filter((id) => !this.finished.has(id) && this.rooms.get(id) !== 'none').map((id) => this.advance(id)));
  }

  private async advance(saleId: string): Promise<void> {
    const room = await this.roomOf(saleId);
    if (room === 'unknown' || room === 'none') return;
    const r = await this.engine.queueAdvance(saleId, room.admitPerSecond);
    if (r.status === 'SHUFFLE') await this.shuffle(saleId);
    else if (r.status === 'FINISHED' || r.status === 'NO_WAITING_ROOM') this.finished.add(saleId);
    for (const follower of this.followers.get(saleId) ?? []) follower(r);
  }

  /**
   * Puts the pre-queue in a uniformly random order (Fisher–Yates over node:crypto), written by one
   * script only if no instance has written one yet. One shuffle at a time per process; across
   * processes the script's flag makes the first write the only one.
   */
  private shuffle(saleId: string): Promise<void> {
    let running = this.shuffles.get(saleId);
    if (!running) {
      running = this.shuffleOnce(saleId).finally(() => this.shuffles.delete(saleId));
      this.shuffles.set(saleId, running);
    }
    return running;
  }

  private async shuffleOnce(saleId: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const pre = await this.engine.queuePrequeue(saleId);
      if (pre.status !== 'OK') return;
      const order = pre.members;
      for (let i = order.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const written = await this.engine.queueShuffle(saleId, order);
      if (written === 'OK') this.log.info({ saleId, tickets: order.length }, 'pre-queue shuffled');
      if (written !== 'STALE') return;
    }
    this.log.warn({ saleId }, 'pre-queue changed under three shuffles; the next pass tries again');
  }

  /** Runs a queue script; a sale missing from Redis is brought live once, and a pending shuffle done first. */
  private async readLive(saleId: string, run: () => Promise<QueueRead>): Promise<QueueRead | Rejected> {
    let read = await run();
    if (!read.ok && read.code === 'NO_SALE') {
      try {
        await this.sales.snapshot(saleId);
      } catch {
        return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2 });
      }
      read = await run();
    }
    // A PENDING ticket read after the start would stay PENDING until a scheduler shuffles; do it now.
    if (read.ok && read.facts.advance === 'SHUFFLE') {
      await this.shuffle(saleId);
      read = await run();
    }
    return read;
  }

  private async view(saleId: string, customerId: string, admitPerSecond: number, f: QueueFacts): Promise<QueueTicketView> {
    const base = { kind: 'QueueTicket' as const, saleId, admissionToken: null, admittedAt: null, admissionExpiresAt: null, ...stockFlags(f.saleAvailable, f.holds) };
    if (f.kind === 'PENDING') return { ...base, status: 'PENDING', position: null, estimatedWaitSeconds: null };
    if (f.score > f.upto) {
      const position = f.score - f.upto;
      return { ...base, status: 'WAITING', position, estimatedWaitSeconds: Math.ceil(position / admitPerSecond) };
    }
    const admittedAt = f.admittedAt ?? f.now;
    const expiresAt = this.tokens.expiresAt(admittedAt);
    const admission = { admittedAt: new Date(admittedAt), admissionExpiresAt: new Date(expiresAt), position: 0 };
    if (f.now >= expiresAt) return { ...base, ...admission, status: 'EXPIRED', estimatedWaitSeconds: null };
    return { ...base, ...admission, status: 'ADMITTED', estimatedWaitSeconds: 0, admissionToken: await this.tokens.sign(customerId, saleId, admittedAt) };
  }

  private async roomOf(saleId: string): Promise<RoomOf> {
    const known = this.rooms.get(saleId);
    if (known) return known;
    const [sale] = await this.sales.salesByIds([saleId]);
    if (!sale) return 'unknown';
    const room = sale.waiting_room && sale.admit_per_second ? { admitPerSecond: sale.admit_per_second } : ('none' as const);
    this.rooms.set(saleId, room);
    return room;
  }
}
