import { readFileSync } from 'node:fs';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../redis.js';

/** A token bucket: `burst` calls at once, refilled at `perSecond` (see RATE_LIMIT_TIER_* in src/config.ts). */
export interface BucketRule {
  burst: number;
  perSecond: number;
}

/** One bucket to charge, by its full Redis key: what the reserve script charges when limits are folded into it. */
export interface BucketCheck {
  key: string;
  burst: number;
  /** Microseconds per token (1e6 / perSecond), at least 1. */
  intervalUs: number;
}

export interface BucketVerdict {
  allowed: boolean;
  /** When refused: ms until every bucket of the call has a token again (0 when allowed). */
  retryAfterMs: number;
}

/** The GCRA functions (Lua), shared by the limiter's scripts and the reserve script. */
export const RATE_BUCKET_LUA = readFileSync(new URL('./rate-bucket.lua', import.meta.url), 'utf8');

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** KEYS: the buckets (all in one slot: standalone Redis, or one key); ARGV: burst, intervalUs per key. */
    fsBucketCharge(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<number>;
    /** One bucket, routed by its key on Redis Cluster. */
    fsBucketChargeOne(key: string, burst: number, intervalUs: number): Promise<number>;
    fsBucketRefund(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<number>;
    fsBucketRefundOne(key: string, intervalUs: number): Promise<number>;
  }
}

const chargeLua = `${RATE_BUCKET_LUA}
local bursts, intervals = {}, {}
for i = 1, #KEYS do bursts[i] = tonumber(ARGV[2 * i - 1]); intervals[i] = tonumber(ARGV[2 * i]) end
return buckets_charge(KEYS, bursts, intervals)`;
const refundLua = `${RATE_BUCKET_LUA}
local intervals = {}
for i = 1, #KEYS do intervals[i] = tonumber(ARGV[i]) end
buckets_refund(KEYS, intervals)
return 1`;

export function intervalUs(rule: BucketRule): number {
  return Math.max(1, Math.round(1_000_000 / rule.perSecond));
}

/**
 * Token buckets (GCRA) in Redis, shared by every instance; each charge is one atomic script call.
 * On standalone Redis the buckets of one call are charged in one script, all or none. On Redis
 * Cluster they may sit in different slots: each is charged by a command of its own, and when one
 * refuses, the tokens the others gave are handed back.
 */
export class RateBuckets {
  readonly cluster: boolean;

  constructor(private readonly redis: RedisClient, private readonly prefix = '') {
    this.cluster = redis instanceof Cluster;
    // The same client may serve several apps (tests); define each command once.
    const commands: [string, number | undefined, string][] = [
      ['fsBucketCharge', undefined, chargeLua],
      ['fsBucketChargeOne', 1, chargeLua],
      ['fsBucketRefund', undefined, refundLua],
      ['fsBucketRefundOne', 1, refundLua],
    ];
    for (const [name, numberOfKeys, lua] of commands) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua });
    }
  }

  /** The bucket of `name` under `rule`, for a script that charges it itself. */
  check(name: string, rule: BucketRule): BucketCheck {
    return { key: `${this.prefix}rb:${name}`, burst: rule.burst, intervalUs: intervalUs(rule) };
  }

  /** One token of every bucket, or none. */
  async charge(checks: readonly BucketCheck[]): Promise<BucketVerdict> {
    if (checks.length === 0) return { allowed: true, retryAfterMs: 0 };
    if (!this.cluster || checks.length === 1) {
      const wait = checks.length === 1
        ? await this.redis.fsBucketChargeOne(checks[0].key, checks[0].burst, checks[0].intervalUs)
        : await this.redis.fsBucketCharge(checks.length, ...checks.map((c) => c.key), ...checks.flatMap((c) => [c.burst, c.intervalUs]));
      return wait < 0 ? { allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: wait };
    }
    const waits = await Promise.all(checks.map((c) => this.redis.fsBucketChargeOne(c.key, c.burst, c.intervalUs)));
    if (waits.every((w) => w < 0)) return { allowed: true, retryAfterMs: 0 };
    void this.refund(checks.filter((_, i) => waits[i] < 0)).catch(() => undefined);
    return { allowed: false, retryAfterMs: Math.max(...waits) };
  }

  /** Gives back the token a charge took from each bucket (a charge that bought nothing). */
  async refund(checks: readonly BucketCheck[]): Promise<void> {
    if (checks.length === 0) return;
    if (this.cluster || checks.length === 1) {
      await Promise.all(checks.map((c) => this.redis.fsBucketRefundOne(c.key, c.intervalUs)));
      return;
    }
    await this.redis.fsBucketRefund(checks.length, ...checks.map((c) => c.key), ...checks.map((c) => c.intervalUs));
  }
}
