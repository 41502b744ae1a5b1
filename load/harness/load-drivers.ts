import { performance } from 'node:perf_hooks';
import type { LatencyRecorder } from './latency-recorder.js';

/** One request of a scenario: returns its outcome code ('OK', a Rejected code, an error code). */
export type Attempt = (index: number) => Promise<string>;

export interface DriveResult {
  /** Requests sent and answered (or failed) within the run. */
  completed: number;
  /** Open loop only: arrivals not sent because maxInFlight requests were already waiting (k6's dropped_iterations). */
  dropped: number;
  seconds: number;
  /** True when the time limit ended the run before all attempts were made. */
  timedOut: boolean;
  /** Open loop only: how late, at worst, an arrival was sent against its schedule (load generator lag). */
  maxScheduleLagMs: number;
}

interface DriveCommon {
  attempts: number;
  timeoutMs: number;
  recorder: LatencyRecorder;
  onProgress?: (done: number) => void;
}

async function timed(attempt: Attempt, i: number, recorder: LatencyRecorder): Promise<void> {
  const t0 = performance.now();
  let code: string;
  try {
    code = await attempt(i);
  } catch (err) {
    code = transportCode(err);
  }
  recorder.record(performance.now() - t0, code);
}

function transportCode(err: unknown): string {
  const e = err as { code?: string; name?: string };
  return `TRANSPORT_${e?.code ?? e?.name ?? 'ERROR'}`;
}

/** Closed loop (k6 constant-vus): `concurrency` loops, each sending its next request when the last one answered. */
export async function driveClosedLoop(attempt: Attempt, o: DriveCommon & { concurrency: number }): Promise<DriveResult> {
  const started = performance.now();
  const deadline = started + o.timeoutMs;
  let next = 0;
  let done = 0;
  let timedOut = false;
  const loop = async () => {
    for (;;) {
      if (performance.now() > deadline) {
        timedOut = true;
        return;
      }
      const i = next++;
      if (i >= o.attempts) return;
      await timed(attempt, i, o.recorder);
      done++;
      if ((done & 255) === 0) o.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.attempts) }, loop));
  o.onProgress?.(done);
  return { completed: done, dropped: 0, seconds: (performance.now() - started) / 1000, timedOut, maxScheduleLagMs: 0 };
}

/**
 * Open loop (k6 constant-arrival-rate): request i is due at start + i/rate whatever the server's
 * speed, so a slow server builds a queue instead of slowing the load down (no coordinated omission).
 */
export async function driveOpenLoop(attempt: Attempt, o: DriveCommon & { ratePerSecond: number; maxInFlight: number }): Promise<DriveResult> {
  const started = performance.now();
  const deadline = started + o.timeoutMs;
  let sent = 0;
  let done = 0;
  let dropped = 0;
  let inFlight = 0;
  let maxLag = 0;
  let timedOut = false;
  const pending = new Set<Promise<void>>();

  while (sent + dropped < o.attempts) {
    const now = performance.now();
    if (now > deadline) {
      timedOut = true;
      break;
    }
    const due = Math.min(o.attempts, Math.floor(((now - started) / 1000) * o.ratePerSecond) + 1);
    while (sent + dropped < due) {
      const i = sent + dropped;
      maxLag = Math.max(maxLag, now - (started + (i / o.ratePerSecond) * 1000));
      if (inFlight >= o.maxInFlight) {
        dropped++;
        continue;
      }
      sent++;
      inFlight++;
      const p = timed(attempt, i, o.recorder).then(() => {
        inFlight--;
        done++;
        if ((done & 255) === 0) o.onProgress?.(done + dropped);
        pending.delete(p);
      });
      pending.add(p);
    }
    // A 1 ms tick keeps arrivals smooth (k6 spreads them the same way) without a busy loop.
    await new Promise((r) => setTimeout(r, 1));
  }
  const rest = Math.max(0, deadline - performance.now());
  await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, rest))]);
  if (pending.size > 0) timedOut = true;
  o.onProgress?.(done + dropped);
  return { completed: done, dropped, seconds: (performance.now() - started) / 1000, timedOut, maxScheduleLagMs: Math.round(maxLag) };
}

/** Runs `attempt` in a closed loop until the time is up (for duration-based scenarios like stock reads). */
export async function driveForDuration(attempt: Attempt, o: { seconds: number; concurrency: number; recorder: LatencyRecorder; onProgress?: (elapsedSeconds: number) => void }): Promise<DriveResult> {
  const started = performance.now();
  const until = started + o.seconds * 1000;
  let i = 0;
  const ticker = setInterval(() => o.onProgress?.(Math.min(o.seconds, (performance.now() - started) / 1000)), 250);
  const loop = async () => {
    while (performance.now() < until) await timed(attempt, i++, o.recorder);
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, loop));
  } finally {
    clearInterval(ticker);
  }
  return { completed: o.recorder.count, dropped: 0, seconds: (performance.now() - started) / 1000, timedOut: false, maxScheduleLagMs: 0 };
}
