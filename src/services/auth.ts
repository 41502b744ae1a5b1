import { SignJWT, jwtVerify, createRemoteJWKSet, type JWTPayload } from 'jose';
import { z } from 'zod';

export type Role = 'customer' | 'admin';
export interface Viewer {
  id: string;
  role: Role;
}

/** What the request's token says: nobody, somebody, or a token we refuse. */
export type Authentication = { viewer: Viewer | null; error: string | null };

const claims = z.object({
  sub: z.string().min(1).max(64),
  role: z.enum(['customer', 'admin']).default('customer'),
});

export class TokenService {
  private readonly key: Uint8Array;
  private readonly jwks?: ReturnType<typeof createRemoteJWKSet>;

  /**
   * `external` pins the issuer and audience of identity-provider tokens: a provider's keys usually
   * sign tokens for many applications, and only those meant for us may pass.
   */
  constructor(secret: string, jwksUrl?: string, private readonly external: { issuer?: string; audience?: string; allowAdmin?: boolean } = {}) {
    this.key = new TextEncoder().encode(secret);
    if (jwksUrl) this.jwks = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000 });
  }

  async sign(subject: string, role: Role, ttlSeconds = 24 * 3600): Promise<{ token: string; expiresAt: Date }> {
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
    let payload: JWTPayload;
    const alg = peekAlg(token);
    if (alg === 'HS256') {
      ({ payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'] }));
      const parsed = claims.parse(payload);
      return { id: parsed.sub, role: parsed.role };
    }
    if (this.jwks && (alg === 'RS256' || alg === 'ES256')) {
      ({ payload } = await jwtVerify(token, this.jwks, { algorithms: ['RS256', 'ES256'], issuer: this.external.issuer, audience: this.external.audience }));
      const parsed = claims.parse(payload);
      // A provider's `role` claim makes an admin only when the operator says the provider may.
      return { id: parsed.sub, role: parsed.role === 'admin' && this.external.allowAdmin ? 'admin' : 'customer' };
    }
    throw new Error('unsupported token algorithm');
  }

  /** Reads an `Authorization` header value (or a graphql-ws connection param). */
  async authenticate(header: string | null | undefined): Promise<Authentication> {
    if (!header) return { viewer: null, error: null };
    const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!m) return { viewer: null, error: 'The Authorization header must be "Bearer <token>".' };
    try {
      return { viewer: await this.verify(m[1]), error: null };
    } catch {
      return { viewer: null, error: 'The token is invalid or expired.' };
    }
  }
}

function peekAlg(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
    return typeof header?.alg === 'string' ? header.alg : undefined;
  } catch {
    return undefined;
  }
}
