/**
 * The chaos test's model: what the clients know, kept small. It does not predict the stock engine's
 * answers (faults make them depend on timing); it records what every answer allows the test to
 * expect afterwards, so the checker can hold the real system to it.
 */

/** The run's shape, generated per run: small, so sell-outs, limits and waitlists happen. */
export interface Universe {
  stocks: number[];
  customers: number;
  perUserLimit: number;
  /** Whether the Redis failover commands may run (they cost a resync each). */
  replicaFaults: boolean;
}

export type SaleState = 'OPEN' | 'PAUSED' | 'CANCELLED';

export interface ItemModel {
  index: number;
  id: string;
  init: number;
  /** Possible current stock (initial + adjustments); more than one value after an adjustment whose outcome is unknown. */
  stock: Set<number>;
  /** Every value the stock may have had in this run (a rolled-back Redis may show an older one). */
  ever: Set<number>;
  /** Successful joins in the order the clients saw them answered: the waitlist's join order. */
  joinLog: { cust: number; joinedAt: string; entryId: string }[];
}

/** A PurchaseSuccess some client saw. */
export interface SeenSuccess {
  orderId: string;
  cust: number;
  item: number;
  quantity: number;
  key: string | null;
  via: 'purchase' | 'confirm';
  step: number;
}

/** A purchase or confirmation held between its commit and its answer (see StallCommit). */
export interface InflightModel {
  instance: number;
  cust: number;
  via: 'purchase' | 'confirm';
  item: number | null;
  quantity: number;
  key: string | null;
  reservationId: string | null;
}

export interface Model {
  u: Universe;
  items: ItemModel[];
  /** The sale's state as the admin last set it (read back from PostgreSQL after each admin change). */
  state: SaleState;
  /** When the cancelSale that cancelled the sale was sent (ms, this machine's clock). */
  cancelSentAt: number | null;
  /** The purchase/confirm in flight when the sale was cancelled: it may still finish. */
  inflightAtCancel: InflightModel | null;
  inflight: InflightModel | null;
  /** Commands left until PostgreSQL comes back (0: it is up). */
  pgCutLeft: number;
  snapshots: number;
  replica: 'attached' | 'detached';
  /** A rollback or failover happened: Redis may show any earlier state of the sale. */
  rolledBack: boolean;
  successes: SeenSuccess[];
  /** Purchase keys that succeeded: `${cust}|${key}` → the order they must replay. */
  purchaseKeys: Map<string, SeenSuccess>;
  /** Reservation ids each (customer, key) was answered with. */
  reserveKeys: Map<string, Set<string>>;
  /** Orders the model cancelled (CancelOrderSuccess), and those whose cancel had no clear answer. */
  cancelled: Set<string>;
  maybeCancelled: Set<string>;
  /** Reservation ids each customer was answered with (to confirm or release later). */
  reservations: string[][];
  step: number;
  /** Counters for the run summary. */
  stats: Map<string, number>;
}

export function newModel(u: Universe, itemIds: string[]): Model {
  return {
    u,
    items: itemIds.map((id, index) => ({ index, id, init: u.stocks[index], stock: new Set([u.stocks[index]]), ever: new Set([u.stocks[index]]), joinLog: [] })),
    state: 'OPEN',
    cancelSentAt: null,
    inflightAtCancel: null,
    inflight: null,
    pgCutLeft: 0,
    snapshots: 0,
    replica: 'attached',
    rolledBack: false,
    successes: [],
    purchaseKeys: new Map(),
    reserveKeys: new Map(),
    cancelled: new Set(),
    maybeCancelled: new Set(),
    reservations: Array.from({ length: u.customers }, () => []),
    step: 0,
    stats: new Map(),
  };
}

export function count(m: Model, what: string, n = 1): void {
  m.stats.set(what, (m.stats.get(what) ?? 0) + n);
}

/** An adjustment answered: certain (every possible stock moves) or unknown (it may or may not have happened). */
export function adjustStock(item: ItemModel, delta: number, certain: boolean): void {
  const next = new Set<number>();
  for (const s of item.stock) {
    next.add(s + delta);
    if (!certain) next.add(s);
  }
  item.stock = next;
  for (const s of next) item.ever.add(s);
}

export const maxOf = (s: Set<number>) => Math.max(...s);
