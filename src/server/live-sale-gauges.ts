import { Gauge, type Registry } from 'prom-client';
import type { RedisClient } from '../redis.js';
import type { StockEngine } from '../services/stock/engine.js';

/** Sales stay on the gauges this long after their end, so the last figures reach a dashboard. */
const SHOWN_AFTER_END_MS = 3_600_000;

interface SaleLevels {
  saleId: string;
  items: { saleItemId: string; available: number; reserved: number; sold: number; waitlist: number }[];
  /** Tickets not yet admitted (pre-queue included); null for a sale nobody queued for. */
  queue: number | null;
}

/**
 * Gauges of live state, read from Redis when Prometheus scrapes and never touched on the hot path:
 * available, held and sold units per sale item (one snapshot script per sale, so the three
 * figures agree), waitlist length per item and waiting-room queue length per sale.
 *
 * One scrape reads each sale once: the gauges' collect callbacks run together and share the read
 * in flight. Each scrape resets the gauges, so a sale that leaves Redis leaves the output too.
 */
export class LiveSaleGauges {
  /** Sales ended long ago: their figures no longer change, so a scrape stops reading them. */
  private readonly finished = new Set<string>();
  private reading: Promise<SaleLevels[]> | null = null;

  constructor(
    private readonly engine: StockEngine,
    private readonly redis: RedisClient,
    registry: Registry,
  ) {
    const itemLabels = ['sale_id', 'sale_item_id'] as const;
    const perItem = (name: string, help: string, pick: (item: SaleLevels['items'][number]) => number) => {
      const read = () => this.read();
      new Gauge({
        name, help, labelNames: itemLabels, registers: [registry],
        async collect() {
          this.reset();
          for (const sale of await read()) for (const item of sale.items) this.set({ sale_id: sale.saleId, sale_item_id: item.saleItemId }, pick(item));
        },
      });
    };
    perItem('flashsale_stock_available_units', 'units available to buy now, per sale item (live, from Redis)', (i) => i.available);
    perItem('flashsale_stock_reserved_units', 'units in HELD or confirming reservations, per sale item', (i) => i.reserved);
    perItem('flashsale_stock_sold_units', 'units in confirmed orders, per sale item (live, from Redis)', (i) => i.sold);
    perItem('flashsale_waitlist_waiting', 'customers WAITING on the waitlist, per sale item', (i) => i.waitlist);
    const read = () => this.read();
    new Gauge({
      name: 'flashsale_queue_waiting',
      help: 'waiting-room tickets not yet admitted (PENDING pre-queue and WAITING), per sale with a waiting room in use',
      labelNames: ['sale_id'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const sale of await read()) if (sale.queue !== null) this.set({ sale_id: sale.saleId }, sale.queue);
      },
    });
  }

  private read(): Promise<SaleLevels[]> {
    if (!this.reading) {
      const reading = this.readAll().finally(() => {
        if (this.reading === reading) this.reading = null;
      });
      this.reading = reading;
    }
    return this.reading;
  }

  private async readAll(): Promise<SaleLevels[]> {
    const ids = (await this.engine.liveSaleIds()).filter((id) => !this.finished.has(id));
    const sales = await Promise.all(ids.map((id) => this.readSale(id)));
    return sales.filter((s) => s !== null);
  }

  private async readSale(saleId: string): Promise<SaleLevels | null> {
    const snap = await this.engine.snapshot(saleId);
    if (!snap) return null;
    if (snap.now > snap.endsAt + SHOWN_AFTER_END_MS) {
      this.finished.add(saleId);
      return null;
    }
    const keys = this.engine.keys;
    const ids = [...snap.items.keys()].sort();
    const [waitlists, queueState, preQueue] = await Promise.all([
      Promise.all(ids.map((id) => this.redis.zcard(keys.waitlistQueue(saleId, id)))),
      this.redis.hmget(keys.queueState(saleId), 'seq', 'upto'),
      this.redis.scard(keys.preQueue(saleId)),
    ]);
    const [seq, upto] = queueState;
    // Before the start only the pre-queue exists. From the start, seq counts every ticket (the
    // pre-queue's included, shuffled or not) and upto only rises, so seq - upto still wait.
    const queue = seq !== null ? Math.max(0, Number(seq) - Number(upto ?? 0)) : preQueue > 0 ? preQueue : null;
    return {
      saleId,
      items: ids.map((id, i) => {
        const level = snap.items.get(id)!;
        return { saleItemId: id, available: level.available, reserved: level.reserved, sold: level.sold, waitlist: waitlists[i] };
      }),
      queue,
    };
  }
}
