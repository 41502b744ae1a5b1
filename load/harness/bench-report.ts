import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions } from './bench-options.js';
import type { RedisBenchmarkResult } from './redis-benchmark.js';
import type { ScenarioResult } from './scenario-result.js';

export interface TargetCheck {
  target: string;
  value: string;
  met: boolean;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  /** loadAverage: the 1-minute load average at the start and at the end; above 2 means other work shared the 2 cores. */
  machine: { cpus: number; cpuModel: string; node: string; loadAverage: { start: number; end: number } };
  options: Omit<BenchOptions, 'scenarios'> & { scenarios: string[] };
  scenarios: ScenarioResult[];
  /** Closed-loop purchase throughput over the bare ceiling's (same load, same workers). */
  purchaseToCeilingRatio: number | null;
  redisBenchmark: RedisBenchmarkResult | null;
  /** Every audited run passed every check. */
  correct: boolean;
  targets: TargetCheck[];
}

export function assembleReport(o: { startedAt: Date; loadAtStart: number; opts: BenchOptions; scenarios: ScenarioResult[]; redisBenchmark: RedisBenchmarkResult | null }): BenchReport {
  const by = (name: string) => o.scenarios.find((s) => s.name === name && !s.skipped);
  const closed = by('storm-closed');
  const open = by('storm-open');
  const reads = by('reads');
  const subs = by('subscribers');
  const ceiling = by('ceiling');
  const ratio = closed && ceiling && ceiling.throughput > 0 ? Math.round((closed.throughput / ceiling.throughput) * 1000) / 1000 : null;
  const audited = o.scenarios.filter((s) => s.audit);
  const targets: TargetCheck[] = [];
  const errored = o.scenarios.filter((s) => s.error);
  if (audited.length || errored.length) {
    targets.push({
      target: 'correct in every audited run, no scenario failed',
      value: [...audited.map((s) => `${s.name}: ${s.audit!.passed ? 'pass' : 'FAIL'}`), ...errored.map((s) => `${s.name}: failed`)].join(', '),
      met: audited.every((s) => s.audit!.passed) && errored.length === 0,
    });
  }
  if (closed) targets.push({ target: 'closed loop ≥ 5,000 attempts/s (aim 10,000)', value: `${closed.throughput}/s${ratio !== null ? `, ${Math.round(ratio * 100)}% of the bare ceiling` : ''}`, met: closed.throughput >= 5000 });
  if (open) {
    const achieved = open.throughput;
    const bare = by('ceiling-open');
    const beside = bare ? `; the bare ceiling under the same open loop: p95 ${bare.latency.p95} ms, p99 ${bare.latency.p99} ms, ${bare.dropped} dropped` : '';
    targets.push({ target: `open loop at ${o.opts.arrivalRate}/s: p95 ≤ 50 ms, p99 ≤ 150 ms`, value: `p95 ${open.latency.p95} ms, p99 ${open.latency.p99} ms at ${achieved}/s, ${open.dropped} dropped${beside}`, met: open.latency.p95 <= 50 && open.latency.p99 <= 150 && open.dropped === 0 });
  }
  if (reads) targets.push({ target: 'stock reads ≥ 10,000 req/s', value: `${reads.throughput}/s`, met: reads.throughput >= 10_000 });
  if (subs) {
    const seen = subs.codes.OK ?? 0;
    targets.push({ target: `${o.opts.subscribers} subscribers see SOLD_OUT within 1 s`, value: `${seen} of ${o.opts.subscribers} saw it; last after ${subs.latency.max} ms`, met: seen === o.opts.subscribers && subs.latency.max <= 1000 });
  }
  const peak = Math.max(0, ...o.scenarios.filter((s) => !s.name.startsWith('ceiling')).map((s) => s.rssMb?.during ?? 0));
  if (peak > 0) targets.push({ target: 'server RSS < 300 MB (all its processes)', value: `peak ${peak} MB`, met: peak < 300 });
  return {
    startedAt: o.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, loadAverage: { start: o.loadAtStart, end: Math.round(loadavg()[0] * 100) / 100 } },
    options: { ...o.opts, scenarios: [...o.opts.scenarios] },
    scenarios: o.scenarios,
    purchaseToCeilingRatio: ratio,
    redisBenchmark: o.redisBenchmark,
    correct: audited.every((s) => s.audit!.passed) && !o.scenarios.some((s) => s.error),
    targets,
  };
}

const codesText = (codes: Record<string, number>) => Object.entries(codes).map(([k, v]) => `${k} ${v}`).join(', ');

export function reportMarkdown(r: BenchReport): string {
  const lines: string[] = [];
  lines.push(`# Bench results`, '');
  lines.push(`${r.startedAt} → ${r.finishedAt}; ${r.machine.cpus} × ${r.machine.cpuModel}, Node ${r.machine.node}; server WORKERS=${r.options.workers}; ${r.options.origin ? `requests sent with Origin ${r.options.origin}, as a web page's are` : 'requests sent without Origin, as a mobile app\'s are'}; ${r.options.warmupAttempts ? `${r.options.warmupAttempts} warm-up purchase attempts first (not reported)` : 'cold server (no warm-up)'}; server, Redis, PostgreSQL and load generator on this one machine; 1-minute load average ${r.machine.loadAverage.start} at the start, ${r.machine.loadAverage.end} at the end${r.machine.loadAverage.end > r.machine.cpus ? ' (other work shared the cores: compare runs by server CPU per request rather than by throughput)' : ''}.`, '');
  lines.push('| scenario | completed | s | per s | p50 ms | p95 ms | p99 ms | max ms | server CPU ms/req | load generator CPU ms/req | RSS MB before / peak / after | accept queue peak | outcomes |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |');
  for (const s of r.scenarios) {
    if (s.skipped) {
      lines.push(`| ${s.name} | skipped: ${s.skipped} | | | | | | | | | | | |`);
      continue;
    }
    const rss = s.rssMb ? `${s.rssMb.before} / ${s.rssMb.during} / ${s.rssMb.after}` : '';
    lines.push(`| ${s.name} | ${s.latency.count} | ${s.seconds} | ${s.throughput} | ${s.latency.p50} | ${s.latency.p95} | ${s.latency.p99} | ${s.latency.max} | ${s.serverCpuMsPerRequest ?? ''} | ${s.loadCpuMsPerRequest ?? ''} | ${rss} | ${s.acceptQueuePeak ?? ''} | ${codesText(s.codes)}${s.dropped ? `, dropped ${s.dropped}` : ''} |`);
  }
  lines.push('');
  if (r.purchaseToCeilingRatio !== null) lines.push(`Closed-loop purchase path / bare ceiling: **${r.purchaseToCeilingRatio}**.`, '');
  if (r.redisBenchmark) {
    const b = r.redisBenchmark;
    lines.push(b.skipped ? `redis-benchmark: skipped (${b.skipped}).` : `redis-benchmark of the reserve script: **${b.requestsPerSecond}/s** (p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms; ${b.command}).`, '');
  }
  lines.push('## Targets', '', '| target | measured | met |', '| --- | --- | --- |');
  for (const t of r.targets) lines.push(`| ${t.target} | ${t.value} | ${t.met ? 'yes' : '**no**'} |`);
  lines.push('', '## Correctness audit (PostgreSQL after each run)', '');
  for (const s of r.scenarios.filter((x) => x.audit)) {
    lines.push(`**${s.name}**: ${s.audit!.passed ? 'pass' : '**FAIL**'} (${s.audit!.unitsSold} units in ${s.audit!.orders} orders)`, '');
    for (const c of s.audit!.checks) lines.push(`- ${c.passed ? '✓' : '✗'} ${c.name}: ${c.detail}`);
    lines.push('');
  }
  const extras = r.scenarios.filter((s) => s.extra && !s.skipped);
  if (extras.length) {
    lines.push('## Details', '');
    for (const s of extras) lines.push(`- **${s.name}** (${s.description}): \`${JSON.stringify(s.extra)}\``);
    lines.push('');
  }
  return lines.join('\n');
}

export function writeReport(dir: string, r: BenchReport): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'results.json');
  const md = join(dir, 'results.md');
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, `${reportMarkdown(r)}\n`);
  return { json, md };
}
