// npx tsx load/harness/profile-summary.ts <file.cpuprofile> [top]: where a server spent its CPU,
// by function and by package, from a `node --cpu-prof` profile (npm run bench -- --cpu-prof-dir=…).
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  byFunction: { name: string; selfMs: number; share: number }[];
  byPackage: { name: string; selfMs: number; share: number }[];
  /** Time with the function anywhere on the stack (callees included), for the biggest ones. */
  inclusive: { name: string; ms: number; share: number }[];
}

/** Where a url's code comes from: a package in node_modules, our src/, node internals, or GC. */
export function packageOf(url: string, functionName: string): string {
  if (functionName === '(garbage collector)') return '(gc)';
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(program)') return '(program)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  // Our own code, under tsx (src/) or compiled (dist/): by folder, e.g. src/services.
  const own = /\/(?:src|dist)\/(?:([^/]+)\/)?[^/]+$/.exec(url);
  if (own) return own[1] ? `src/${own[1]}` : 'src';
  if (url.startsWith('node:')) return url.split('/')[0];
  return url ? 'other' : '(native)';
}

export function summarizeProfile(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    total += ms;
    if (functionName === '(idle)') idle += ms;
    const name = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${lineNumber + 1}`;
    fn.set(name, (fn.get(name) ?? 0) + ms);
    const p = packageOf(url, functionName);
    pkg.set(p, (pkg.get(p) ?? 0) + ms);
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>) =>
    [...m].filter(([k]) => k !== '(idle)' && !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([name, ms]) => ({ name, selfMs: Math.round(ms), share: Math.round((ms / busy) * 1000) / 10 }));
  return { totalMs: Math.round(total), idleMs: Math.round(idle), byFunction: rank(fn), byPackage: rank(pkg), inclusive: inclusiveTimes(profile, byId, busy, top) };
}

function inclusiveTimes(profile: CpuProfile, byId: Map<number, ProfileNode>, busy: number, top: number) {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${n.callFrame.lineNumber + 1}`;
  const acc = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(root)') continue;
      seen.add(key(n));
    }
    for (const k of seen) acc.set(k, (acc.get(k) ?? 0) + ms);
  }
  return [...acc].sort((a, b) => b[1] - a[1]).slice(0, top * 3).map(([name, ms]) => ({ name, ms: Math.round(ms), share: Math.round((ms / busy) * 1000) / 10 }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: tsx load/harness/profile-summary.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(process.argv[3] ?? 25));
  console.log(`total ${s.totalMs} ms, idle ${s.idleMs} ms (${Math.round((s.idleMs / s.totalMs) * 100)}%)`);
  console.log('\nself time by package (% of busy time):');
  for (const p of s.byPackage) console.log(`  ${String(p.share).padStart(5)}%  ${p.selfMs} ms  ${p.name}`);
  console.log('\nself time by function:');
  for (const f of s.byFunction) console.log(`  ${String(f.share).padStart(5)}%  ${f.selfMs} ms  ${f.name}`);
  console.log('\ninclusive time (callees included):');
  for (const f of s.inclusive) console.log(`  ${String(f.share).padStart(5)}%  ${f.ms} ms  ${f.name}`);
}
