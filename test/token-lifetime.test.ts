import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_COMMAND } from '../load/harness/server-process.js';
import { ConfigError, parseConfig } from '../src/config.js';
import { TokenService } from '../src/services/auth.js';
import { startTestServer, type TestServer } from './support/harness.js';

// Issue 17 g, 9: an HS256 token without exp was accepted forever; an 8-character JWT_SECRET was
// accepted in production. Tokens must carry exp and live at most JWT_MAX_LIFETIME_SECONDS.

const root = fileURLToPath(new URL('..', import.meta.url));
const now = () => Math.floor(Date.now() / 1000);
const DAY = 24 * 3600;
const ME = `{ me { id } }`;

describe('identity-provider (JWKS) tokens', () => {
  let jwks: Server;
  let url: string;
  let privateKey: CryptoKey;
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey as CryptoKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    jwks = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => new Promise((resolve) => jwks?.close(resolve)));

  const idp = (times: { iat?: number; exp?: number }) => {
    const jwt = new SignJWT({ role: 'customer' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('idp-user');
    if (times.iat !== undefined) jwt.setIssuedAt(times.iat);
    if (times.exp !== undefined) jwt.setExpirationTime(times.exp);
    return jwt.sign(privateKey);
  };

  it('refuses one without exp, or valid longer than the maximum; takes one within it', async () => {
    const tokens = new TokenService('local-secret', url);
    const refused = {
      noExp: await idp({ iat: now() }),
      noExpNoIat: await idp({}),
      dayAndASecond: await idp({ iat: now(), exp: now() + DAY + 1 }),
      aYearWithoutIat: await idp({ exp: now() + 365 * DAY }),
    };
    for (const [what, token] of Object.entries(refused)) {
      expect({ what, auth: await tokens.authenticate(`Bearer ${token}`) }).toEqual({ what, auth: { viewer: null, error: 'The token is invalid or expired.' } });
    }
    expect(await tokens.verify(await idp({ iat: now(), exp: now() + 600 }))).toEqual({ id: 'idp-user', role: 'customer' });
    expect(await tokens.verify(await idp({ iat: now(), exp: now() + DAY }))).toEqual({ id: 'idp-user', role: 'customer' });
    // The configured maximum applies to them too.
    const strict = new TokenService('local-secret', url, {}, 300);
    await expect(strict.verify(await idp({ iat: now(), exp: now() + 600 }))).rejects.toThrow(/lifetime/);
  });
});

describe('JWT_SECRET and JWT_MAX_LIFETIME_SECONDS', () => {
  const production = { NODE_ENV: 'production', DATA_KEY: randomBytes(32).toString('base64') };

  it('production refuses a JWT_SECRET under 32 bytes, and takes one of 32', () => {
    for (const secret of ['8charsec', 'a'.repeat(31), 'é'.repeat(15)]) {
      expect(() => parseConfig({ ...production, JWT_SECRET: secret }), secret).toThrow(/JWT_SECRET: must be at least 32 bytes/);
    }
    expect(parseConfig({ ...production, JWT_SECRET: 'a'.repeat(32) }).JWT_SECRET).toHaveLength(32);
    // Outside production the short development secrets still work.
    expect(parseConfig({ NODE_ENV: 'development', JWT_SECRET: '8charsec' }).JWT_SECRET).toBe('8charsec');
  });

  it('JWT_MAX_LIFETIME_SECONDS defaults to 24 h and is bounded', () => {
    expect(parseConfig({}).JWT_MAX_LIFETIME_SECONDS).toBe(DAY);
    expect(parseConfig({ JWT_MAX_LIFETIME_SECONDS: '3600' }).JWT_MAX_LIFETIME_SECONDS).toBe(3600);
    expect(() => parseConfig({ JWT_MAX_LIFETIME_SECONDS: '0' })).toThrow(ConfigError);
  });

  it('the server process exits 1 naming JWT_SECRET when production gets an 8-character one', async () => {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['JWT_SECRET', 'DATA_KEY', 'NODE_ENV', 'PORT'].includes(k))) as Record<string, string>;
    const child = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], {
      cwd: root, env: { ...base, ...production, JWT_SECRET: '8charsec', PORT: '0', LOG_LEVEL: 'silent' }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(killer);
    expect(code).toBe(1);
    expect(stderr).toMatch(/JWT_SECRET: must be at least 32 bytes when NODE_ENV=production/);
  });
});

describe('a server with JWT_MAX_LIFETIME_SECONDS=3600', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('tokenlife', { JWT_MAX_LIFETIME_SECONDS: '3600', RATE_LIMIT_ENABLED: 'false' });
  });
  afterAll(() => t?.close());

  it('issues login sessions of an hour and refuses tokens without exp or valid longer', async () => {
    const email = `life-${randomBytes(4).toString('hex')}@example.com`;
    const reg = await t.client.gql(`mutation($e: String!) { register(email: $e, password: "a-long-enough-password") { token expiresAt } }`, { e: email });
    const { iat, exp } = decodeJwt(reg.data.register.token);
    expect(exp! - iat!).toBe(3600);
    expect((await t.client.gql(ME, {}, reg.data.register.token)).data.me).not.toBeNull();

    const key = new TextEncoder().encode(t.app.config.JWT_SECRET);
    const hs = (build: (j: SignJWT) => SignJWT) => build(new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject('forever')).sign(key);
    for (const token of [await hs((j) => j.setIssuedAt()), await hs((j) => j.setIssuedAt().setExpirationTime('2h')), await hs((j) => j.setExpirationTime('1d'))]) {
      const r = await t.client.gql(ME, {}, token);
      expect(r.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(r.data?.me ?? null).toBeNull();
    }
    expect((await t.client.gql(ME, {}, await hs((j) => j.setIssuedAt().setExpirationTime('1h')))).data.me.id).toBe('forever');
  });
});

describe('npm run token', () => {
  const run = promisify(execFile);
  const token = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, ['--import', 'tsx', 'src/cli/token.ts', ...args], { cwd: root, env: { ...process.env, NODE_ENV: 'development', JWT_SECRET: 'cli-test-secret', ...env } });

  it('prints tokens with exp: 24 h by default, --ttl up to the maximum; refuses a longer --ttl', async () => {
    const plain = decodeJwt((await token(['alice'])).stdout.trim());
    expect(plain).toMatchObject({ sub: 'alice', role: 'customer' });
    expect(plain.exp! - plain.iat!).toBe(DAY);
    const short = decodeJwt((await token(['--ttl', '60', 'ops', '--admin'])).stdout.trim());
    expect(short).toMatchObject({ sub: 'ops', role: 'admin' });
    expect(short.exp! - short.iat!).toBe(60);
    const capped = decodeJwt((await token(['bob'], { JWT_MAX_LIFETIME_SECONDS: '3600' })).stdout.trim());
    expect(capped.exp! - capped.iat!).toBe(3600);
    for (const ttl of [String(DAY + 1), '0', 'abc']) {
      const failed = await token(['alice', '--ttl', ttl]).then(() => null, (err: { code: number; stderr: string }) => err);
      expect(failed?.code, ttl).toBe(2);
      expect(failed?.stderr).toMatch(/--ttl must be a whole number of seconds from 1 to 86400/);
    }
  });
});
