import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { DOCS, brief, send } from './api.js';
import { settleAndCheck } from './checker.js';
import type { Cmd } from './commands.js';
import { note, Violation, type Run } from './context.js';
import { cleanUpRun, endFaults } from './faults.js';
import { commandArb, universeArb } from './generators.js';
import { ChaosWorld, HOLD_SECONDS } from './infra.js';
import { newModel, type Universe } from './model.js';

export interface ChaosOptions {
  /** Runs to execute (fast-check's numRuns). */
  runs: number;
  /** Commands per run at most. */
  steps: number;
  seed?: number;
  /** fast-check's counterexample path, to replay a failure (with its seed). */
  path?: string;
  /** fast-check's commands replayPath (printed with a failing command list), with seed and path. */
  replayPath?: string;
  /** Stop starting runs after this long (the remaining ones pass without running). */
  timeBudgetMs?: number;
  /** Stop shrinking this long after the first failure (the best counterexample so far is reported). */
  shrinkBudgetMs?: number;
  /** Directory of the API build to run (`dist/main.js`); the repository by default. */
  apiRoot?: string;
  /** Tolerate INTERNAL_SERVER_ERROR answers while PostgreSQL is cut (counted instead). */
  lenientOutageErrors?: boolean;
  /** Command groups not to generate (see COMMAND_GROUPS), to look at one bug class at a time. */
  exclude?: string[];
  /** Print every run's trace, not only a failing one's. */
  traceRuns?: boolean;
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  failed: boolean;
  /** fast-check's report (seed, path, shrunk commands, error), when failed. */
  message: string;
  /** The command that replays the shrunk counterexample, when failed. */
  replay: string | null;
  executedRuns: number;
  elapsedMs: number;
  stats: Map<string, number>;
}

async function startRun(world: ChaosWorld, u: Universe, index: number, lenient: boolean): Promise<Run> {
  await Promise.all(world.apis.map((a) => a.ensureRunning()));
  await world.bothReady();
  const tag = `r${index}${randomBytes(3).toString('hex')}`;
  const api = world.apis[0].client;
  const items = [];
  for (const [n, stock] of u.stocks.entries()) {
    const p = await send(api, DOCS.createProduct, { input: { sku: `CHAOS-${tag}-${n}`, name: `Chaos ${n}`, priceCents: 10_000, currency: 'USD' } }, world.admin);
    if (p.kind !== 'data' || !p.data?.createProduct) throw new Error(`createProduct failed: ${brief(p)}`);
    items.push({ productId: p.data.createProduct.id, priceCents: 5000, stock });
  }
  const now = Date.now();
  const s = await send(api, DOCS.scheduleSale, {
    input: {
      name: `Chaos ${tag}`, startsAt: new Date(now - 1000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(),
      perUserLimit: u.perUserLimit, holdSeconds: HOLD_SECONDS, waitingRoom: false, items,
    },
  }, world.admin);
  if (s.kind !== 'data' || !s.data?.scheduleSale) throw new Error(`scheduleSale failed: ${brief(s)}`);
  const saleId: string = s.data.scheduleSale.id;
  const itemIds: string[] = s.data.scheduleSale.items.map((i: { id: string }) => i.id);
  const customers = Array.from({ length: u.customers }, (_, c) => `${tag}-c${c}`);
  const tokens = await Promise.all(customers.map(async (c) => (await world.tokens.sign(c, 'customer')).token));
  return {
    world, model: newModel(u, itemIds), index, saleId, itemIds, customers, tokens, snapshots: [], inflight: null, pgCut: null,
    lenientOutageErrors: lenient, trace: [], startedAt: Date.now(),
  };
}

function describeUniverse(u: Universe): string {
  return `stock ${u.stocks.join('+')}, ${u.customers} customers, limit ${u.perUserLimit}${u.replicaFaults ? ', replica faults' : ''}`;
}

/**
 * Runs the chaos test: fast-check generates a universe and a command sequence per run, each run
 * gets a fresh sale on the shared processes, every command is followed by the always-true checks,
 * and the run ends with settling and the eventually-true checks. A failure is shrunk (within the
 * budget) and reported with fast-check's seed, path and command list.
 */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const seed = opts.seed ?? randomBytes(4).readInt32LE();
  const started = Date.now();
  log(`chaos: seed ${seed}${opts.path ? `, path ${opts.path}` : ''}, up to ${opts.runs} runs of up to ${opts.steps} commands${opts.timeBudgetMs ? `, ${Math.round(opts.timeBudgetMs / 1000)} s budget` : ''}${opts.exclude?.length ? `, without ${opts.exclude.join(', ')}` : ''}`);
  const world = await ChaosWorld.start({ apiRoot: opts.apiRoot });
  log(`chaos: world ready in ${Date.now() - started} ms (database ${new URL(world.databaseUrl).pathname.slice(1)}, Redis :${world.nodes[0].port} + replica :${world.nodes[1].port}, ${world.apis.map((a) => `${a.name} :${a.port}`).join(', ')})`);
  const stats = new Map<string, number>();
  let executed = 0;
  let firstFailureAt: number | null = null;
  let lastFailure: string | null = null;

  const property = fc.asyncProperty(
    universeArb,
    // Unbiased: fast-check's first runs would otherwise be a handful of commands each.
    fc.noBias(fc.commands([commandArb(opts.exclude)], { maxCommands: opts.steps, size: 'max', replayPath: opts.replayPath })),
    async (u, cmds) => {
      const now = Date.now();
      // Out of time: the run passes without running (ends the runs, or the shrinking).
      if (firstFailureAt === null && opts.timeBudgetMs !== undefined && now - started > opts.timeBudgetMs) return;
      if (firstFailureAt !== null && now - firstFailureAt > (opts.shrinkBudgetMs ?? Infinity)) return;
      executed++;
      const t0 = Date.now();
      let run: Run;
      try {
        run = await startRun(world, u, executed, opts.lenientOutageErrors ?? false);
      } catch (err) {
        firstFailureAt ??= Date.now();
        log(`chaos: run ${executed}: could not start: ${String(err).slice(0, 300)}`);
        throw new Error(`(harness) the run could not start: ${err instanceof Error ? err.message : String(err)}`);
      }
      const label = `run ${executed}${firstFailureAt !== null ? ' (shrinking)' : ''}: ${describeUniverse(u)}`;
      let outcome = 'ok';
      try {
        await fc.asyncModelRun(() => ({ model: run.model, real: run }), cmds as Iterable<Cmd>);
        note(run, 'end of commands: ending faults and settling');
        await endFaults(run);
        await settleAndCheck(run);
      } catch (err) {
        firstFailureAt ??= Date.now();
        outcome = err instanceof Violation ? `FAILED ${err.message.slice(0, 160)}` : `FAILED (harness) ${String(err).slice(0, 160)}`;
        const logs = world.apis.map((a) => `--- ${a.name} (pid ${a.pid}, ${a.restarts} restarts), last log lines:\n${a.tail().split('\n').slice(-12).join('\n')}`).join('\n');
        const message = `${err instanceof Error ? err.message : String(err)}\n--- run trace (sale ${run.saleId}, ${describeUniverse(u)}):\n${run.trace.slice(-120).join('\n')}\n${logs}`;
        lastFailure = message;
        throw new Error(message);
      } finally {
        for (const [k, v] of run.model.stats) stats.set(k, (stats.get(k) ?? 0) + v);
        try {
          await cleanUpRun(run);
        } catch (err) {
          log(`chaos: cleaning up run ${executed} failed: ${String(err)}`);
        }
        log(`chaos: ${label}: ${run.model.step} commands in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${outcome}`);
        if (opts.traceRuns) log(run.trace.join('\n'));
      }
    },
  );

  const details = await fc.check(property, { numRuns: opts.runs, seed, path: opts.path, endOnFailure: false }).finally(() => world.close());
  const elapsedMs = Date.now() - started;
  let message = '';
  let replay: string | null = null;
  if (details.failed) {
    const err = details.errorInstance;
    const report = fc.defaultReportMessage(details) ?? '';
    const replayPath = /replayPath="([^"]*)"/.exec(report)?.[1];
    replay = `npm run chaos -- --seed ${seed} --path "${details.counterexamplePath}"${replayPath ? ` --replay-path "${replayPath}"` : ''} --steps ${opts.steps}`
      + `${opts.exclude?.length ? ` --without ${opts.exclude.join(',')}` : ''}${opts.apiRoot ? ` --api-root ${opts.apiRoot}` : ''}${opts.lenientOutageErrors ? ' --lenient-outage-errors' : ''}`;
    message = `${report}\n\nThe shrunk counterexample's failure:\n${err instanceof Error ? err.message : String(err ?? lastFailure)}\n\nReplay it: ${replay}`;
  }
  const statLine = [...stats.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}: ${v}`).join(', ');
  log(`chaos: ${executed} runs executed in ${(elapsedMs / 1000).toFixed(1)} s (seed ${seed}); ${details.failed ? 'FAILED' : 'passed'}`);
  log(`chaos: what happened: ${statLine}`);
  return { seed, failed: details.failed, message, replay, executedRuns: executed, elapsedMs, stats };
}
