import { sql, type Kysely } from 'kysely';

/**
 * The outbox id of a sale's latest rebuild. Outbox events before it belong to a replaced live state:
 * the rebuild copies those its Redis still holds and writes the ledger's correction under the same
 * row lock, so a drainer that read older events (from a Redis that has since failed over) never
 * copies them after the correction counted without them.
 * `stream_position` orders outbox ids ("ms-seq") numerically.
 *
 * Each outbox event names the one before it (`prev_stream_id`), and no two events of a sale may
 * follow the same one: the ledger is one history. Two Redis copies that went different ways (a
 * failover to a replica that missed writes, which then wrote its own) are caught when the second
 * branch is copied, even when the live version caught up meanwhile; the drainer then asks for a
 * rebuild instead of counting both branches.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table live_versions add column rebuilt_marker text`.execute(db);
  await sql`alter table stock_events add column prev_stream_id text`.execute(db);
  await sql`create unique index stock_events_chain on stock_events (sale_id, prev_stream_id) where prev_stream_id is not null`.execute(db);
  await sql`
    create function stream_position(id text) returns bigint[] language sql immutable strict
    as $$ select array[split_part(id, '-', 1)::bigint, split_part(id, '-', 2)::bigint] $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function stream_position(text)`.execute(db);
  await sql`drop index stock_events_chain`.execute(db);
  await sql`alter table stock_events drop column prev_stream_id`.execute(db);
  await sql`alter table live_versions drop column rebuilt_marker`.execute(db);
}
