import { sql } from 'kysely';
import { brief, DOCS, send } from './api.js';
import { Cmd, endPgOutage, onConfirm, onPurchase, pickReservation } from './commands.js';
import { instanceName, keyKind, note, saleKeys, sleep, type InflightReal, type Run } from './context.js';
import { count, type InflightModel, type Model } from './model.js';

/**
 * Faults, as commands interleaved with the API calls: Redis losing some or all of a sale's keys,
 * Redis rolled back to an earlier DUMP of them, a failover to a replica that missed writes,
 * PostgreSQL cut off, and a process held between its order commit and its confirm (then killed,
 * or let go after other commands ran).
 */

/** Waitlists are documented as not rebuilt after a loss: losing them alone is not a fault the engine must notice. */
const WAITLIST_KINDS = new Set(['wl:*', 'wlq:*']);
/**
 * The kinds of a sale's keys (src/services/stock/keys.ts, lua/prelude.lua), in a fixed order so a
 * mask picks the same kinds whatever happens to exist at the moment; kinds a newer engine adds are
 * appended as found.
 */
const KNOWN_KINDS = ['meta', 'stock', 'usage', 'idem', 'holds', 'confirming', 'outbox', 'counters', 'res:*', 'cres:*'];

export class DeleteKeys extends Cmd {
  constructor(readonly all: boolean, readonly mask: number) {
    super();
  }
  toString() {
    return this.all ? 'DeleteKeys(all)' : `DeleteKeys(mask ${this.mask.toString(2)})`;
  }
  protected async act(m: Model, r: Run) {
    const keys = await saleKeys(r);
    let chosen: string[];
    if (this.all) {
      chosen = keys;
    } else {
      const found = [...new Set(keys.map((k) => keyKind(r, k)))].filter((k) => !WAITLIST_KINDS.has(k) && !KNOWN_KINDS.includes(k)).sort();
      const kinds = [...KNOWN_KINDS, ...found];
      let picked = kinds.filter((_, j) => (this.mask >> j) & 1);
      if (picked.length === 0) picked = [kinds[this.mask % kinds.length]];
      chosen = keys.filter((k) => picked.includes(keyKind(r, k)));
      note(r, `  kinds ${picked.join(', ')}`);
    }
    if (chosen.length > 0) await r.world.redis.del(...chosen);
    note(r, `  deleted ${chosen.length} of ${keys.length} keys`);
    count(m, this.all ? 'fault: all keys deleted' : 'fault: some keys deleted');
  }
}

export class Snapshot extends Cmd {
  toString() {
    return 'Snapshot';
  }
  protected async act(m: Model, r: Run) {
    const snap = new Map<string, [number, Buffer]>();
    for (const key of await saleKeys(r)) {
      const [dump, pttl] = await Promise.all([r.world.redis.dumpBuffer(key), r.world.redis.pttl(key)]);
      if (dump) snap.set(key, [pttl, dump]);
    }
    r.snapshots.push(snap);
    m.snapshots = r.snapshots.length;
    note(r, `  snapshot #${r.snapshots.length - 1}: ${snap.size} keys`);
  }
}

export class Rollback extends Cmd {
  constructor(readonly which: number) {
    super();
  }
  toString() {
    return `Rollback(${this.which})`;
  }
  check(m: Readonly<Model>) {
    return m.snapshots > 0;
  }
  protected async act(m: Model, r: Run) {
    const n = this.which % r.snapshots.length;
    const snap = r.snapshots[n];
    const current = await saleKeys(r);
    const tx = r.world.redis.multi();
    if (current.length > 0) tx.del(...current);
    for (const [key, [pttl, dump]] of snap) tx.restore(key, pttl > 0 ? pttl : 0, dump, 'REPLACE');
    const res = await tx.exec();
    const failed = (res ?? []).filter(([err]) => err);
    if (failed.length > 0) throw new Error(`rollback failed: ${failed.map(([err]) => String(err)).join('; ')}`);
    m.rolledBack = true;
    note(r, `  rolled back to snapshot #${n} (${snap.size} keys; ${current.length} keys before)`);
    count(m, 'fault: rollback');
  }
}

/**
 * A purchase or confirmation whose order INSERT reaches PostgreSQL (and commits) but whose reply the
 * instance's PostgreSQL proxy holds: the process sits between commit and confirm while the next
 * commands run. ResolveStall lets it go on, or kills the process there.
 */
export class StallCommit extends Cmd {
  constructor(readonly instance: number, readonly c: number, readonly confirm: boolean, readonly i: number, readonly q: number, readonly k: number, readonly pick: number) {
    super();
  }
  toString() {
    return `StallCommit(${this.confirm ? `confirm c${this.c} pick ${this.pick}` : `purchase c${this.c} i${this.i} q${this.q} p${this.k}`}, @${instanceName(this.instance)})`;
  }
  check(m: Readonly<Model>) {
    return m.inflight === null && m.pgCutLeft === 0;
  }
  protected async act(m: Model, r: Run) {
    let c = this.c % m.u.customers;
    let reservationId: string | null = null;
    if (this.confirm) {
      const picked = await pickReservation(r, c, this.pick, this.instance, true);
      if (picked) ({ c, id: reservationId } = picked);
      else note(r, '  (nothing held to confirm: a purchase instead)');
    }
    const item = this.i % m.items.length;
    const key = `p${this.k}`;
    const info: InflightModel = reservationId
      ? { instance: this.instance, cust: c, via: 'confirm', item: null, quantity: 0, key: null, reservationId }
      : { instance: this.instance, cust: c, via: 'purchase', item, quantity: this.q, key, reservationId: null };
    const api = r.world.apis[this.instance];
    const stall = r.world.pgProxies[this.instance].stallNextMatching('insert into orders');
    const sentState = m.state;
    const answer = info.via === 'confirm'
      ? send(api.client, DOCS.confirm, { id: reservationId }, r.tokens[c])
      : send(api.client, DOCS.purchase, { input: { saleItemId: m.items[item].id, quantity: this.q, idempotencyKey: key } }, r.tokens[c]);
    let answered = false;
    void answer.then(() => (answered = true));
    let orderSeen = false;
    const until = Date.now() + 3000;
    while (!answered && Date.now() < until) {
      // Only this request's INSERT can have matched (commands run one at a time); an order of the
      // same key from before (a replay) does not count.
      if (stall.isMatched) {
        let q = r.world.db.selectFrom('orders').select('id').where('sale_id', '=', r.saleId);
        q = info.via === 'confirm' ? q.where('reservation_id', '=', reservationId!) : q.where('customer_id', '=', r.customers[c]).where('idempotency_key', '=', key);
        if (await q.executeTakeFirst()) {
          orderSeen = true;
          break;
        }
      }
      await sleep(15);
    }
    const inflight: InflightReal = { info, answer, stall, sentState, orderSeen };
    if (!stall.isMatched) {
      // Decided before any INSERT (a rejection, a replay), or stuck before it: nothing is held.
      stall.release();
      if (answered) {
        note(r, '  answered before any commit');
        return settleInflight(r, inflight);
      }
    }
    m.inflight = info;
    r.inflight = inflight;
    note(r, `  held ${orderSeen ? 'after its order committed' : stall.isMatched ? 'with its INSERT sent, no order yet' : 'before its INSERT'}`);
    count(m, orderSeen ? 'fault: commit held after the commit' : 'fault: commit held before the commit');
  }
}

/** The held request's answer, judged as any answer of its kind. */
async function settleInflight(r: Run, inf: InflightReal): Promise<void> {
  const a = await inf.answer;
  if (inf.info.via === 'confirm') {
    onConfirm(r, { c: inf.info.cust, reservationId: inf.info.reservationId!, instance: inf.info.instance, sentState: inf.sentState }, a);
  } else {
    onPurchase(r, { c: inf.info.cust, i: inf.info.item!, q: inf.info.quantity, key: inf.info.key!, instance: inf.info.instance, sentState: inf.sentState }, a);
  }
}

/** Lets the held commit's reply through, or kills its process (kill -9) first and starts a new one. */
export async function resolveInflight(r: Run, kill: boolean): Promise<void> {
  const inf = r.inflight;
  if (!inf) return;
  r.inflight = null;
  r.model.inflight = null;
  const api = r.world.apis[inf.info.instance];
  if (!kill) {
    inf.stall.release();
    note(r, `  released the held reply on ${api.name}`);
    return settleInflight(r, inf);
  }
  await api.crash();
  inf.stall.drop();
  const a = await inf.answer;
  note(r, `  killed ${api.name} (kill -9) with its ${inf.info.via} between commit and confirm: ${a.kind === 'lost' ? 'no answer' : brief(a)}`);
  count(r.model, 'fault: killed between commit and confirm');
  if (a.kind === 'data') await settleInflight(r, inf);
  await api.ensureRunning();
  await r.world.bothReady();
  note(r, `  ${api.name} restarted`);
}

export class ResolveStall extends Cmd {
  constructor(readonly kill: boolean) {
    super();
  }
  toString() {
    return this.kill ? 'KillStalled' : 'ReleaseStalled';
  }
  check(m: Readonly<Model>) {
    return m.inflight !== null && m.pgCutLeft === 0;
  }
  protected async act(_m: Model, r: Run) {
    await resolveInflight(r, this.kill);
  }
}

/** PostgreSQL unreachable (both instances' proxies refuse and reset) for the next `commands` commands, and at least `minMs`. */
export class CutPg extends Cmd {
  override readonly startsOutage = true;
  constructor(readonly commands: number, readonly minMs: number) {
    super();
  }
  toString() {
    return `CutPg(${this.commands} commands, >= ${this.minMs} ms)`;
  }
  check(m: Readonly<Model>) {
    return m.pgCutLeft === 0;
  }
  protected async act(m: Model, r: Run) {
    await Promise.all(r.world.pgProxies.map((p) => p.cut()));
    r.pgCut = { since: Date.now(), minMs: this.minMs };
    m.pgCutLeft = this.commands;
    count(m, 'fault: PostgreSQL cut');
  }
}

export class ReplicaDetach extends Cmd {
  toString() {
    return 'ReplicaDetach';
  }
  check(m: Readonly<Model>) {
    return m.u.replicaFaults && m.replica === 'attached';
  }
  protected async act(m: Model, r: Run) {
    await r.world.detachReplica();
    m.replica = 'detached';
    note(r, `  replica on :${r.world.replicaNode.port} stopped following :${r.world.primaryNode.port}`);
  }
}

/** Fails over to the replica detached earlier: every write since is gone, for the whole Redis. */
export class Failover extends Cmd {
  toString() {
    return 'Failover';
  }
  check(m: Readonly<Model>) {
    return m.replica === 'detached';
  }
  protected async act(m: Model, r: Run) {
    await r.world.failover();
    m.replica = 'attached';
    m.rolledBack = true;
    note(r, `  failed over to :${r.world.primaryNode.port}`);
    count(m, 'fault: failover');
    // PostgreSQL may be cut meanwhile: wait only for the instances to reach the new primary.
    await r.world.bothReachRedis();
  }
}

/** Ends every fault still running, so the run can settle: the held reply goes through, PostgreSQL comes back, the replica follows again. */
export async function endFaults(r: Run): Promise<void> {
  if (r.pgCut) await endPgOutage(r);
  if (r.inflight) {
    note(r, 'end of run: releasing the held commit');
    await resolveInflight(r, false);
  }
  if (!r.world.replicaAttached) await r.world.reattachReplica();
  r.model.replica = 'attached';
}

/** After a run (passed or not): leave nothing behind that the next run could trip over. */
export async function cleanUpRun(r: Run): Promise<void> {
  if (r.inflight) {
    r.inflight.stall.release();
    await Promise.race([r.inflight.answer, sleep(15_000)]);
    r.inflight = null;
  }
  await Promise.all(r.world.pgProxies.map((p) => p.restore()));
  r.pgCut = null;
  if (!r.world.replicaAttached) await r.world.reattachReplica();
  for (const api of r.world.apis) await api.ensureRunning();
  // Retire the sale: cancelled in PostgreSQL (recovery skips it), its keys gone, off the live set.
  await sql`update sales set state = 'CANCELLED' where id = ${r.saleId}`.execute(r.world.db);
  const keys = await saleKeys(r);
  if (keys.length > 0) await r.world.redis.del(...keys);
  await r.world.redis.srem(`${r.world.prefix}sales:live`, r.saleId);
}
