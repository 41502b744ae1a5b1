import { request } from 'undici';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of a Prometheus text exposition (format 0.0.4); enough for tests, not a full parser. */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** Fetches and parses an instance's /metrics. */
export async function scrape(baseUrl: string): Promise<Metrics> {
  const res = await request(`${baseUrl}/metrics`);
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`);
  return new Metrics(parsePrometheusText(await res.body.text()));
}

export class Metrics {
  constructor(readonly samples: Sample[]) {}

  /** Every sample name, histogram `_bucket/_sum/_count` series included. */
  get names(): Set<string> {
    return new Set(this.samples.map((s) => s.name));
  }

  /** Samples of `name` whose labels include all of `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The sum over matching samples (0 when none). */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((n, s) => n + s.value, 0);
  }
}
