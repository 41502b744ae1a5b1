import { sql, type Kysely } from 'kysely';

/**
 * The highest live version of a sale whose stock events the ledger has copied. A live state whose
 * version is below it went back in time (a failover to a replica that missed writes, a restore),
 * even when the lost changes were only holds, which no order records: the recovery check repairs it.
 * A table of its own, so the drainer never touches the `sales` row that order inserts lock.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table live_versions (sale_id text primary key references sales(id), drained_version bigint not null)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table live_versions`.execute(db);
}
