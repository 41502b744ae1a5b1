import { TokenService } from '../../src/services/auth.js';

/** The default development secret the spawned servers run with (see src/config.ts). */
export const BENCH_JWT_SECRET = process.env.JWT_SECRET ?? 'dev-secret-change-me';

/**
 * Signs every customer's bearer token before the clock starts: a phone has its token already, and
 * signing 50,000 HS256 tokens (~1 s) must not be counted as server time.
 */
export async function customerTokens(count: number, namespace: string): Promise<string[]> {
  const tokens = new TokenService(BENCH_JWT_SECRET);
  const out = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = (await tokens.sign(`${namespace}-${i}`, 'customer', 6 * 3600)).token;
  return out;
}

export async function adminToken(): Promise<string> {
  return (await new TokenService(BENCH_JWT_SECRET).sign('bench-admin', 'admin', 6 * 3600)).token;
}
