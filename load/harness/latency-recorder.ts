/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/**
 * Keeps every sample (a Float64Array grows by doubling): exact percentiles for a few hundred
 * thousand requests cost a sort of a few ms, and no histogram binning hides the tail.
 */
export class LatencyRecorder {
  private samples = new Float64Array(1024);
  private n = 0;
  private readonly codes = new Map<string, number>();

  record(ms: number, code: string): void {
    if (this.n === this.samples.length) {
      const bigger = new Float64Array(this.samples.length * 2);
      bigger.set(this.samples);
      this.samples = bigger;
    }
    this.samples[this.n++] = ms;
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
  }

  get count(): number {
    return this.n;
  }

  /** Outcomes by code: OK, a Rejected code, a GraphQL error code, HTTP_<status> or a transport error. */
  byCode(): Record<string, number> {
    return Object.fromEntries([...this.codes].sort((a, b) => b[1] - a[1]));
  }

  summary(): LatencySummary {
    const sorted = this.samples.slice(0, this.n).sort();
    const at = (q: number) => (this.n === 0 ? 0 : sorted[Math.min(this.n - 1, Math.ceil(q * this.n) - 1)]);
    let sum = 0;
    for (let i = 0; i < this.n; i++) sum += sorted[i];
    return { count: this.n, mean: round(this.n ? sum / this.n : 0), p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)), max: round(this.n ? sorted[this.n - 1] : 0) };
  }
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
