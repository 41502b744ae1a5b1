/**
 * Sizes and switches of one bench run; every field can be set by flag (--kebab-case=value) or env
 * (BENCH_UPPER_SNAKE; the server's own WORKERS is read too).
 */
export interface BenchOptions {
  /** Server processes (node:cluster workers) for the API and the bare ceiling server. */
  workers: number;
  /** Purchase storm: attempts, distinct customers, units on sale, per-customer limit. */
  attempts: number;
  customers: number;
  stock: number;
  perUserLimit: number;
  /** Closed loop: this many requests in flight at all times. */
  concurrency: number;
  /** Open loop: fixed arrival rate (per second) and attempts; maxInFlight caps it like k6's maxVUs. */
  arrivalRate: number;
  openAttempts: number;
  maxInFlight: number;
  /** Stock reads: duration and concurrency. */
  readSeconds: number;
  readConcurrency: number;
  /** Reservation + confirm flow. */
  flowAttempts: number;
  flowConcurrency: number;
  /** WebSocket subscribers watching one sale sell out. */
  subscribers: number;
  /**
   * Purchase attempts made against a sale of their own before any scenario, not reported: a
   * production process has served for hours before a sale starts, so its code is compiled and its
   * connections are open; 0 measures a cold process.
   */
  warmupAttempts: number;
  /** Which scenarios run (comma list): storm-closed, storm-open, reads, flow, subscribers, ceiling, ceiling-open, redis-benchmark. */
  scenarios: Set<string>;
  /** Hard stop for any one scenario, seconds: the bench never runs unbounded. */
  scenarioTimeoutSeconds: number;
  /** Where results.json and results.md go; empty string writes nothing. */
  outDir: string;
  progress: boolean;
  /** Add --cpu-prof to the API server and keep the profiles in this folder. */
  cpuProfDir: string;
  /** Loopback only: the bench refuses any other host. */
  host: string;
  /**
   * `Origin` header on every API request, as a web page's requests carry it (the answers then
   * carry CORS headers); empty sends none, as a mobile app or a server-side client does.
   */
  origin: string;
}

export const ALL_SCENARIOS = ['storm-closed', 'storm-open', 'reads', 'flow', 'subscribers', 'ceiling', 'ceiling-open', 'redis-benchmark'] as const;

export const FULL_DEFAULTS: BenchOptions = {
  workers: 1,
  attempts: 100_000,
  customers: 50_000,
  stock: 1_000,
  perUserLimit: 2,
  concurrency: 500,
  arrivalRate: 3_000,
  openAttempts: 60_000,
  maxInFlight: 2_000,
  readSeconds: 30,
  readConcurrency: 200,
  flowAttempts: 20_000,
  flowConcurrency: 200,
  subscribers: 10_000,
  warmupAttempts: 5_000,
  scenarios: new Set(ALL_SCENARIOS),
  scenarioTimeoutSeconds: 300,
  outDir: 'bench',
  progress: true,
  cpuProfDir: '',
  host: '127.0.0.1',
  origin: '',
};

/** The CI smoke size: a few seconds, correctness only. */
export const SMOKE_DEFAULTS: BenchOptions = {
  ...FULL_DEFAULTS,
  attempts: 2_000,
  customers: 1_000,
  stock: 100,
  concurrency: 50,
  arrivalRate: 500,
  openAttempts: 1_000,
  maxInFlight: 200,
  readSeconds: 2,
  readConcurrency: 20,
  flowAttempts: 500,
  flowConcurrency: 20,
  subscribers: 50,
  warmupAttempts: 0,
  scenarios: new Set(['storm-closed', 'storm-open', 'flow', 'reads', 'subscribers']),
  scenarioTimeoutSeconds: 60,
  outDir: '',
};

const LOOPBACK = /^(127(\.\d{1,3}){3}|localhost|::1|\[::1\])$/;

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
function snake(name: string): string {
  return kebab(name).replace(/-/g, '_').toUpperCase();
}

/**
 * Reads options from flags first, then env, then the defaults (`--smoke` or BENCH_SMOKE=1 picks the
 * smoke sizes). Throws on an unknown flag or a malformed number so a typo never runs a full bench.
 */
export function parseBenchOptions(argv: string[], env: Record<string, string | undefined>): BenchOptions {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`unexpected argument ${arg}; flags look like --attempts=2000`);
    flags.set(m[1], m[2] ?? 'true');
  }
  const smoke = flags.get('smoke') === 'true' || env.BENCH_SMOKE === '1';
  flags.delete('smoke');
  const base = smoke ? SMOKE_DEFAULTS : FULL_DEFAULTS;
  const opts: BenchOptions = { ...base, scenarios: new Set(base.scenarios) };
  const known = new Set(Object.keys(base).map(kebab));
  for (const name of flags.keys()) if (!known.has(name)) throw new Error(`unknown flag --${name}; known: ${[...known].join(', ')}`);

  for (const key of Object.keys(base) as (keyof BenchOptions)[]) {
    const raw = flags.get(kebab(key)) ?? env[`BENCH_${snake(key)}`] ?? (key === 'workers' ? env.WORKERS : undefined);
    if (raw === undefined) continue;
    const current = base[key];
    if (key === 'scenarios') {
      const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
      const bad = list.filter((s) => !(ALL_SCENARIOS as readonly string[]).includes(s));
      if (bad.length) throw new Error(`unknown scenario ${bad.join(', ')}; known: ${ALL_SCENARIOS.join(', ')}`);
      opts.scenarios = new Set(list);
    } else if (typeof current === 'number') {
      const n = Number(raw.replace(/_/g, ''));
      if (!Number.isFinite(n) || n < 0) throw new Error(`${key} must be a non-negative number, got ${raw}`);
      (opts as unknown as Record<string, number>)[key] = n;
    } else if (typeof current === 'boolean') {
      (opts as unknown as Record<string, boolean>)[key] = raw === 'true' || raw === '1';
    } else {
      (opts as unknown as Record<string, string>)[key] = raw;
    }
  }
  if (!LOOPBACK.test(opts.host)) throw new Error(`host ${opts.host} is not a loopback address; the bench only loads this machine`);
  if (opts.workers < 1) opts.workers = 1;
  return opts;
}
