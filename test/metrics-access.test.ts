import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { deleteRedisPrefix, dropDatabase, isolation, REDIS_URL, startTestServer, type TestServer } from './support/harness.js';
import { freePort, spawnApi, type ApiProcess } from './support/processes.js';

// Issue 17 h, 11. The contract: "Outside production it is open on the API port; in production it
// is served on METRICS_PORT or requires Authorization: Bearer <METRICS_TOKEN>."

const METRICS_TOKEN = `metrics-${randomBytes(16).toString('hex')}`;

/** A production server process: secrets of production strength, its own database and prefix. */
async function production(label: string, env: Record<string, string>) {
  const iso = isolation(label);
  const api = await spawnApi({
    NODE_ENV: 'production',
    JWT_SECRET: randomBytes(32).toString('base64'),
    DATA_KEY: randomBytes(32).toString('base64'),
    DATABASE_URL: iso.databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: iso.redisPrefix,
    LOG_LEVEL: 'info',
    ...env,
  });
  return { api, iso };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('/metrics in production', () => {
  const started: { api: ApiProcess; iso: ReturnType<typeof isolation> }[] = [];
  let withToken: ApiProcess;
  let withPort: ApiProcess;
  let withBoth: ApiProcess;
  let withNeither: ApiProcess;
  let port: number;
  let bothPort: number;
  beforeAll(async () => {
    [port, bothPort] = [await freePort(), await freePort()];
    const servers = await Promise.all([
      production('mtoken', { METRICS_TOKEN }),
      production('mport', { METRICS_PORT: String(port) }),
      production('mboth', { METRICS_PORT: String(bothPort), METRICS_TOKEN }),
      production('mneither', {}),
    ]);
    started.push(...servers);
    [withToken, withPort, withBoth, withNeither] = servers.map((s) => s.api);
  });
  afterAll(async () => {
    await Promise.all(started.map((s) => s.api.stop()));
    for (const { iso } of started) {
      await dropDatabase(iso.databaseUrl);
      await deleteRedisPrefix(iso.redisPrefix);
    }
  });

  it('METRICS_TOKEN: the API port serves /metrics only to Authorization: Bearer <METRICS_TOKEN>', async () => {
    const none = await get(`${withToken.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.body).not.toContain('nodejs_');
    for (const wrong of [`${METRICS_TOKEN}x`, METRICS_TOKEN.slice(0, -1), 'x', '']) {
      expect((await get(`${withToken.url}/metrics`, bearer(wrong))).status, wrong).toBe(401);
    }
    expect((await get(`${withToken.url}/metrics`, { authorization: `Basic ${Buffer.from(`x:${METRICS_TOKEN}`).toString('base64')}` })).status).toBe(401);
    const ok = await get(`${withToken.url}/metrics`, bearer(METRICS_TOKEN));
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toMatch(/^text\/plain/);
    expect(ok.body).toContain('process_cpu_seconds_total');
    expect(ok.body).toContain('flashsale_websocket_connections');
    // The rest of the API port is untouched.
    expect((await get(`${withToken.url}/health`)).status).toBe(200);
  });

  it('METRICS_PORT: served there, not on the API port', async () => {
    expect((await get(`${withPort.url}/metrics`)).status).toBe(404);
    expect((await get(`${withPort.url}/metrics`, bearer(METRICS_TOKEN))).status).toBe(404);
    const ok = await get(`http://127.0.0.1:${port}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('process_cpu_seconds_total');
    // The metrics port serves nothing else.
    expect((await get(`http://127.0.0.1:${port}/graphql?query=%7BserverTime%7D`)).status).toBe(404);
    expect((await get(`http://127.0.0.1:${port}/health`)).status).toBe(404);
  });

  it('both: the metrics port asks for the token too', async () => {
    expect((await get(`http://127.0.0.1:${bothPort}/metrics`)).status).toBe(401);
    expect((await get(`http://127.0.0.1:${bothPort}/metrics`, bearer(METRICS_TOKEN))).status).toBe(200);
    expect((await get(`${withBoth.url}/metrics`, bearer(METRICS_TOKEN))).status).toBe(200);
    expect((await get(`${withBoth.url}/metrics`)).status).toBe(401);
  });

  it('neither: /metrics is served nowhere, and the log says how to turn it on', async () => {
    const r = await get(`${withNeither.url}/metrics`);
    expect(r.status).toBe(404);
    expect(r.body).not.toContain('process_cpu_seconds_total');
    expect(withNeither.tail()).toMatch(/\/metrics is not served.*METRICS_PORT.*METRICS_TOKEN/);
    expect((await get(`${withNeither.url}/ready`)).status).toBe(200);
  });
});

describe('/metrics outside production', () => {
  let t: TestServer;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    t = await startTestServer('mdev', { METRICS_TOKEN, METRICS_PORT: String(port) });
  });
  afterAll(() => t?.close());

  it('is open on the API port (a token configured or not) and on METRICS_PORT', async () => {
    expect(t.app.config.NODE_ENV).not.toBe('production');
    const api = await get(`${t.app.url}/metrics`);
    expect(api.status).toBe(200);
    expect(api.body).toContain('process_cpu_seconds_total');
    expect((await get(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
  });
});

describe('configuration', () => {
  it('refuses a METRICS_PORT equal to PORT and a METRICS_TOKEN under 16 characters', () => {
    expect(() => parseConfig({ PORT: '4000', METRICS_PORT: '4000' })).toThrow(/METRICS_PORT: must differ from PORT/);
    expect(() => parseConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN: must be at least 16 characters/);
    expect(parseConfig({ PORT: '4000', METRICS_PORT: '9464', METRICS_TOKEN: METRICS_TOKEN })).toMatchObject({ METRICS_PORT: 9464, METRICS_TOKEN });
  });
});
