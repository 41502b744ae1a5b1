import { createHmac, timingSafeEqual } from 'node:crypto';
import { SignJWT, jwtVerify, createRemoteJWKSet } from 'jose';
import { z } from 'zod';
import { isCustomerTier, type CustomerTier } from './customer-tiers.js';

export type Role = 'customer' | 'admin';
export interface Viewer {
  id: string;
  role: Role;
  /** An identity provider's `tier` claim (a valid one); an admin's setCustomerTier wins over it (src/services/customer-tiers.ts). */
  tier?: CustomerTier;
}

/** What the request's token says: nobody, somebody, or a token we refuse. */
export type Authentication = { viewer: Viewer | null; error: string | null };

const claims = z.object({
  sub: z.string().min(1).max(64),
  role: z.enum(['customer', 'admin']).default('customer'),
});

/**
 * Verified tokens remembered, the oldest forgotten first. A storm's customers retry with the same
 * token within seconds, so recent tokens are the ones worth keeping; an entry costs ~0.4 KB of
 * live heap, which every full GC marks again, so the memo stays small (~4 MB).
 */
export const MAX_REMEMBERED_TOKENS = 10_000;

/** The longest a token may be valid unless configured otherwise (JWT_MAX_LIFETIME_SECONDS). */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;
/** Measured against our clock (no `iat`, or one in the future), a lifetime may be this much over: clocks differ. */
const CLOCK_SKEW_SECONDS = 60;

export class TokenService {
  private readonly key: Uint8Array;
  /** Our tokens already verified, by their text: a token's claims never change, only the clock moves. */
  private readonly verified = new Map<string, { viewer: Viewer; exp: number | undefined; nbf: number | undefined }>();
  private readonly secret: Buffer;
  private readonly jwks?: ReturnType<typeof createRemoteJWKSet>;

  /**
   * `external` pins the issuer and audience of identity-provider tokens: a provider's keys usually
   * sign tokens for many applications, and only those meant for us may pass. Every token, ours and
   * the provider's, must carry `exp` and be valid at most `maxLifetimeSeconds` (see `checkLifetime`).
   */
  constructor(
    secret: string,
    jwksUrl?: string,
    private readonly external: { issuer?: string; audience?: string; allowAdmin?: boolean } = {},
    readonly maxLifetimeSeconds = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
  ) {
    this.key = new TextEncoder().encode(secret);
    this.secret = Buffer.from(this.key);
    if (jwksUrl) this.jwks = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000 });
  }

  /** A token valid `ttlSeconds` (default: the longest allowed); longer than we would accept is refused. */
  async sign(subject: string, role: Role, ttlSeconds = this.maxLifetimeSeconds): Promise<{ token: string; expiresAt: Date }> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds > this.maxLifetimeSeconds) {
      throw new RangeError(`token lifetime must be a whole number of seconds, at most ${this.maxLifetimeSeconds}`);
    }
    // Whole seconds, as in `exp`: the expiry we report must not be later than the one we enforce.
    const expiresAt = new Date((Math.floor(Date.now() / 1000) + ttlSeconds) * 1000);
    const token = await new SignJWT({ role })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.key);
    return { token, expiresAt };
  }

  async verify(token: string): Promise<Viewer> {
    const known = this.remembered(token);
    if (known) return known;
    const header = peekHeader(token);
    if (header?.alg === 'HS256') return this.verifyOwn(token, header);
    if (this.jwks && (header?.alg === 'RS256' || header?.alg === 'ES256')) {
      const { payload } = await jwtVerify(token, this.jwks, { algorithms: ['RS256', 'ES256'], issuer: this.external.issuer, audience: this.external.audience });
      checkLifetime(payload.exp, payload.iat, this.maxLifetimeSeconds);
      const parsed = claims.parse(payload);
      // A provider's `role` claim makes an admin only when the operator says the provider may.
      const viewer: Viewer = { id: parsed.sub, role: parsed.role === 'admin' && this.external.allowAdmin ? 'admin' : 'customer' };
      // Its `tier` claim sets the customer's rate limits; an unknown tier is ignored (STANDARD), not a refused token.
      if (isCustomerTier(payload.tier)) viewer.tier = payload.tier;
      return viewer;
    }
    throw new Error('unsupported token algorithm');
  }

  /** Reads an `Authorization` header value (or a graphql-ws connection param). */
  async authenticate(header: string | null | undefined): Promise<Authentication> {
    if (!header) return { viewer: null, error: null };
    const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!m) return { viewer: null, error: 'The Authorization header must be "Bearer <token>".' };
    try {
      // A remembered token is answered without the promise `verify` would cost.
      return { viewer: this.remembered(m[1]) ?? (await this.verify(m[1])), error: null };
    } catch {
      return { viewer: null, error: 'The token is invalid or expired.' };
    }
  }

  /** The viewer of an HS256 token we verified before, its times checked again now; undefined when we have not. */
  private remembered(token: string): Viewer | undefined {
    const known = this.verified.get(token);
    if (!known) return undefined;
    checkTimes(known.exp, known.nbf);
    return known.viewer;
  }

  /**
   * Our own HS256 tokens, checked synchronously with `node:crypto`: jose's `jwtVerify` imported the
   * key and queued a WebCrypto job on every call, ~17 % of a purchase's CPU. It refuses what
   * `jwtVerify(token, key, { algorithms: ['HS256'] })` refused, and a little more that we never
   * issue: any `crit` or `b64` header, `=` padding, and a signature not spelled exactly as its
   * base64url (jose also took its other spellings: padded, or other unused low bits).
   */
  private verifyOwn(token: string, header: Record<string, unknown>): Viewer {
    const parts = token.split('.');
    if (parts.length !== 3 || !parts.every(isBase64url)) throw new Error('malformed token');
    if (Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) throw new Error('unsupported token header');
    const [encodedHeader, encodedPayload, signature] = parts;
    const expected = Buffer.from(createHmac('sha256', this.secret).update(`${encodedHeader}.${encodedPayload}`).digest('base64url'));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Error('bad token signature');

    const payload = decodeJsonObject(encodedPayload);
    if (!payload) throw new Error('token payload is not a JSON object');
    const { exp, nbf, iat } = payload;
    if (iat !== undefined && typeof iat !== 'number') throw new Error('token iat is not a number');
    if (nbf !== undefined && typeof nbf !== 'number') throw new Error('token nbf is not a number');
    if (exp !== undefined && typeof exp !== 'number') throw new Error('token exp is not a number');
    checkLifetime(exp, iat, this.maxLifetimeSeconds);
    checkTimes(exp, nbf);
    const parsed = claims.parse(payload);
    const viewer: Viewer = { id: parsed.sub, role: parsed.role };
    // A Map iterates in insertion order: its first key is the oldest.
    if (this.verified.size >= MAX_REMEMBERED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { viewer, exp, nbf });
    return viewer;
  }
}

/** jose's time checks with clockTolerance 0: whole seconds, `exp` exclusive, `nbf` inclusive. */
function checkTimes(exp: number | undefined, nbf: number | undefined): void {
  const now = Math.floor(Date.now() / 1000);
  if (nbf !== undefined && nbf > now) throw new Error('token not yet valid');
  if (exp !== undefined && exp <= now) throw new Error('token expired');
}

/**
 * A token must say when it ends, and not too far ahead: without `exp` a stolen token works
 * forever. The lifetime is `exp − iat`; without `iat` (or with one in the future, which must not
 * stretch it) it is `exp − now`, a minute of clock skew allowed.
 */
function checkLifetime(exp: number | undefined, iat: number | undefined, maxSeconds: number): void {
  if (exp === undefined) throw new Error('token has no exp');
  const now = Math.floor(Date.now() / 1000);
  const lifetime = iat !== undefined && iat <= now ? exp - iat : exp - now - CLOCK_SKEW_SECONDS;
  if (lifetime > maxSeconds) throw new Error('token lifetime is over the maximum');
}

/** Unpadded base64url that decodes to whole bytes (a length of 4n+1 is none: jose refused it). */
const BASE64URL = /^[A-Za-z0-9_-]*$/;
function isBase64url(part: string): boolean {
  return part.length % 4 !== 1 && BASE64URL.test(part);
}

/** As jose decodes a JOSE header or claims set: UTF-8 that must be valid, JSON, a plain object. */
const utf8 = new TextDecoder('utf-8', { fatal: true });
function decodeJsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(utf8.decode(Buffer.from(part, 'base64url')));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The header, to pick a verifier; each verifier then checks the whole token strictly. */
function peekHeader(token: string): Record<string, unknown> | undefined {
  const dot = token.indexOf('.');
  return decodeJsonObject(dot === -1 ? token : token.slice(0, dot));
}
