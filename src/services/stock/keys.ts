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
  /** Sales whose live state the sweepers and drainers visit; outside any sale's slot. */
  liveSales(): string {
    return `${this.prefix}sales:live`;
  }
  /** Where a reservation id or sale item id leads to its sale, for lookups by id alone. */
  lock(name: string): string {
    return `${this.prefix}lock:${name}`;
  }
}
