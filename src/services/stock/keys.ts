/**
 * Every key of one sale carries the hash tag {sale:<id>}, so a sale lives in one Redis Cluster
 * slot and its Lua scripts run unchanged on a cluster.
 */
export class SaleKeys {
  constructor(private readonly prefix: string) {}

  base(saleId: string): string {
    return `${this.prefix}{sale:${saleId}}:`;
  }
  meta(saleId: string): string {
    return `${this.base(saleId)}meta`;
  }
  reservation(saleId: string, reservationId: string): string {
    return `${this.base(saleId)}res:${reservationId}`;
  }
  outbox(saleId: string): string {
    return `${this.base(saleId)}outbox`;
  }
  counters(saleId: string): string {
    return `${this.base(saleId)}counters`;
  }
  usage(saleId: string): string {
    return `${this.base(saleId)}usage`;
  }
  /**
   * WAITING entries of an item's waitlist (sorted set), and the waiting room's state hash and
   * pre-queue set (see waitlist-join.lua, queue-prelude.lua). The scripts derive the same names
   * from KEYS[1]; these builders are for plain reads such as the metrics.
   */
  waitlistQueue(saleId: string, saleItemId: string): string {
    return `${this.base(saleId)}wlq:${saleItemId}`;
  }
  queueState(saleId: string): string {
    return `${this.base(saleId)}qm`;
  }
  preQueue(saleId: string): string {
    return `${this.base(saleId)}qpre`;
  }
  /** Sales whose live state the sweepers and drainers visit; outside any sale's slot. */
  liveSales(): string {
    return `${this.prefix}sales:live`;
  }
  /** Where a reservation id or sale item id leads to its sale, for lookups by id alone. */
  lock(name: string): string {
    return `${this.prefix}lock:${name}`;
  }
}
