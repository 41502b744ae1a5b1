import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import type { BenchContext } from './bench-context.js';
import { benchIsolation, deleteRedisKeys, dropBenchDatabase, REDIS_URL } from './bench-isolation.js';
import type { BenchOptions } from './bench-options.js';
import { assembleReport, type BenchReport } from './bench-report.js';
import { adminToken, customerTokens } from './customer-tokens.js';
import { GraphqlClient } from './graphql-client.js';
import { createProgress, type Progress } from './progress.js';
import { benchmarkReserveScript, type RedisBenchmarkResult } from './redis-benchmark.js';
import { failedResult, skippedResult, type ScenarioResult } from './scenario-result.js';
import { runBareCeiling } from './scenarios/bare-ceiling.js';
import { runPurchaseStorm } from './scenarios/purchase-storm.js';
import { runReserveConfirm } from './scenarios/reserve-confirm.js';
import { runStockReads } from './scenarios/stock-reads.js';
import { runSubscribers } from './scenarios/subscribers.js';
import { API_COMMAND, REPO_ROOT, startServerProcess, type ServerProcess } from './server-process.js';

/**
 * One bench run: starts the API (`src/main.ts`) on its own database and Redis prefix, runs the
 * chosen scenarios one after another, audits each, then the bare ceiling and redis-benchmark, and
 * always drops the database and the Redis keys it made.
 */
export async function runBench(opts: BenchOptions, progress: Progress = createProgress(opts.progress)): Promise<BenchReport> {
  const startedAt = new Date();
  const loadAtStart = Math.round(loadavg()[0] * 100) / 100;
  const iso = benchIsolation();
  const scenarios: ScenarioResult[] = [];
  let redisBenchmark: RedisBenchmarkResult | null = null;
  let server: ServerProcess | null = null;
  let setup: GraphqlClient | null = null;
  const want = (s: string) => opts.scenarios.has(s);
  const apiScenarios = ['storm-closed', 'storm-open', 'flow', 'reads', 'subscribers'].filter(want);

  try {
    if (apiScenarios.length) {
      // As `npm start` and the Dockerfile run it; `npm run bench` builds dist/ first.
      const nodeArgs: string[] = [...API_COMMAND.nodeArgs];
      if (opts.cpuProfDir) {
        const dir = resolve(REPO_ROOT, opts.cpuProfDir);
        mkdirSync(dir, { recursive: true });
        nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
      }
      progress.log(`starting the API (WORKERS=${opts.workers}) on ${iso.databaseUrl.replace(/^.*\//, '')}, prefix ${iso.redisPrefix}`);
      server = await startServerProcess({
        entry: API_COMMAND.entry, host: opts.host, readyPath: '/ready', nodeArgs,
        env: {
          DATABASE_URL: iso.databaseUrl, REDIS_URL, REDIS_PREFIX: iso.redisPrefix, SEED_SAMPLE_SALE: 'false', LOG_LEVEL: 'warn',
          WORKERS: String(opts.workers), NODE_ENV: 'development', GRAPHIQL: 'false',
          // The whole load comes from one loopback address; real storms come from many, so the
          // per-IP guard is lifted and the per-customer one stays.
          RATE_LIMIT_BUYING_PER_IP: '10000000/1s',
          // Likewise anonymous reads (10,000+/s) and subscriptions (10,000 sockets) per address.
          RATE_LIMIT_QUERY_PER_IP: 'off',
          RATE_LIMIT_SUBSCRIBE_PER_IP: 'off',
          // And the per-address connection cap (the subscribers scenario opens 10,000 sockets).
          HTTP_MAX_CONNECTIONS_PER_ADDRESS: '0',
        },
      });
      setup = new GraphqlClient(server.origin, 8);
      progress.log(`signing ${opts.customers} customer tokens`);
      const ctx: BenchContext = {
        opts, server, setup, admin: await adminToken(), tokens: await customerTokens(opts.customers, `cust-${randomBytes(3).toString('hex')}`),
        databaseUrl: iso.databaseUrl, progress, runTag: randomBytes(4).toString('hex'),
      };
      if (opts.warmupAttempts > 0) {
        progress.log(`warming up: ${opts.warmupAttempts} purchase attempts on a sale of their own (not reported)`);
        // Its own run tag: idempotency keys are per customer, and the storm's must not replay these.
        const warm = await runPurchaseStorm({ ...ctx, runTag: `${ctx.runTag}w`, opts: { ...opts, attempts: opts.warmupAttempts, stock: Math.min(opts.stock, 100) } }, 'closed');
        if (warm.audit && !warm.audit.passed) throw new Error('the warm-up sale failed its correctness audit');
      }
      const steps: [string, () => Promise<ScenarioResult>][] = [
        ['storm-closed', () => runPurchaseStorm(ctx, 'closed')],
        ['storm-open', () => runPurchaseStorm(ctx, 'open')],
        ['flow', () => runReserveConfirm(ctx)],
        ['reads', () => runStockReads(ctx)],
        ['subscribers', () => runSubscribers(ctx)],
      ];
      for (const [name, step] of steps) {
        if (!want(name)) continue;
        // One scenario failing (a server that fell over, a sale that would not sell out) is
        // reported as such; the others still run and the cleanup still happens.
        const result = await step().catch((err) => failedResult(name, err));
        scenarios.push(result);
        progress.log(summaryLine(result));
        // Let the ledger drainer and the GC settle so one scenario's tail does not land in the next.
        await new Promise((r) => setTimeout(r, 1000));
      }
      await setup.close();
      setup = null;
      const code = await server.stop();
      server = null;
      if (code !== 0) progress.log(`warning: the API exited with ${code} on SIGTERM`);
    }
    for (const [name, mode] of [['ceiling', 'closed'], ['ceiling-open', 'open']] as const) {
      if (!want(name)) continue;
      const result = await runBareCeiling(opts, { redisUrl: REDIS_URL, prefix: iso.ceilingPrefix, progress }, mode).catch((err) => failedResult(name, err));
      scenarios.push(result);
      progress.log(summaryLine(result));
    }
    if (want('redis-benchmark')) {
      redisBenchmark = await benchmarkReserveScript({ redisUrl: REDIS_URL, prefix: iso.ceilingPrefix, requests: opts.attempts, customers: opts.customers, stock: opts.stock, perUserLimit: opts.perUserLimit });
      progress.log(redisBenchmark.skipped ? `redis-benchmark skipped: ${redisBenchmark.skipped}` : `redis-benchmark reserve script: ${redisBenchmark.requestsPerSecond}/s`);
    }
  } finally {
    await setup?.close().catch(() => undefined);
    if (server) await server.stop().catch(() => undefined);
    await dropBenchDatabase(iso.databaseUrl).catch((err) => progress.log(`cleanup: ${String(err)}`));
    await deleteRedisKeys(iso.redisPrefix).catch((err) => progress.log(`cleanup: ${String(err)}`));
  }
  for (const name of apiScenarios) if (!scenarios.some((s) => s.name === name)) scenarios.push(skippedResult(name, '', 'did not run'));
  return assembleReport({ startedAt, loadAtStart, opts, scenarios, redisBenchmark });
}

function summaryLine(s: ScenarioResult): string {
  if (s.skipped) return `  ${s.name}: skipped — ${s.skipped}`;
  const audit = s.audit ? `, audit ${s.audit.passed ? 'pass' : 'FAIL'}` : '';
  const cpu = s.serverCpuMsPerRequest !== undefined ? `, server CPU ${s.serverCpuMsPerRequest} ms/req, load generator ${s.loadCpuMsPerRequest} ms/req` : '';
  return `  ${s.name}: ${s.throughput}/s, p50 ${s.latency.p50} ms, p95 ${s.latency.p95} ms, p99 ${s.latency.p99} ms, max ${s.latency.max} ms${cpu}${audit}`;
}
