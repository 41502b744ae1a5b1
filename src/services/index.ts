import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Db } from '../db/database.js';
import { DbRouter } from '../db/read-routing.js';
import type { RedisClient } from '../redis.js';
import { AccountService } from './accounts.js';
import { TokenService } from './auth.js';
import { CatalogService } from './catalog.js';
import { CustomerTiers } from './customer-tiers.js';
import { DeliveryVault } from './delivery-vault.js';
import { HoldSweeper } from './hold-sweeper.js';
import { LedgerDrainer } from './ledger.js';
import { LiveService } from './live/live-service.js';
import { OrderStore } from './orders.js';
import { OutcomeMetrics } from './outcome-metrics.js';
import { PurchaseService } from './purchases.js';
import { ReservationReader } from './reservations.js';
import { SaleEvents } from './sale-events.js';
import { SalesService } from './sales.js';
import { StockEngine } from './stock/engine.js';
import { StockRecovery } from './stock-recovery.js';
import { SummaryService } from './summary.js';
import { AdmissionTokens, WaitingRoomService } from './waiting-room.js';
import { WaitlistService } from './waitlist.js';

export interface ServiceDeps {
  /** The primary: writes, the buying path, recovery, the ledger. */
  db: Db;
  /** Where catalogue, sale-list, history and report reads go (a read replica); default the primary only. */
  reads?: DbRouter;
  redis: RedisClient;
  publisher: RedisClient;
  prefix: string;
  jwtSecret: string;
  jwksUrl?: string;
  /** Claims an external identity provider's tokens must carry; unchecked when unset. */
  jwksIssuer?: string;
  jwksAudience?: string;
  jwksAllowAdmin?: boolean;
  /** The longest a bearer token may be valid (exp − iat); tokens without exp are refused. */
  jwtMaxLifetimeSeconds?: number;
  /** How long a confirming hold may wait for its order commit (see StockRecovery). */
  confirmWindowMs?: number;
  registry: Registry;
  log: Logger;
  /** Base64 32-byte keys; the first seals new values. */
  dataKeys: string[];
  /** How long an admission token stays valid once its ticket is admitted. */
  admissionTokenSeconds?: number;
  /** Opens the instance's pub/sub connection for subscriptions (a subscribed connection can do nothing else). */
  createSubscriber: (connectionName: string) => RedisClient;
  /** Minimum gap between two stock events of one sale per instance. */
  liveStockIntervalMs?: number;
  /** How long after its end an idle sale stays in the live set (swept, drained, watched, recovered). */
  saleRetireAfterMs?: number;
  /** How often each instance reloads the customer tiers changed in PostgreSQL. */
  tierRefreshMs?: number;
}

/** Wires the domain services; the only place that knows how they depend on each other. */
export function createServices(d: ServiceDeps) {
  const engine = new StockEngine(d.redis, d.prefix, d.confirmWindowMs);
  const reads = d.reads ?? DbRouter.primaryOnly(d.db);
  const events = new SaleEvents(d.publisher, d.prefix, d.log.child({ source: 'events' }));
  const catalog = new CatalogService(d.db, reads);
  const retireAfterMs = d.saleRetireAfterMs ?? 2 * 3_600_000;
  const ledger = new LedgerDrainer(d.db, engine, (saleId) => recovery.requestRepair(saleId, 'outbox forked from the ledger'));
  const recovery = new StockRecovery(d.db, d.redis, engine, ledger, events, d.registry, d.log.child({ source: 'recovery' }), retireAfterMs);
  const sales = new SalesService(d.db, engine, events, recovery, reads);
  const orders = new OrderStore(d.db, { reads });
  const reservations = new ReservationReader(d.db, engine, reads);
  const metrics = new OutcomeMetrics(d.registry);
  const delivery = new DeliveryVault(d.dataKeys);
  const tokens = new TokenService(d.jwtSecret, d.jwksUrl, { issuer: d.jwksIssuer, audience: d.jwksAudience, allowAdmin: d.jwksAllowAdmin }, d.jwtMaxLifetimeSeconds);
  const waitingRoom = new WaitingRoomService(engine, sales, new AdmissionTokens(d.jwtSecret, d.admissionTokenSeconds ?? 300), d.log.child({ source: 'waiting-room' }));
  const purchases = new PurchaseService(
    engine, sales, orders, reservations, events, metrics, d.log.child({ source: 'purchases' }), delivery.sealer,
    (customerId, saleId, token) => waitingRoom.admitted(customerId, saleId, token),
  );
  const waitlist = new WaitlistService(engine, sales, events, async (viewer, saleId) => (await waitingRoom.ticket(viewer, saleId))?.status === 'ADMITTED');
  return {
    reads,
    engine,
    events,
    tokens,
    accounts: new AccountService(d.db, tokens),
    tiers: new CustomerTiers(d.db, d.log.child({ source: 'customer-tiers' }), d.tierRefreshMs),
    catalog,
    delivery,
    sales,
    orders,
    reservations,
    purchases,
    waitingRoom,
    waitlist,
    recovery,
    summary: new SummaryService(d.db, engine, waitlist, reads),
    ledger,
    sweeper: new HoldSweeper(engine, orders, events, d.log.child({ source: 'sweeper' }), retireAfterMs),
    live: new LiveService({
      engine, sales, reservations, orders, waitlist, waitingRoom, events, createSubscriber: d.createSubscriber, redis: d.redis, prefix: d.prefix,
      registry: d.registry, log: d.log.child({ source: 'live' }), stockIntervalMs: d.liveStockIntervalMs,
    }),
  };
}

export type Services = ReturnType<typeof createServices>;
