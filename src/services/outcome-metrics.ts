import { Counter, Registry } from 'prom-client';

/** Purchase and reserve outcomes by ErrorCode ('OK' for successes), for /metrics. */
export class OutcomeMetrics {
  private readonly counter: Counter<'mutation' | 'outcome'>;
  private readonly refusals: Counter<'refusal'>;

  constructor(registry: Registry) {
    this.counter = new Counter({
      name: 'flashsale_buy_outcomes_total',
      help: 'purchase and reserve outcomes, by mutation and ErrorCode (OK for successes)',
      labelNames: ['mutation', 'outcome'],
      registers: [registry],
    });
    this.refusals = new Counter({
      name: 'flashsale_order_refusals_total',
      help: 'orders Redis allowed and PostgreSQL refused (OVER_STOCK, OVER_LIMIT, SALE_CANCELLED, STALE_EPOCH); each buyer was compensated',
      labelNames: ['refusal'],
      registers: [registry],
    });
  }

  refused(refusal: string): void {
    this.refusals.inc({ refusal });
  }

  outcome(mutation: 'purchase' | 'reserve', outcome: string): void {
    this.counter.inc({ mutation, outcome });
  }
}
