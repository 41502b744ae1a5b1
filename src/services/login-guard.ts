import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis.js';
import { normalizeEmail } from './accounts.js';
import type { RateRule } from './rate-counter.js';

const ATTEMPT_LUA = readFileSync(new URL('./login-guard.lua', import.meta.url), 'utf8');
const SUCCEEDED_LUA = readFileSync(new URL('./login-succeeded.lua', import.meta.url), 'utf8');

/** The first wait once an email is past its ceiling; each further attempt doubles it. */
export const LOGIN_BACKOFF_BASE_MS = 1000;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    fsLoginAttempt(addressKey: string, emailKey: string, ...args: number[]): Promise<[number, number, number]>;
    fsLoginSucceeded(addressKey: string, emailKey: string): Promise<number>;
  }
}

export interface LoginRules {
  /** Attempts for one email from one client address (RATE_LIMIT_AUTH_PER_EMAIL). */
  perAddress: RateRule;
  /** Attempts for one email from every address together (RATE_LIMIT_AUTH_EMAIL_CEILING). */
  ceiling: RateRule;
  /** The longest backoff past the ceiling (RATE_LIMIT_AUTH_BACKOFF_MAX_SECONDS). */
  backoffMaxMs: number;
}

export type LoginVerdict = { allowed: true } | { allowed: false; retryAfterMs: number; refusedBy: 'address' | 'email' };

/**
 * Failed-login limits that an attacker elsewhere cannot turn against the owner (issue 17 d): the
 * tight limit is per (email, client address), so guesses from one address lock out only that
 * address; every address together meets a generous per-email ceiling, past which the email is
 * slowed (backoff, at most `backoffMaxMs` between attempts), never closed. A success from an
 * address clears its counter. Both counters are in Redis (shared by every instance), in one slot
 * per email, and each attempt is one atomic script (src/services/login-guard.lua).
 */
export class LoginGuard {
  constructor(private readonly redis: RedisClient, private readonly prefix: string, private readonly rules: LoginRules) {
    // The same client may serve several apps (tests); define the commands once.
    const commands: [string, string][] = [['fsLoginAttempt', ATTEMPT_LUA], ['fsLoginSucceeded', SUCCEEDED_LUA]];
    for (const [name, lua] of commands) if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 2, lua });
  }

  /** Counts one attempt for `email` from `address` before the password is checked. */
  async attempt(email: string, address: string): Promise<LoginVerdict> {
    const { perAddress, ceiling, backoffMaxMs } = this.rules;
    const [allowed, retryAfterMs, refusedBy] = await this.redis.fsLoginAttempt(
      ...this.keys(email, address),
      perAddress.max, perAddress.windowMs, ceiling.max, ceiling.windowMs, LOGIN_BACKOFF_BASE_MS, backoffMaxMs,
    );
    return allowed === 1 ? { allowed: true } : { allowed: false, retryAfterMs, refusedBy: refusedBy === 2 ? 'email' : 'address' };
  }

  /** A login or register for `email` from `address` succeeded. */
  async succeeded(email: string, address: string): Promise<void> {
    await this.redis.fsLoginSucceeded(...this.keys(email, address));
  }

  /** The email hashed (Redis never holds an address of anyone's mailbox), as the hash tag of both keys. */
  private keys(email: string, address: string): [string, string] {
    const id = createHash('sha256').update(normalizeEmail(email)).digest('base64url').slice(0, 22);
    return [`${this.prefix}rl:{login:${id}}:address:${address}`, `${this.prefix}rl:{login:${id}}:email`];
  }
}
