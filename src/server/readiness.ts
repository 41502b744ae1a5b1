/**
 * What `GET /ready` answers: which dependencies do not answer, within a bounded time whatever
 * they do (answer, refuse, close at once, or hang with the connection open).
 *
 * - Each dependency's probe is raced against `timeoutMs`: a probe that has not answered by then
 *   counts as failed, so a black-holed host costs /ready that long and no more.
 * - One round of probes is in flight at a time, shared by every /ready call that arrives during
 *   it, so a load balancer's (or a crowd's) calls never multiply the probes.
 * - A dependency's probe that is still pending from an earlier round is awaited again, not
 *   started anew: a hanging dependency holds one ping and one pool connection of ours, not one
 *   per call. The drivers end most hangs themselves (the pool's connection timeout, the socket's
 *   end); a probe pending for `staleAfterMs` is left to its driver and a new one started, so one
 *   connection stuck for good cannot keep /ready at 503 while the dependency answers again.
 * - The answer names dependencies only; what the driver said goes to the log, on each change.
 */
export type Probe = () => Promise<unknown>;

export interface ReadinessOptions {
  /** The dependencies in the order they are reported, each with its probe. */
  probes: Record<string, Probe>;
  /** How long a probe may take before it counts as failed (answers take at most this, plus a little). */
  timeoutMs?: number;
  /** A probe still pending after this long is no longer awaited; the next round starts a new one. */
  staleAfterMs?: number;
  /** Called when a dependency starts or stops answering; `detail` is the driver's message, for the log. */
  onChange?: (dependency: string, ok: boolean, detail?: string) => void;
}

/** The contract allows 1 s per /ready answer; this leaves room for a busy event loop and the HTTP exchange (a healthy probe answers in milliseconds; 700 ms left too little on a loaded 2-core CI box). */
export const READY_TIMEOUT_MS = 500;

export class Readiness {
  private readonly probes: [string, Probe][];
  private readonly timeoutMs: number;
  private readonly onChange?: ReadinessOptions['onChange'];
  private round: Promise<string[]> | null = null;
  private readonly staleAfterMs: number;
  private readonly pending = new Map<string, { since: number; result: Promise<string | null> }>();
  private readonly healthy = new Map<string, boolean>();

  constructor(opts: ReadinessOptions) {
    this.probes = Object.entries(opts.probes);
    this.timeoutMs = opts.timeoutMs ?? READY_TIMEOUT_MS;
    this.staleAfterMs = opts.staleAfterMs ?? 10_000;
    this.onChange = opts.onChange;
  }

  /** The dependencies that did not answer in time (empty when ready). Never rejects. */
  check(): Promise<string[]> {
    if (!this.round) {
      this.round = this.runRound().finally(() => {
        this.round = null;
      });
    }
    return this.round;
  }

  private async runRound(): Promise<string[]> {
    const results = await Promise.all(this.probes.map(([name, probe]) => this.probeWithin(name, probe)));
    const failed: string[] = [];
    results.forEach((problem, i) => {
      const name = this.probes[i][0];
      if (problem !== null) failed.push(name);
      const ok = problem === null;
      if (this.healthy.get(name) !== ok) {
        // The first round reports only a failure: a dependency that answers from the start is news to nobody.
        if (this.healthy.has(name) || !ok) this.onChange?.(name, ok, problem ?? undefined);
        this.healthy.set(name, ok);
      }
    });
    return failed;
  }

  /** null when the probe answered within the timeout, else why not (for the log only). */
  private probeWithin(name: string, probe: Probe): Promise<string | null> {
    let running = this.pending.get(name);
    if (!running || Date.now() - running.since > this.staleAfterMs) {
      const started: { since: number; result: Promise<string | null> } = {
        since: Date.now(),
        result: Promise.resolve()
          .then(probe)
          .then(
            () => null,
            (err: unknown) => (err instanceof Error ? err.message : String(err)) || 'failed',
          )
          .finally(() => {
            if (this.pending.get(name) === started) this.pending.delete(name);
          }),
      };
      this.pending.set(name, started);
      running = started;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${this.timeoutMs} ms`), this.timeoutMs);
    });
    return Promise.race([running.result, timedOut]).finally(() => clearTimeout(timer));
  }
}
