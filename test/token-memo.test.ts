import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_REMEMBERED_TOKENS, TokenService } from '../src/services/auth.js';

// TokenService remembers the tokens it verified (a storm's customers retry with the same token),
// at most MAX_REMEMBERED_TOKENS of them, the oldest forgotten first. A forgotten token is simply
// verified again; a remembered one still has its times checked on every use.

const SECRET = 'token-memo-test-secret';

/** The memo's size, read from the private map: the bound is what this file is about. */
const remembered = (tokens: TokenService) => (tokens as unknown as { verified: Map<string, unknown> }).verified.size;

async function signMany(tokens: TokenService, count: number, ttlSeconds = 3600): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => tokens.sign(`customer-${i}`, 'customer', ttlSeconds).then((t) => t.token)));
}

describe('TokenService memo of verified tokens', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it(`never holds more than ${MAX_REMEMBERED_TOKENS} tokens, and a forgotten one still verifies`, async () => {
    const tokens = new TokenService(SECRET);
    const all = await signMany(tokens, MAX_REMEMBERED_TOKENS + 500);
    for (const [i, token] of all.entries()) {
      expect(await tokens.authenticate(`Bearer ${token}`)).toEqual({ viewer: { id: `customer-${i}`, role: 'customer' }, error: null });
      expect(remembered(tokens)).toBeLessThanOrEqual(MAX_REMEMBERED_TOKENS);
    }
    expect(remembered(tokens)).toBe(MAX_REMEMBERED_TOKENS);

    // The first 500 were forgotten (oldest first); each is verified again from its text.
    expect(await tokens.verify(all[0])).toEqual({ id: 'customer-0', role: 'customer' });
    expect(await tokens.authenticate(`Bearer ${all[499]}`)).toEqual({ viewer: { id: 'customer-499', role: 'customer' }, error: null });
    expect(remembered(tokens)).toBe(MAX_REMEMBERED_TOKENS);

    // A forged token is refused whether or not its customer's real token is remembered.
    const [header, , signature] = all[all.length - 1].split('.');
    const admin = Buffer.from(JSON.stringify({ sub: `customer-${all.length - 1}`, role: 'admin', exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url');
    expect(await tokens.authenticate(`Bearer ${header}.${admin}.${signature}`)).toEqual({ viewer: null, error: 'The token is invalid or expired.' });
  });

  it('refuses a remembered token once it has expired', async () => {
    const tokens = new TokenService(SECRET);
    const [token] = await signMany(tokens, 1, 60);
    expect(await tokens.verify(token)).toEqual({ id: 'customer-0', role: 'customer' });
    expect(remembered(tokens)).toBe(1);

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);
    await expect(tokens.verify(token)).rejects.toThrow('token expired');
    expect(await tokens.authenticate(`Bearer ${token}`)).toEqual({ viewer: null, error: 'The token is invalid or expired.' });
  });
});
