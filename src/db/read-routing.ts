import { sql } from 'kysely';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { RedisClient } from '../redis.js';
import type { Db } from './database.js';

/**
 * Where reads go (`DATABASE_READ_URL`): the one seam between the services and a read replica.
 *
 * - `primary` is for writes and everything on the buying path (order inserts, stock checks,
 *   recovery, the ledger drain): services that do those hold the primary and never ask here.
 * - `reader(viewerId)` is for reads that may be a little behind: the catalogue, sale lists, order
 *   history, admin reports. It answers the replica while the replica is healthy, else the primary:
 *   - replica down (probe fails), not a standby, or its last probe too old → primary;
 *   - lagging beyond `maxLagMs` → primary. Lag is measured by WAL position, not by the replay
 *     timestamp (which grows on an idle primary): every probe notes the primary's
 *     `pg_current_wal_lsn()` with the time it was read; the lag is the age of the oldest noted
 *     position the replica has not replayed (`pg_last_wal_replay_lsn()`). Paused replay
 *     (`pg_wal_replay_pause()`) with WAL waiting is therefore lag that grows until the bound;
 *   - read-your-writes: a viewer who wrote within `readYourWritesMs` reads from the primary. The
 *     mark is kept in this process' memory and in a Redis key with that TTL, so the viewer's next
 *     request reaches the primary whichever instance serves it. The window is the lag bound plus
 *     three probe intervals: past it, a replica still counted healthy has replayed the write.
 *
 * Without a replica, `reader()` is always the primary and nothing is probed.
 */
/**
 * A read that may be served by the replica, for this viewer (null: anonymous). Service methods
 * that take one read from the primary when it is absent: internal callers (the buying path, the
 * live feeds, recovery) never pass it; GraphQL read resolvers do.
 */
export interface ReadVia {
  viewerId: string | null;
}

export type ReplicaState = 'none' | 'starting' | 'ok' | 'lagging' | 'down';

export interface ReplicaStatus {
  state: ReplicaState;
  /** The measured lag, ms (null when unknown: down or not probed yet). */
  lagMs: number | null;
  /** The replica's WAL replay is paused (pg_wal_replay_pause). */
  paused: boolean;
  /** Why it is not used, for the log and /ready: "no answer", "not a standby", ... */
  reason?: string;
}

export interface ReadRoutingOptions {
  primary: Db;
  replica?: Db | null;
  /** For the cross-instance read-your-writes mark; without it the mark is this process' only. */
  redis?: RedisClient | null;
  prefix?: string;
  /** Replica lag beyond which reads go to the primary. */
  maxLagMs?: number;
  /** How often the replica is probed; default a quarter of maxLagMs, within 100..1000 ms. */
  probeIntervalMs?: number;
  registry?: Registry;
  log?: Logger;
}

const STATE_CODES: Record<ReplicaState, number> = { none: -1, starting: 0, ok: 1, lagging: 2, down: 3 };
/** Primary positions remembered; at the default interval this covers minutes of lag. */
const MAX_SAMPLES = 1000;

function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export class DbRouter {
  readonly primary: Db;
  readonly replica: Db | null;
  readonly maxLagMs: number;
  readonly probeIntervalMs: number;
  /** How long a viewer reads from the primary after writing. */
  readonly readYourWritesMs: number;
  private readonly redis: RedisClient | null;
  private readonly prefix: string;
  private readonly log?: Logger;
  private readonly wroteAt = new Map<string, number>();
  private samples: { at: number; lsn: bigint }[] = [];
  private current: ReplicaStatus;
  private probedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;

  constructor(opts: ReadRoutingOptions) {
    this.primary = opts.primary;
    this.replica = opts.replica ?? null;
    this.redis = opts.redis ?? null;
    this.prefix = opts.prefix ?? '';
    this.log = opts.log;
    this.maxLagMs = opts.maxLagMs ?? 2000;
    this.probeIntervalMs = opts.probeIntervalMs ?? Math.min(1000, Math.max(100, Math.round(this.maxLagMs / 4)));
    this.readYourWritesMs = this.maxLagMs + 3 * this.probeIntervalMs;
    this.current = this.replica ? { state: 'starting', lagMs: null, paused: false } : { state: 'none', lagMs: null, paused: false };
    if (opts.registry) {
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const router = this;
      new Gauge({
        name: 'flashsale_db_read_replica_state',
        help: 'the read replica as this instance sees it: -1 none configured, 0 starting, 1 ok (reads go to it), 2 lagging beyond DATABASE_READ_MAX_LAG_MS, 3 down (2 and 3: reads go to the primary)',
        registers: [opts.registry],
        collect() {
          this.set(STATE_CODES[router.status().state]);
        },
      });
      new Gauge({
        name: 'flashsale_db_read_replica_lag_seconds',
        help: 'the read replica\'s replay lag behind the primary as last measured (absent while unknown)',
        registers: [opts.registry],
        collect() {
          this.reset();
          const lag = router.status().lagMs;
          if (lag !== null) this.set(lag / 1000);
        },
      });
    }
  }

  /** A router without a replica: every read goes to `db`. */
  static primaryOnly(db: Db): DbRouter {
    return new DbRouter({ primary: db });
  }

  /** The replica as last probed; a probe older than three intervals counts as down. */
  status(): ReplicaStatus {
    if (this.current.state === 'ok' || this.current.state === 'lagging') {
      if (Date.now() - this.probedAt > 3 * this.probeIntervalMs + 1000) return { state: 'down', lagMs: null, paused: this.current.paused, reason: 'no recent probe' };
    }
    return this.current;
  }

  /** The database a read for `viewerId` (or an anonymous one) goes to. Never rejects. */
  async reader(viewerId?: string | null): Promise<Db> {
    if (!this.replica || this.status().state !== 'ok') return this.primary;
    if (viewerId && (await this.wroteRecently(viewerId))) return this.primary;
    return this.replica;
  }

  /** The primary without `via` (internal callers), else `reader(via.viewerId)`. */
  db(via?: ReadVia | null): Promise<Db> {
    return via ? this.reader(via.viewerId) : Promise.resolve(this.primary);
  }

  /**
   * Notes that `viewerId` is writing (call before the write and again after it): their reads go to
   * the primary for `readYourWritesMs`, on every instance.
   */
  async wrote(viewerId: string): Promise<void> {
    if (!this.replica) return;
    const now = Date.now();
    this.wroteAt.set(viewerId, now);
    if (this.wroteAt.size > 100_000) this.forgetOld(now);
    if (!this.redis) return;
    await this.redis.set(this.key(viewerId), '1', 'PX', this.readYourWritesMs).catch((err: Error) => {
      this.log?.warn({ err: err.message }, 'read-your-writes mark not saved in Redis; other instances may read from the replica');
    });
  }

  private async wroteRecently(viewerId: string): Promise<boolean> {
    const at = this.wroteAt.get(viewerId);
    if (at !== undefined) {
      if (Date.now() - at < this.readYourWritesMs) return true;
      this.wroteAt.delete(viewerId);
    }
    if (!this.redis) return false;
    // A Redis that does not answer at once could hide another instance's mark: read the primary.
    if (this.redis.status !== 'ready') return true;
    try {
      return (await this.redis.exists(this.key(viewerId))) === 1;
    } catch {
      return true;
    }
  }

  private key(viewerId: string): string {
    return `${this.prefix}ryw:${viewerId}`;
  }

  private forgetOld(now: number): void {
    for (const [id, at] of this.wroteAt) if (now - at >= this.readYourWritesMs) this.wroteAt.delete(id);
  }

  /**
   * The replica's connection failed (its pool reports an idle connection closed, e.g. the server
   * stopped): reads go to the primary at once, not after the next probe, which brings it back.
   */
  replicaFailed(detail: string): void {
    if (!this.replica || this.current.state === 'down') return;
    this.log?.warn({ err: detail }, 'read replica connection lost; reads go to the primary');
    this.current = { state: 'down', lagMs: null, paused: false, reason: 'connection lost' };
    void this.probe();
  }

  /** Probes once, then every `probeIntervalMs`; a no-op without a replica. */
  async start(): Promise<void> {
    if (!this.replica || this.timer) return;
    await this.probe();
    this.timer = setInterval(() => void this.probe(), this.probeIntervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One measurement of the replica; concurrent calls share it. Never rejects. */
  probe(): Promise<void> {
    this.probing ??= this.measure().finally(() => {
      this.probing = null;
    });
    return this.probing;
  }

  private async measure(): Promise<void> {
    const replica = this.replica;
    if (!replica) return;
    const timeout = Math.max(500, this.probeIntervalMs * 2);
    const within = <T>(p: Promise<T>) =>
      Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeout} ms`)), timeout).unref())]);
    const primaryAt = Date.now();
    const [primary, standby] = await Promise.allSettled([
      within(sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(this.primary)),
      within(sql<{ recovery: boolean; replay: string | null; paused: boolean }>`
        select pg_is_in_recovery() as recovery, pg_last_wal_replay_lsn()::text as replay,
          case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end as paused`.execute(replica)),
    ]);
    let next: ReplicaStatus;
    let detail: string | undefined;
    if (primary.status === 'fulfilled') {
      this.samples.push({ at: primaryAt, lsn: parseLsn(primary.value.rows[0].lsn) });
      if (this.samples.length > MAX_SAMPLES) this.samples.splice(0, this.samples.length - MAX_SAMPLES);
    }
    if (standby.status === 'rejected') {
      next = { state: 'down', lagMs: null, paused: false, reason: 'no answer' };
      detail = (standby.reason as Error)?.message;
    } else {
      const row = standby.value.rows[0];
      if (!row.recovery || row.replay === null) {
        next = { state: 'down', lagMs: null, paused: false, reason: 'not a standby' };
      } else if (primary.status === 'rejected' || this.samples.length === 0) {
        next = { state: 'down', lagMs: null, paused: row.paused, reason: 'primary position unknown' };
      } else {
        const replayed = parseLsn(row.replay);
        // Positions the replica has replayed are forgotten; the oldest one left says how far behind it is.
        while (this.samples.length > 1 && this.samples[0].lsn <= replayed) this.samples.shift();
        const oldest = this.samples[0];
        const lagMs = oldest.lsn <= replayed ? 0 : Date.now() - oldest.at;
        next = lagMs > this.maxLagMs
          ? { state: 'lagging', lagMs, paused: row.paused, reason: row.paused ? 'replay paused' : 'lagging' }
          : { state: 'ok', lagMs, paused: row.paused };
      }
    }
    if (next.state !== this.current.state) {
      if (next.state === 'ok') this.log?.info({ lagMs: next.lagMs }, 'read replica in use');
      else this.log?.warn({ state: next.state, reason: next.reason, err: detail, lagMs: next.lagMs }, 'read replica not used; reads go to the primary');
    }
    this.current = next;
    this.probedAt = Date.now();
  }
}
