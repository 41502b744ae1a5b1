import { sql, type Kysely } from 'kysely';

/**
 * PostgreSQL has the last word on what is sold. Redis decides who may try; these triggers make the
 * order insert itself refuse what Redis should have refused, whatever state Redis is in:
 *
 * - `sale_items.sold` counts CONFIRMED units and `stock` is initial stock plus adjustments; the
 *   CHECK `sale_items_sold_within_stock` keeps sold within stock (and `adjustStock` above sold).
 * - `customer_units` counts each customer's CONFIRMED units of an item against the sale's
 *   per-customer limit (`customer_units_within_limit`).
 * - No CONFIRMED order enters a CANCELLED sale (`orders_sale_not_cancelled`), and none from a
 *   live state the sale has since been rebuilt away from (`orders_live_epoch_current`): a rebuild
 *   raises `sales.live_epoch` first, and every order carries the epoch its hold was made in.
 *
 * The insert trigger takes a share lock on the sale rows and then row locks on the item rows in id
 * order, so concurrent batches from many instances serialise per item without deadlocking (the item
 * locks are FOR NO KEY UPDATE: the inserts' foreign-key checks hold FOR KEY SHARE on the same rows,
 * and FOR UPDATE would deadlock against them), and a
 * cancel or an epoch raise (an UPDATE of the sale row) orders itself against every insert: an
 * insert either commits before it or sees it. Cancelling an order gives its units back.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table sales add column live_epoch integer not null default 1`.execute(db);
  await sql`alter table sale_items add column stock integer, add column sold integer not null default 0,
    add column max_live_version bigint not null default 0`.execute(db);
  await sql`update sale_items i set
      stock = i.initial_stock + coalesce((select sum(a.delta) from stock_adjustments a where a.sale_item_id = i.id), 0),
      sold = coalesce((select sum(o.quantity) from orders o where o.sale_item_id = i.id and o.status = 'CONFIRMED'), 0)`.execute(db);
  await sql`alter table sale_items alter column stock set not null,
    add constraint sale_items_sold_within_stock check (sold >= 0 and sold <= stock)`.execute(db);
  // New items start with their initial stock, whoever inserts them.
  await sql`create function sale_items_default_stock() returns trigger language plpgsql as $$
    begin
      if new.stock is null then new.stock := new.initial_stock; end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger sale_items_default_stock before insert on sale_items
    for each row execute function sale_items_default_stock()`.execute(db);

  await sql`create table customer_units (
      sale_item_id text not null references sale_items(id),
      customer_id text not null,
      units integer not null,
      cap integer not null,
      primary key (sale_item_id, customer_id),
      constraint customer_units_within_limit check (units >= 0 and units <= cap))`.execute(db);
  await sql`insert into customer_units (sale_item_id, customer_id, units, cap)
    select o.sale_item_id, o.customer_id, sum(o.quantity), greatest(max(s.per_user_limit), sum(o.quantity))
    from orders o join sales s on s.id = o.sale_id where o.status = 'CONFIRMED' group by 1, 2`.execute(db);

  await sql`alter table orders add column live_epoch integer, add column live_version bigint`.execute(db);

  await sql`create function orders_count_inserted() returns trigger language plpgsql as $$
    begin
      perform 1 from sales where id in (select sale_id from new_orders) order by id for share;
      if exists (select 1 from new_orders n join sales s on s.id = n.sale_id where n.status = 'CONFIRMED' and s.state = 'CANCELLED') then
        raise exception 'order refused: the sale is cancelled' using errcode = 'check_violation', constraint = 'orders_sale_not_cancelled';
      end if;
      if exists (select 1 from new_orders n join sales s on s.id = n.sale_id where n.live_epoch is not null and n.live_epoch <> s.live_epoch) then
        raise exception 'order refused: its hold belongs to a live state that was rebuilt' using errcode = 'check_violation', constraint = 'orders_live_epoch_current';
      end if;
      perform 1 from sale_items where id in (select sale_item_id from new_orders where status = 'CONFIRMED') order by id for no key update;
      update sale_items i set sold = i.sold + d.units, max_live_version = greatest(i.max_live_version, d.version)
        from (select sale_item_id, sum(quantity) as units, coalesce(max(live_version), 0) as version
              from new_orders where status = 'CONFIRMED' group by sale_item_id) d
        where i.id = d.sale_item_id;
      insert into customer_units as c (sale_item_id, customer_id, units, cap)
        select n.sale_item_id, n.customer_id, sum(n.quantity), max(s.per_user_limit)
        from new_orders n join sales s on s.id = n.sale_id where n.status = 'CONFIRMED'
        group by n.sale_item_id, n.customer_id order by 1, 2
        on conflict (sale_item_id, customer_id) do update set units = c.units + excluded.units;
      return null;
    end $$`.execute(db);
  await sql`create trigger orders_count_inserted after insert on orders
    referencing new table as new_orders for each statement execute function orders_count_inserted()`.execute(db);

  await sql`create function orders_count_cancelled() returns trigger language plpgsql as $$
    begin
      perform 1 from sale_items where id in (
        select n.sale_item_id from new_orders n join old_orders o on o.id = n.id where o.status = 'CONFIRMED' and n.status <> 'CONFIRMED'
      ) order by id for no key update;
      update sale_items i set sold = i.sold - d.units
        from (select n.sale_item_id, sum(n.quantity) as units from new_orders n join old_orders o on o.id = n.id
              where o.status = 'CONFIRMED' and n.status <> 'CONFIRMED' group by n.sale_item_id) d
        where i.id = d.sale_item_id;
      update customer_units c set units = c.units - d.units
        from (select n.sale_item_id, n.customer_id, sum(n.quantity) as units from new_orders n join old_orders o on o.id = n.id
              where o.status = 'CONFIRMED' and n.status <> 'CONFIRMED' group by 1, 2) d
        where c.sale_item_id = d.sale_item_id and c.customer_id = d.customer_id;
      return null;
    end $$`.execute(db);
  await sql`create trigger orders_count_cancelled after update on orders
    referencing old table as old_orders new table as new_orders for each statement execute function orders_count_cancelled()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger orders_count_cancelled on orders`.execute(db);
  await sql`drop trigger orders_count_inserted on orders`.execute(db);
  await sql`drop function orders_count_cancelled(), orders_count_inserted()`.execute(db);
  await sql`alter table orders drop column live_epoch, drop column live_version`.execute(db);
  await sql`drop table customer_units`.execute(db);
  await sql`drop trigger sale_items_default_stock on sale_items`.execute(db);
  await sql`drop function sale_items_default_stock()`.execute(db);
  await sql`alter table sale_items drop constraint sale_items_sold_within_stock, drop column stock, drop column sold, drop column max_live_version`.execute(db);
  await sql`alter table sales drop column live_epoch`.execute(db);
}
