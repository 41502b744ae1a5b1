import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis.js';

/** At most `max` calls per fixed window of `windowMs`. */
export interface RateRule {
  max: number;
  windowMs: number;
}

/** One counter to hit, by its full Redis key: what the reserve script counts when limits are folded into it. */
export interface RateCheck extends RateRule {
  key: string;
}

/** The counting function (Lua), shared by the limiter's script and the reserve script. */
export const RATE_HIT_LUA = readFileSync(new URL('./rate-hit.lua', import.meta.url), 'utf8');

declare module 'ioredis' {
  interface RedisCommander<Context> {
    fsRateHit(key: string, max: number, windowMs: number): Promise<[number, number, number]>;
  }
}

/** Fixed-window counters in Redis, shared by every instance; each hit is one atomic script call. */
export class RateCounter {
  constructor(private readonly redis: RedisClient, private readonly prefix: string) {
    // The same client may serve several apps (tests); define the command once.
    const command: string = 'fsRateHit';
    if (!(command in redis)) {
      redis.defineCommand(command, { numberOfKeys: 1, lua: `${RATE_HIT_LUA}\nlocal allowed, hits, ttl = rate_hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\nreturn {allowed, hits, ttl}` });
    }
  }

  /** The counter of `name` under `rule`, for a script that hits it itself. */
  check(name: string, rule: RateRule): RateCheck {
    return { key: `${this.prefix}rl:${name}`, max: rule.max, windowMs: rule.windowMs };
  }

  async hit(c: RateCheck): Promise<{ allowed: boolean; hits: number; retryAfterMs: number }> {
    const [allowed, hits, ttl] = await this.redis.fsRateHit(c.key, c.max, c.windowMs);
    return { allowed: allowed === 1, hits, retryAfterMs: ttl };
  }
}
