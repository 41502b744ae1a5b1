/**
 * The chaos test from the command line, to replay a failure or run longer than CI does:
 *
 *   npm run chaos -- --runs 50 --seed 123            # 50 runs from seed 123
 *   npm run chaos -- --seed 123 --path "7:2:1"        # replay a reported failure (and go on shrinking)
 *   npm run chaos -- --seed 123 --path "7:2:1" --replay-path "AAB:C"   # with the printed replayPath too
 *
 * Options: --runs N (default 20), --steps N (commands per run, default 30), --seed S, --path P,
 * --replay-path R, --time SECONDS (stop starting runs after this long), --shrink-seconds N
 * (default 600), --lenient-outage-errors (tolerate INTERNAL_SERVER_ERROR while PostgreSQL is cut),
 * --api-root DIR (run another build of the API: DIR/dist/main.js), --no-build (use dist/ as it is),
 * --trace (print every run's trace), --without GROUP,... (command groups not to generate, to look at one
 * bug class at a time: purchase, reserve, confirm, release, cancelOrder, waitlist, burst, adjustStock,
 * pause, cancelSale, wait, deleteKeys, rollback, stall, pgCut, failover).
 * Needs PostgreSQL on 127.0.0.1:5432 and redis-server on the PATH, like the tests.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runChaos } from './runner.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    steps: { type: 'string', default: '30' },
    seed: { type: 'string' },
    path: { type: 'string' },
    'replay-path': { type: 'string' },
    time: { type: 'string' },
    'shrink-seconds': { type: 'string', default: '600' },
    'lenient-outage-errors': { type: 'boolean', default: false },
    'api-root': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false },
    without: { type: 'string' },
  },
});

const root = fileURLToPath(new URL('../../../', import.meta.url));
if (!values['no-build'] && !values['api-root']) {
  console.log('chaos: building the API (npm run build)');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}

const report = await runChaos({
  runs: Number(values.runs),
  steps: Number(values.steps),
  seed: values.seed !== undefined ? Number(values.seed) : undefined,
  path: values.path,
  replayPath: values['replay-path'],
  timeBudgetMs: values.time !== undefined ? Number(values.time) * 1000 : undefined,
  shrinkBudgetMs: Number(values['shrink-seconds']) * 1000,
  apiRoot: values['api-root'],
  lenientOutageErrors: values['lenient-outage-errors'],
  traceRuns: values.trace,
  exclude: values.without ? values.without.split(',').map((g) => g.trim()).filter(Boolean) : undefined,
});
if (report.failed) {
  console.log(`\n${report.message}`);
  process.exit(1);
}
process.exit(0);
