import cliProgress from 'cli-progress';

export interface Progress {
  /** A bar for one scenario; `update` takes the absolute count. */
  bar(label: string, total: number, unit: string): { update(value: number): void; stop(): void };
  log(line: string): void;
}

/** Progress bars on a terminal; plain lines elsewhere (CI logs, vitest), or nothing when quiet. */
export function createProgress(enabled: boolean): Progress {
  if (!enabled) return { bar: () => ({ update() {}, stop() {} }), log() {} };
  if (!process.stderr.isTTY) {
    return {
      bar: (label, total, unit) => {
        console.error(`… ${label} (${total} ${unit})`);
        return { update() {}, stop() {} };
      },
      log: (line) => console.error(line),
    };
  }
  return {
    bar: (label, total, unit) => {
      const bar = new cliProgress.SingleBar(
        { format: `${label.padEnd(34)} {bar} {percentage}% | {value}/{total} ${unit} | {duration_formatted}`, hideCursor: true, stream: process.stderr, fps: 5 },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
      return { update: (v) => bar.update(Math.min(total, Math.round(v))), stop: () => bar.stop() };
    },
    log: (line) => console.error(line),
  };
}
