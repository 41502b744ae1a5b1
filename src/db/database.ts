import { Kysely, Migrator, PostgresDialect, type Migration, type MigrationProvider } from 'kysely';
import pg from 'pg';
import type { Database } from './types.js';
import * as m0001 from './migrations/0001_initial.js';
import * as m0002 from './migrations/0002_users.js';
import * as m0003 from './migrations/0003_stock_adjustments.js';
import * as m0004 from './migrations/0004_sold_within_stock.js';
import * as m0005 from './migrations/0005_customer_tiers.js';
import * as m0006 from './migrations/0006_live_versions.js';
import * as m0007 from './migrations/0007_rebuild_markers.js';
import * as m0008 from './migrations/0008_product_search.js';

// int8 (bigint) columns come back as strings by default; totals fit in a JS number until 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

export type Db = Kysely<Database>;

/** Migrations are imported statically so they work the same under tsx, vitest and a bundle. */
const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_users': m0002,
  '0003_stock_adjustments': m0003,
  '0004_sold_within_stock': m0004,
  '0005_customer_tiers': m0005,
  '0006_live_versions': m0006,
  '0007_rebuild_markers': m0007,
  '0008_product_search': m0008,
};

class StaticMigrationProvider implements MigrationProvider {
  async getMigrations() {
    return migrations;
  }
}

export function createDb(databaseUrl: string, poolSize = 20): { db: Db; pool: pg.Pool } {
  // A transaction left open by a client that vanished (a partition, a proxy that stalls) would keep
  // its row locks for ever, and with them the repair fence that waits for order inserts: the
  // server ends such a session after 10 s idle in a transaction (ours never idle that long).
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSize, connectionTimeoutMillis: 2000, idle_in_transaction_session_timeout: 10_000 });
  // A connection reset must never crash the process: idle clients report through the pool, and a
  // checked-out client emits 'error' itself (pg-pool drops its listener on checkout). The query in
  // flight still rejects, and the caller answers TEMPORARILY_UNAVAILABLE.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), pool };
}

/** Creates the database named in the URL when it is missing, by way of the `postgres` database. */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) return;
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount === 0) {
      try {
        await client.query(`create database "${name.replace(/"/g, '""')}"`);
      } catch (err) {
        // Another instance created it between our check and our create.
        if ((err as { code?: string }).code !== '42P04') throw err;
      }
    }
  } finally {
    await client.end();
  }
}

export async function migrateToLatest(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${String(error)}`);
  }
}
