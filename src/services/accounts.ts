import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/database.js';
import type { TokenService } from './auth.js';
import { newId } from './ids.js';

export const MIN_PASSWORD_LENGTH = 10;
// scrypt reads the whole password; an unbounded one is a cheap way to burn our CPU.
export const MAX_PASSWORD_LENGTH = 1024;

/** What `register`/`login` hand back: the same bearer token every other caller uses. */
export interface Session {
  token: string;
  customerId: string;
  expiresAt: Date;
}

export type RegisterOutcome =
  | { ok: true; session: Session }
  | { ok: false; reason: 'INVALID_EMAIL' | 'PASSWORD_TOO_SHORT' | 'PASSWORD_TOO_LONG' | 'EMAIL_TAKEN'; field: 'email' | 'password'; message: string };

/** A failed login says nothing about why: unknown email and wrong password look the same. */
export type LoginOutcome = { ok: true; session: Session } | { ok: false };

/** Emails compare trimmed and lower-cased; the rate limiter keys on the same form. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

const emailSchema = z.email().max(254);

/** scrypt cost: N = 2^ln, block size r, parallelism p. Memory is 128 * N * r bytes. */
export interface KdfParams {
  ln: number;
  r: number;
  p: number;
}

// 2^15 * 8 * 128 B = 32 MiB and ~100 ms per hash on this 2-core box: memory-hard without letting a
// burst of logins exhaust the libuv pool's memory. Stored with each hash, so it can be raised later.
export const DEFAULT_KDF: KdfParams = { ln: 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Registration and password login: the built-in identity behind `register`/`login`. */
export class AccountService {
  /** Made at start, so not even the first unknown-email login pays for it (and stands out). */
  private readonly dummyHash: Promise<string>;

  constructor(
    private readonly db: Db,
    private readonly tokens: TokenService,
    private readonly kdf: KdfParams = DEFAULT_KDF,
  ) {
    this.dummyHash = hashPassword(randomBytes(16).toString('base64'), kdf);
    this.dummyHash.catch(() => {});
  }

  async register(emailInput: string, password: string): Promise<RegisterOutcome> {
    const email = normalizeEmail(emailInput);
    if (!emailSchema.safeParse(email).success) {
      return { ok: false, reason: 'INVALID_EMAIL', field: 'email', message: 'email must be a valid email address.' };
    }
    const length = [...password].length;
    if (length < MIN_PASSWORD_LENGTH) {
      return { ok: false, reason: 'PASSWORD_TOO_SHORT', field: 'password', message: `password must be at least ${MIN_PASSWORD_LENGTH} characters.` };
    }
    if (length > MAX_PASSWORD_LENGTH) {
      return { ok: false, reason: 'PASSWORD_TOO_LONG', field: 'password', message: `password must be at most ${MAX_PASSWORD_LENGTH} characters.` };
    }
    // Hash before touching the table so a taken email costs the same time as a new one.
    const passwordHash = await hashPassword(password, this.kdf);
    const id = newId();
    try {
      await this.db.insertInto('users').values({ id, email, password_hash: passwordHash }).execute();
    } catch (err) {
      // The unique index is the arbiter: two simultaneous registrations of one email cannot both win.
      if ((err as { code?: string }).code === '23505') {
        return { ok: false, reason: 'EMAIL_TAKEN', field: 'email', message: 'An account with this email already exists.' };
      }
      throw err;
    }
    return { ok: true, session: await this.session(id) };
  }

  async login(emailInput: string, password: string): Promise<LoginOutcome> {
    const email = normalizeEmail(emailInput);
    // No account can have an over-long password, and hashing one is the CPU burn the cap prevents.
    const tooLong = [...password].length > MAX_PASSWORD_LENGTH;
    const user = tooLong ? undefined : await this.db.selectFrom('users').select(['id', 'password_hash']).where('email', '=', email).executeTakeFirst();
    if (!user) {
      // Spend the same scrypt time as a real check, so response time does not reveal which emails exist.
      await verifyPassword(password.slice(0, MAX_PASSWORD_LENGTH), await this.dummyHash);
      return { ok: false };
    }
    const check = await verifyPassword(password, user.password_hash);
    if (!check.ok) return { ok: false };
    if (!sameKdf(check.params, this.kdf)) {
      // Raised cost parameters reach old accounts at their next login; losing this race is harmless.
      await this.db
        .updateTable('users')
        .set({ password_hash: await hashPassword(password, this.kdf) })
        .where('id', '=', user.id)
        .where('password_hash', '=', user.password_hash)
        .execute();
    }
    return { ok: true, session: await this.session(user.id) };
  }

  private async session(customerId: string): Promise<Session> {
    const { token, expiresAt } = await this.tokens.sign(customerId, 'customer');
    return { token, customerId, expiresAt };
  }
}

function scryptAsync(password: string, salt: Buffer, params: KdfParams): Promise<Buffer> {
  const options: ScryptOptions = {
    N: 2 ** params.ln,
    r: params.r,
    p: params.p,
    // Node's default cap (32 MiB) is exactly our working set; leave headroom for raised parameters.
    maxmem: 256 * 2 ** params.ln * params.r,
  };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

async function hashPassword(password: string, params: KdfParams): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password, salt, params);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

async function verifyPassword(password: string, stored: string): Promise<{ ok: true; params: KdfParams } | { ok: false }> {
  const m = PHC.exec(stored);
  if (!m) return { ok: false };
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const expected = Buffer.from(m[5], 'base64');
  const actual = await scryptAsync(password, Buffer.from(m[4], 'base64'), params);
  // Constant-time: how many leading bytes match must not show in the response time.
  const ok = actual.length === expected.length && timingSafeEqual(actual, expected);
  return ok ? { ok: true, params } : { ok: false };
}

function sameKdf(a: KdfParams, b: KdfParams): boolean {
  return a.ln === b.ln && a.r === b.r && a.p === b.p;
}
