/**
 * One subscriber's event stream: an async iterator fed by the instance's feeds.
 *
 * Events are whole states, not deltas, so a value waiting for a slow consumer is replaced by a
 * newer one with the same key instead of queueing behind it: a slow socket gets the latest state,
 * never an unbounded backlog. Values pushed before `prime()` wait behind the initial state, so
 * the first event is always the current state even when a change races the subscription.
 */
export class LiveStream<T> implements AsyncIterableIterator<T> {
  private readonly queue: { key: string | null; value: T }[] = [];
  private early: { key: string | null; value: T }[] | null = [];
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private done = false;

  constructor(
    /** Runs once, when the consumer stops or the server ends the stream. */
    private readonly onClose: () => void,
    /** Decides, in delivery order, whether a value is news to this subscriber (e.g. a newer version). */
    private readonly accept: ((value: T) => boolean) | null = null,
    /** Values beyond this drop the oldest; a consumer that far behind has lost the plot anyway. */
    private readonly maxQueued = 1000,
  ) {}

  get closed(): boolean {
    return this.done;
  }

  push(value: T, key: string | null = null): void {
    if (this.done) return;
    if (this.early) {
      this.early.push({ key, value });
      return;
    }
    if (this.accept && !this.accept(value)) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value, done: false });
      return;
    }
    if (key !== null) {
      const stale = this.queue.findIndex((q) => q.key === key);
      if (stale >= 0) {
        this.queue[stale] = { key, value };
        return;
      }
    }
    this.queue.push({ key, value });
    if (this.queue.length > this.maxQueued) this.queue.shift();
  }

  /** Delivers the current state, then whatever arrived while it was being read. */
  prime(initial: readonly { key: string | null; value: T }[]): void {
    const early = this.early ?? [];
    this.early = null;
    for (const e of [...initial, ...early]) this.push(e.value, e.key);
  }

  next(): Promise<IteratorResult<T>> {
    const head = this.queue.shift();
    if (head) return Promise.resolve({ value: head.value, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(err?: unknown): Promise<IteratorResult<T>> {
    this.end();
    return Promise.reject(err);
  }

  /** Ends the stream (consumer gone, or the server shutting down); pending values are dropped. */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.queue.length = 0;
    this.early = null;
    const resolve = this.waiting;
    this.waiting = null;
    resolve?.({ value: undefined, done: true });
    this.onClose();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
