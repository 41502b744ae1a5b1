import type { AuditResult } from './correctness-audit.js';
import type { DriveResult } from './load-drivers.js';
import { round, type LatencyRecorder, type LatencySummary } from './latency-recorder.js';

export interface ScenarioResult {
  name: string;
  description: string;
  /** Attempts asked for; completed ones are in latency.count. */
  attempts: number;
  seconds: number;
  /** Completed requests (or flows) per second. */
  throughput: number;
  latency: LatencySummary;
  codes: Record<string, number>;
  dropped: number;
  timedOut: boolean;
  audit?: AuditResult;
  rssMb?: { before: number; during: number; after: number };
  /** Most connections seen waiting to be accepted by the server (sampled every 500 ms). */
  acceptQueuePeak?: number;
  /**
   * CPU the server processes used per completed request (or flow), in ms: unlike throughput it
   * barely moves when other work shares the machine, so it is the figure to compare changes by.
   */
  serverCpuMsPerRequest?: number;
  /** The same for the load generator (this process), to show what the measuring itself costs. */
  loadCpuMsPerRequest?: number;
  /** Scenario-specific figures (confirm latency, subscriber delivery times, a skip reason). */
  extra?: Record<string, unknown>;
  skipped?: string;
  /** The scenario could not finish: why. A run with an error is not a correct run. */
  error?: string;
}

/** Measures the CPU a server and this process spend between start() and stop(). */
export class CpuMeter {
  private server0 = 0;
  private self0 = process.cpuUsage();

  constructor(private readonly serverCpuMs: () => number) {
    this.server0 = serverCpuMs();
  }

  perRequest(completed: number): { serverCpuMsPerRequest: number; loadCpuMsPerRequest: number } {
    const self = process.cpuUsage(this.self0);
    const n = Math.max(completed, 1);
    return {
      serverCpuMsPerRequest: round((this.serverCpuMs() - this.server0) / n, 3),
      loadCpuMsPerRequest: round((self.user + self.system) / 1000 / n, 3),
    };
  }
}

export function scenarioResult(name: string, description: string, attempts: number, drive: DriveResult, recorder: LatencyRecorder): ScenarioResult {
  return {
    name,
    description,
    attempts,
    seconds: round(drive.seconds),
    throughput: Math.round(drive.completed / Math.max(drive.seconds, 1e-9)),
    latency: recorder.summary(),
    codes: recorder.byCode(),
    dropped: drive.dropped,
    timedOut: drive.timedOut,
  };
}

export function failedResult(name: string, err: unknown): ScenarioResult {
  return { ...skippedResult(name, '', `failed: ${(err as Error)?.message ?? String(err)}`), error: (err as Error)?.stack ?? String(err) };
}

export function skippedResult(name: string, description: string, reason: string): ScenarioResult {
  return {
    name, description, attempts: 0, seconds: 0, throughput: 0, codes: {}, dropped: 0, timedOut: false, skipped: reason,
    latency: { count: 0, mean: 0, p50: 0, p95: 0, p99: 0, max: 0 },
  };
}
