import type { KyselyPlugin } from 'kysely';
import type { Plugin } from 'graphql-yoga';
import { Gauge, type Registry } from 'prom-client';
import type { RedisClient } from '../redis.js';
import type { Services } from '../services/index.js';
import { PostgresTiming, timeEngineCalls } from './dependency-timing.js';
import { graphqlMetrics } from './graphql-metrics.js';
import { LiveSaleGauges } from './live-sale-gauges.js';

/**
 * Everything /metrics shows beyond the process defaults, in one place:
 * - GraphQL requests per operation: counts, latency histograms, errors (Yoga's Prometheus plugin);
 * - buy outcomes by ErrorCode (`flashsale_buy_outcomes_total`, counted by the purchase service),
 *   reconciliation drift (`flashsale_stock_drift_units`, set by the reconciler) and open
 *   subscriptions (`flashsale_subscriptions_open`, kept by the live service);
 * - live stock, holds, waitlists and queues, read from Redis at scrape time (LiveSaleGauges);
 * - Redis (stock engine) and PostgreSQL latency histograms;
 * - open WebSocket connections.
 */
export interface Metrics {
  /** Yoga plugin: request counts and latency per operation. */
  graphql: Plugin;
  /** Kysely plugin: query latency. Install it on the instance the services use (`db.withPlugin`). */
  postgres: KyselyPlugin;
  /** Starts observing the running services; call once they exist. */
  observe(o: { services: Services; redis: RedisClient; websocketConnections: () => number }): void;
}

export function createMetrics(registry: Registry): Metrics {
  return {
    graphql: graphqlMetrics(registry),
    postgres: new PostgresTiming(registry),
    observe({ services, redis, websocketConnections }) {
      timeEngineCalls(services.engine, registry);
      new LiveSaleGauges(services.engine, redis, registry);
      new Gauge({
        name: 'flashsale_websocket_connections',
        help: 'open graphql-ws WebSocket connections on this instance',
        registers: [registry],
        collect() {
          this.set(websocketConnections());
        },
      });
    },
  };
}
