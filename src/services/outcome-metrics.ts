import { Counter, Registry } from 'prom-client';

/** Purchase and reserve outcomes by ErrorCode ('OK' for successes), for /metrics. */
export class OutcomeMetrics {
  private readonly counter: Counter<'mutation' | 'outcome'>;

  constructor(registry: Registry) {
    this.counter = new Counter({
      name: 'flashsale_buy_outcomes_total',
      help: 'purchase and reserve outcomes, by mutation and ErrorCode (OK for successes)',
      labelNames: ['mutation', 'outcome'],
      registers: [registry],
    });
  }

  outcome(mutation: 'purchase' | 'reserve', outcome: string): void {
    this.counter.inc({ mutation, outcome });
  }
}
