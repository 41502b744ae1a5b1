import { describe, expect, it } from 'vitest';
import { parseBenchOptions } from '../load/harness/bench-options.js';
import { runBench } from '../load/harness/run-bench.js';
import { createProgress } from '../load/harness/progress.js';

// The CI-sized bench: a few seconds of every API scenario against a server the harness starts on
// its own database and Redis prefix. It checks correctness only; speed is for `npm run bench`.
describe('bench smoke', () => {
  it('runs the load scenarios at tiny sizes and every audit passes', async () => {
    const opts = parseBenchOptions(['--smoke', '--out-dir='], {});
    const report = await runBench(opts, createProgress(false));

    const audited = report.scenarios.filter((s) => s.audit);
    expect(audited.map((s) => s.name).sort()).toEqual(['flow', 'storm-closed', 'storm-open']);
    for (const s of audited) {
      expect(s.audit!.checks.filter((c) => !c.passed), s.name).toEqual([]);
      expect(s.audit!.unitsSold, s.name).toBe(opts.stock);
    }
    for (const s of report.scenarios.filter((x) => !x.skipped)) {
      // Every request was answered: no transport errors, no 5xx, nothing left in flight.
      expect(Object.keys(s.codes).filter((c) => c.startsWith('TRANSPORT_') || c.startsWith('HTTP_5')), s.name).toEqual([]);
      expect(s.timedOut, s.name).toBe(false);
    }
    expect(report.scenarios.find((s) => s.name === 'reads')?.codes.OK).toBeGreaterThan(0);
    expect(report.correct).toBe(true);
  }, 180_000);
});
