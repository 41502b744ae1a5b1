import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, preparedIsolation, REDIS_URL } from './support/harness.js';
import { Readiness } from '../src/server/readiness.js';
import { FaultProxy, spawnApi, type ApiProcess, type ProxyMode } from './support/processes.js';

/**
 * `GET /ready` on a real process whose PostgreSQL and Redis are reached through proxies the test
 * controls. The contract: 200 only while both answer, else 503 with a short reason naming the
 * dependency, within 1 s even when a dependency hangs; `/health` 200 whatever happens.
 */
const PG_URL = new URL(process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const REDIS = new URL(REDIS_URL);
// The contract's bound on every answer of /ready.
const WITHIN_MS = 1000;

interface Answer {
  status: number;
  body: string;
  ms: number;
}

const cleanups: (() => Promise<unknown>)[] = [];
let api: ApiProcess;
let pgProxy: FaultProxy;
let redisProxy: FaultProxy;
let healthPoller: { stop(): Promise<Answer[]> };

/** One request, timed from send to the last byte of the body; no answer within 5 s is status 0. */
async function get(path: string): Promise<Answer> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${api.url}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = await r.text();
    return { status: r.status, body, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    return { status: 0, body: `no answer: ${(err as Error).message}`, ms: Math.round(performance.now() - t0) };
  }
}

/** `/health` every 100 ms from now until `stop()`, which returns every answer. */
function pollHealth(): { stop(): Promise<Answer[]> } {
  const answers: Answer[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      answers.push(await get('/health'));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return answers;
    },
  };
}

const summary = (answers: Answer[]) => answers.map((a) => `${a.status} ${a.ms}ms ${a.body.slice(0, 80)}`);

/** Every answer is 503 naming exactly `reason`, in time, without driver or error text. */
function expectUnavailable(answers: Answer[], reason: string): void {
  const wrong = answers.filter((a) => a.status !== 503 || a.ms >= WITHIN_MS);
  expect(summary(wrong), `of ${answers.length} answers`).toEqual([]);
  for (const a of answers) {
    expect(JSON.parse(a.body)).toEqual({ status: 'unavailable', reason });
    expect(a.body).not.toMatch(/ECONN|EPIPE|refused|connect|closed|timeout|timed out|error|stream|socket|\bat\b|\d+\.\d+\.\d+\.\d+/i);
  }
}

/** Sequential calls spread over ~2 s, then a burst of concurrent ones: all must be 503 `reason` within 1 s. */
async function expectOutage(reason: string): Promise<void> {
  const sequential: Answer[] = [];
  for (let i = 0; i < 6; i++) {
    sequential.push(await get('/ready'));
    await new Promise((r) => setTimeout(r, 300));
  }
  expectUnavailable(sequential, reason);
  const burst = await Promise.all(Array.from({ length: 50 }, () => get('/ready')));
  expectUnavailable(burst, reason);
  console.log(`/ready during the outage (${reason}): sequential ${sequential.map((a) => a.ms).join(' ')} ms; ` +
    `50 concurrent: slowest ${Math.max(...burst.map((a) => a.ms))} ms`);
  const health = await get('/health');
  expect([health.status, health.body]).toEqual([200, '{"status":"ok"}']);
  expect(health.ms).toBeLessThan(WITHIN_MS);
}

/** Puts the proxies back to forwarding and waits (a few seconds at most) for 200, every answer still within 1 s. */
async function expectRecovery(): Promise<void> {
  await pgProxy.set('forward');
  await redisProxy.set('forward');
  const seen: Answer[] = [];
  const t0 = Date.now();
  await eventually(async () => {
    const a = await get('/ready');
    seen.push(a);
    return a.status === 200;
  }, 6000, 100);
  console.log(`ready again ${Date.now() - t0} ms after the restore (${seen.length} calls, slowest ${Math.max(...seen.map((a) => a.ms))} ms)`);
  expect(summary(seen.filter((a) => a.ms >= WITHIN_MS || (a.status !== 200 && a.status !== 503)))).toEqual([]);
}

beforeAll(async () => {
  const iso = await preparedIsolation('readiness', cleanups);
  pgProxy = await FaultProxy.start({ host: PG_URL.hostname, port: Number(PG_URL.port || 5432) });
  redisProxy = await FaultProxy.start({ host: REDIS.hostname, port: Number(REDIS.port || 6379) });
  cleanups.push(() => pgProxy.close(), () => redisProxy.close());
  api = await spawnApi({
    DATABASE_URL: pgProxy.urlFor(iso.databaseUrl), REDIS_URL: redisProxy.urlFor(REDIS_URL), REDIS_PREFIX: iso.redisPrefix,
    SEED_SAMPLE_SALE: 'false', LOG_LEVEL: 'warn', RATE_LIMIT_ENABLED: 'false',
  });
  // Stopped before the proxies close (cleanups run in reverse).
  cleanups.push(() => api.stop());
  healthPoller = pollHealth();
}, 60_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('GET /ready', () => {
  it('answers 200 fast while PostgreSQL and Redis answer', async () => {
    for (let i = 0; i < 5; i++) {
      const a = await get('/ready');
      expect([a.status, JSON.parse(a.body)]).toEqual([200, { status: 'ready' }]);
      expect(a.ms).toBeLessThan(WITHIN_MS);
    }
    const burst = await Promise.all(Array.from({ length: 50 }, () => get('/ready')));
    expect(summary(burst.filter((a) => a.status !== 200 || a.ms >= WITHIN_MS))).toEqual([]);
  });

  const outages: { dependency: 'redis' | 'postgresql'; mode: ProxyMode }[] = [];
  for (const mode of ['blackhole', 'close', 'refuse'] as const) {
    outages.push({ dependency: 'redis', mode }, { dependency: 'postgresql', mode });
  }
  for (const { dependency, mode } of outages) {
    it(`with ${dependency} proxy in "${mode}": 503 "${dependency}" within 1 s (also to 50 concurrent calls), and 200 again once it is back`, async () => {
      await (dependency === 'redis' ? redisProxy : pgProxy).set(mode);
      try {
        await expectOutage(dependency);
      } finally {
        await expectRecovery();
      }
    }, 30_000);
  }

  it('with both black-holed: 503 naming both within 1 s, and 200 again once they are back', async () => {
    await pgProxy.set('blackhole');
    await redisProxy.set('blackhole');
    try {
      await expectOutage('postgresql, redis');
    } finally {
      await expectRecovery();
    }
  }, 30_000);

  it('kept /health at 200 within 1 s throughout, and the process alive', async () => {
    const health = await healthPoller.stop();
    expect(health.length).toBeGreaterThan(20);
    expect(summary(health.filter((a) => a.status !== 200 || a.ms >= WITHIN_MS))).toEqual([]);
    const exited = await Promise.race([api.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 10))]);
    expect(exited, api.tail()).toBe(false);
  });
});

describe('Readiness (the check behind /ready)', () => {
  const never = () => new Promise<never>(() => undefined);
  const hangingProbe = () => {
    let calls = 0;
    return {
      probe: () => {
        calls++;
        return never();
      },
      calls: () => calls,
    };
  };

  it('shares one round among concurrent calls, and names failures without their message', async () => {
    let pg = 0;
    let redis = 0;
    const r = new Readiness({
      probes: {
        postgresql: async () => void pg++,
        redis: async () => {
          redis++;
          throw new Error('connect ECONNREFUSED 10.0.0.1:6379');
        },
      },
    });
    const answers = await Promise.all(Array.from({ length: 20 }, () => r.check()));
    expect(answers.every((a) => JSON.stringify(a) === '["redis"]')).toBe(true);
    expect([pg, redis]).toEqual([1, 1]);
    await r.check();
    expect([pg, redis]).toEqual([2, 2]);
  });

  it('answers within the timeout while a probe hangs, and does not start another while it is pending', async () => {
    const hang = hangingProbe();
    const changes: string[] = [];
    const r = new Readiness({
      probes: { postgresql: async () => undefined, redis: hang.probe },
      timeoutMs: 100,
      staleAfterMs: 60_000,
      onChange: (dependency, ok, detail) => changes.push(`${dependency} ${ok} ${detail}`),
    });
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      expect(await r.check()).toEqual(['redis']);
      expect(performance.now() - t0).toBeLessThan(300);
    }
    expect(hang.calls()).toBe(1);
    // The log hears what happened, once; the answer never does.
    expect(changes).toEqual(['redis false no answer within 100 ms']);
  });

  it('gives up on a probe pending longer than staleAfterMs and starts a new one', async () => {
    let calls = 0;
    let answer = false;
    const r = new Readiness({
      probes: {
        redis: () => {
          calls++;
          return answer ? Promise.resolve() : never();
        },
      },
      timeoutMs: 50,
      staleAfterMs: 200,
    });
    expect(await r.check()).toEqual(['redis']);
    answer = true;
    expect(await r.check()).toEqual(['redis']);
    expect(calls).toBe(1);
    await new Promise((res) => setTimeout(res, 250));
    expect(await r.check()).toEqual([]);
    expect(calls).toBe(2);
  });
});
