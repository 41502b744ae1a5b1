import type { Viewer } from './auth.js';
import { invalidInput, rejected, type ErrorCode, type Rejected } from './errors.js';
import { saleIdOf } from './ids.js';
import type { SaleEvents } from './sale-events.js';
import type { SalesService } from './sales.js';
import type { StockEngine, WaitlistRecord } from './stock/engine.js';
import { isWellFormedId } from './validation.js';

export interface WaitlistEntryView extends WaitlistRecord {
  readonly kind: 'WaitlistEntry';
  id: string;
  saleId: string;
}

export type WaitlistResult = WaitlistEntryView | Rejected;

/** Is the customer admitted by the sale's waiting room right now (an ADMITTED, unexpired ticket)? */
export type AdmittedNow = (viewer: Viewer, saleId: string) => Promise<boolean>;

/** How long an ended entry (FULFILLED, LAPSED, LEFT) stays in its customer's `me.waitlist`. */
const SHOW_ENDED_MS = 3_600_000;

/**
 * Waitlists of sold-out items. Who gets a freed unit is decided inside the stock scripts (the
 * head of the waitlist, in join order, before anyone else); this service joins, leaves and reads.
 */
export class WaitlistService {
  constructor(
    private readonly engine: StockEngine,
    private readonly sales: SalesService,
    private readonly events: SaleEvents,
    private readonly admittedNow: AdmittedNow = async () => false,
  ) {}

  async join(viewer: Viewer, saleItemId: string, quantity: number): Promise<WaitlistResult> {
    if (!isWellFormedId(saleItemId)) return invalidInput('saleItemId', 'saleItemId must be an id of 1 to 64 characters.');
    if (!Number.isInteger(quantity) || quantity < 1) return invalidInput('quantity', 'quantity must be a whole number of at least 1.');
    const saleId = saleIdOf(saleItemId);
    if (!saleId) return rejected('NOT_FOUND', { field: 'saleItemId' });
    // The script asks only in a waiting-room sale; the ticket is read here because joining takes no token.
    const admitted = await this.admittedNow(viewer, saleId).catch(() => false);
    let r = await this.engine.joinWaitlist(saleId, saleItemId, viewer.id, quantity, admitted);
    if (!r.ok && r.code === 'NO_SALE' && (await this.sales.itemFactsOf(saleItemId))) {
      await this.sales.snapshot(saleId).catch(() => undefined);
      r = await this.engine.joinWaitlist(saleId, saleItemId, viewer.id, quantity, admitted);
    }
    void this.events.holdsEnded(saleId, r.changed);
    if (!r.ok) return this.toRejected(r.code, r.available);
    void this.events.waitlistChanged(saleId, saleItemId, viewer.id);
    return (await this.entry(saleId, saleItemId, viewer.id)) ?? rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 1 });
  }

  async leave(viewer: Viewer, saleItemId: string): Promise<WaitlistResult> {
    if (!isWellFormedId(saleItemId)) return invalidInput('saleItemId', 'saleItemId must be an id of 1 to 64 characters.');
    const saleId = saleIdOf(saleItemId);
    if (!saleId) return rejected('NOT_ON_WAITLIST');
    const r = await this.engine.leaveWaitlist(saleId, saleItemId, viewer.id);
    void this.events.holdsEnded(saleId, r.changed);
    if (!r.ok) return this.toRejected(r.code, null);
    void this.events.waitlistChanged(saleId, saleItemId, viewer.id);
    void this.events.waitlistChanged(saleId, saleItemId, null);
    void this.events.stockChanged(saleId);
    return (await this.entry(saleId, saleItemId, viewer.id)) ?? rejected('NOT_ON_WAITLIST');
  }

  async entry(saleId: string, saleItemId: string, customerId: string): Promise<WaitlistEntryView | null> {
    const { entries } = await this.engine.readWaitlist(saleId, customerId, [saleItemId]);
    return entries[0] ? view(saleId, entries[0]) : null;
  }

  /** The customer's WAITING and OFFERED entries of a sale (or of every live sale), and those that ended in the last hour. */
  async entriesOf(customerId: string, saleId: string | null): Promise<WaitlistEntryView[]> {
    const saleIds = saleId ? [saleId] : await this.engine.liveSaleIds();
    const items = await this.sales.itemsBySaleIds(saleIds);
    const out: WaitlistEntryView[] = [];
    for (let i = 0; i < saleIds.length; i++) {
      const { entries } = await this.engine.readWaitlist(saleIds[i], customerId, items[i].map((it) => it.id));
      const since = Date.now() - SHOW_ENDED_MS;
      for (const e of entries) if (e.status === 'WAITING' || e.status === 'OFFERED' || (e.endedAt !== null && e.endedAt >= since)) out.push(view(saleIds[i], e));
    }
    return out.sort((a, b) => a.joinedAt - b.joinedAt);
  }

  /** How many customers wait on the sale's items right now. */
  async size(saleId: string): Promise<number> {
    const [items] = await this.sales.itemsBySaleIds([saleId]);
    const { sizes } = await this.engine.readWaitlist(saleId, '', items.map((i) => i.id));
    let n = 0;
    for (const s of sizes.values()) n += s;
    return n;
  }

  private toRejected(code: string, available: number | null): Rejected {
    switch (code) {
      case 'NO_SALE':
        return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds: 2 });
      case 'INVALID_QUANTITY':
        return invalidInput('quantity', 'quantity is more than one customer may buy of this item.');
      case 'NOT_FOUND':
        return rejected('NOT_FOUND', { field: 'saleItemId' });
      case 'WAITLIST_CLOSED':
        return rejected('WAITLIST_CLOSED', { available, message: `${available} available now: buy instead of joining the waitlist.` });
      case 'ALREADY_ON_WAITLIST':
        return rejected('ALREADY_ON_WAITLIST', { message: 'You are already on this waitlist for another quantity; leave it first to change it.', waitlistOpen: false });
      case 'NOT_ADMITTED':
        return rejected('NOT_ADMITTED', { message: 'This sale has a waiting room: join its queue and wait to be admitted before joining the waitlist.' });
      case 'LIMIT_EXCEEDED':
        return rejected('LIMIT_EXCEEDED', { message: 'With what you already hold or bought, that would exceed the per-customer limit.' });
      default:
        return rejected(code as ErrorCode, { available });
    }
  }
}

function view(saleId: string, e: WaitlistRecord): WaitlistEntryView {
  return { kind: 'WaitlistEntry', id: `${saleId}.w${e.sequence}`, saleId, ...e };
}
