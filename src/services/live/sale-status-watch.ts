import type { Logger } from 'pino';
import type { RedisClient } from '../../redis.js';
import type { SaleEvents } from '../sale-events.js';
import { deriveStatus, type SaleStatus } from '../sale-status.js';
import type { StockEngine } from '../stock/engine.js';

/** Claims outlive any transition's fan-out by far; they only stop a second publish. */
const CLAIM_TTL_MS = 6 * 3_600_000;
const FINAL: ReadonlySet<SaleStatus> = new Set(['ENDED', 'CANCELLED']);

/**
 * Runs on every instance and turns status transitions into events, the clock's ones included
 * (SCHEDULED → ACTIVE at startsAt, → ENDED at endsAt), which no request would otherwise announce.
 *
 * A transition is named by its status and the sale's stock version: the version moves with every
 * stock or admin change and the clock only moves forward, so (status, version) never recurs for a
 * sale. Whichever instance first claims that name with SET NX publishes it; the others see the
 * claim and stay quiet. A duplicate would be harmless anyway: subscribers only emit a status that
 * differs from the last one they sent.
 */
export class SaleStatusWatch {
  private readonly seen = new Map<string, SaleStatus>();

  constructor(
    private readonly engine: StockEngine,
    private readonly redis: RedisClient,
    private readonly events: SaleEvents,
    private readonly log: Logger,
  ) {}

  async tick(): Promise<void> {
    const saleIds = await this.engine.liveSaleIds();
    const checks = await Promise.allSettled(saleIds.filter((id) => !FINAL.has(this.seen.get(id) as SaleStatus)).map((id) => this.check(id)));
    const failed = checks.find((c): c is PromiseRejectedResult => c.status === 'rejected');
    if (failed) this.log.warn({ err: String(failed.reason) }, 'status check failed; retried next tick');
  }

  private async check(saleId: string): Promise<void> {
    const snap = await this.engine.snapshot(saleId);
    if (!snap) return;
    const status = deriveStatus(snap);
    if (this.seen.get(saleId) === status) return;
    const claimed = await this.redis.set(`${this.engine.keys.base(saleId)}transition:${status}:${snap.version}`, String(snap.now), 'PX', CLAIM_TTL_MS, 'NX');
    this.seen.set(saleId, status);
    if (claimed !== 'OK') return;
    this.log.debug({ saleId, status, version: snap.version }, 'sale status transition');
    await this.events.saleChanged(saleId);
  }
}
