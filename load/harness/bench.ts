// npm run bench [-- --flag=value …]: runs the load scenarios against a server of its own and
// writes bench/results.json and bench/results.md. npm run bench:smoke: the tiny CI size.
import { resolve } from 'node:path';
import { parseBenchOptions } from './bench-options.js';
import { reportMarkdown, writeReport } from './bench-report.js';
import { runBench } from './run-bench.js';
import { REPO_ROOT } from './server-process.js';

let opts;
try {
  opts = parseBenchOptions(process.argv.slice(2), process.env);
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}

// The bench's own deadline on top of each scenario's: it must always stop by itself.
const hardStop = setTimeout(() => {
  console.error('bench: hard time limit reached, stopping');
  process.exit(3);
}, (opts.scenarioTimeoutSeconds * (opts.scenarios.size + 2) + 300) * 1000);
hardStop.unref();

const report = await runBench(opts);
console.log(reportMarkdown(report));
if (opts.outDir) {
  const written = writeReport(resolve(REPO_ROOT, opts.outDir), report);
  console.error(`wrote ${written.json} and ${written.md}`);
}
process.exit(report.correct ? 0 : 1);
