import fc from 'fast-check';
import { AdjustStock, Burst, CancelOrder, Cmd, Confirm, JoinWaitlist, LeaveWaitlist, Purchase, Release, Reserve, SaleAdmin, Wait } from './commands.js';
import { CutPg, DeleteKeys, Failover, ReplicaDetach, ResolveStall, Rollback, Snapshot, StallCommit } from './faults.js';
import type { Universe } from './model.js';

/** A small world per run: 1–2 items of 2–4 units, 3–4 customers, 2 per customer — sell-outs, limits and waitlists happen. */
export const universeArb: fc.Arbitrary<Universe> = fc
  .record({
    items: fc.integer({ min: 1, max: 2 }),
    stocks: fc.tuple(fc.integer({ min: 2, max: 4 }), fc.integer({ min: 2, max: 4 })),
    customers: fc.integer({ min: 3, max: 4 }),
    replicaFaults: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
  })
  .map((u) => ({ stocks: u.stocks.slice(0, u.items), customers: u.customers, perUserLimit: 2, replicaFaults: u.replicaFaults }));

const customer = fc.nat({ max: 3 });
const item = fc.nat({ max: 1 });
const instance = fc.nat({ max: 1 });
const key = fc.nat({ max: 3 });
const pick = fc.nat({ max: 3 });
const quantity = fc.oneof({ arbitrary: fc.constant(1), weight: 3 }, { arbitrary: fc.constant(2), weight: 1 });

/** Names of the command groups, for `exclude` (e.g. to look at one bug class at a time). */
export const COMMAND_GROUPS = [
  'purchase', 'reserve', 'confirm', 'release', 'cancelOrder', 'waitlist', 'burst', 'adjustStock', 'pause', 'cancelSale', 'wait',
  'deleteKeys', 'rollback', 'stall', 'pgCut', 'failover',
] as const;
export type CommandGroup = (typeof COMMAND_GROUPS)[number];

/** Every command, weighted: mostly customers buying, with faults often enough to meet each other. */
export function commandArb(exclude: readonly string[] = []): fc.Arbitrary<Cmd> {
  for (const g of exclude) if (!(COMMAND_GROUPS as readonly string[]).includes(g)) throw new Error(`unknown command group ${g}; known: ${COMMAND_GROUPS.join(', ')}`);
  const all: { group: CommandGroup; weight: number; arbitrary: fc.Arbitrary<Cmd> }[] = [];
  const w = <T extends Cmd>(group: CommandGroup, weight: number, arbitrary: fc.Arbitrary<T>) => all.push({ group, weight, arbitrary: arbitrary as fc.Arbitrary<Cmd> });
  // Customers.
  w('purchase', 8, fc.tuple(customer, item, quantity, key, instance).map(([c, i, q, k, n]) => new Purchase(c, i, q, k, n)));
  w('reserve', 8, fc.tuple(customer, item, quantity, key, instance).map(([c, i, q, k, n]) => new Reserve(c, i, q, k, n)));
  w('confirm', 4, fc.tuple(customer, pick, instance).map(([c, p, n]) => new Confirm(c, p, n)));
  w('release', 3, fc.tuple(customer, pick, instance).map(([c, p, n]) => new Release(c, p, n)));
  w('cancelOrder', 3, fc.tuple(customer, pick, instance).map(([c, p, n]) => new CancelOrder(c, p, n)));
  w('waitlist', 6, fc.tuple(customer, item, quantity, instance).map(([c, i, q, n]) => new JoinWaitlist(c, i, q, n)));
  w('waitlist', 1, fc.tuple(customer, item, instance).map(([c, i, n]) => new LeaveWaitlist(c, i, n)));
  w('burst', 2, fc.array(fc.record({ c: customer, i: item, k: key, instance, reserve: fc.boolean() }), { minLength: 2, maxLength: 3 }).map((b) => new Burst(b)));
  // Admins.
  w('adjustStock', 2, fc.tuple(item, fc.constantFrom(-2, -1, 1, 2, 3), instance).map(([i, d, n]) => new AdjustStock(i, d, n)));
  w('pause', 1, instance.map((n) => new SaleAdmin('pause', n)));
  w('pause', 1, instance.map((n) => new SaleAdmin('resume', n)));
  w('cancelSale', 2, instance.map((n) => new SaleAdmin('cancel', n)));
  // Time.
  w('wait', 2, fc.constantFrom(400, 1200, 2300).map((ms) => new Wait(ms)));
  // Faults.
  w('deleteKeys', 2, fc.tuple(fc.boolean(), fc.nat({ max: 4095 })).map(([all, mask]) => new DeleteKeys(all, mask)));
  w('rollback', 2, fc.constant(null).map(() => new Snapshot()));
  w('rollback', 2, fc.nat({ max: 3 }).map((n) => new Rollback(n)));
  w('stall', 4, fc.tuple(instance, customer, fc.boolean(), item, quantity, key, pick).map(([n, c, conf, i, q, k, p]) => new StallCommit(n, c, conf, i, q, k, p)));
  w('stall', 4, fc.boolean().map((kill) => new ResolveStall(kill)));
  w('pgCut', 1, fc.tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom(800, 1500, 2500)).map(([n, ms]) => new CutPg(n, ms)));
  w('failover', 2, fc.constant(null).map(() => new ReplicaDetach()));
  w('failover', 3, fc.constant(null).map(() => new Failover()));
  const kept = all.filter((c) => !exclude.includes(c.group));
  if (kept.length === 0) throw new Error('every command group is excluded');
  return fc.oneof(...kept.map(({ weight, arbitrary }) => ({ weight, arbitrary })));
}
