import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { JWT_SECRET } from './env.ts';

/**
 * An HS256 bearer token like the server's TokenService signs (claims sub, role, iat, exp), made in
 * the VU so a script needs no token file: customer i of the run is `<prefix>-<i>`.
 */
export function signToken(subject: string, role: 'customer' | 'admin', ttlSeconds = 6 * 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const header = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
  const payload = encoding.b64encode(JSON.stringify({ role, sub: subject, iat: now, exp: now + ttlSeconds }), 'rawurl');
  const signature = crypto.hmac('sha256', JWT_SECRET, `${header}.${payload}`, 'base64rawurl');
  return `${header}.${payload}.${signature}`;
}
