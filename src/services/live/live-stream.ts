/** A consumer that takes values as they come rather than asking with next() (see LiveStream.attach). */
export interface StreamSink<T> {
  /** One value; the sink calls the stream's `ready()` when it wants another. */
  value(value: T): void;
  /** The stream ended. */
  end(): void;
}

/**
 * One subscriber's event stream: an async iterator fed by the instance's feeds.
 *
 * Events are whole states, not deltas, so a value waiting for a slow consumer is replaced by a
 * newer one with the same key instead of queueing behind it: a slow socket gets the latest state,
 * never an unbounded backlog. Values pushed before `prime()` wait behind the initial state, so
 * the first event is always the current state even when a change races the subscription.
 *
 * Subclasses may override `accepts` and `ended` instead of passing callbacks, which saves two
 * closures per stream when there are tens of thousands of them.
 */
export class LiveStream<T> implements AsyncIterableIterator<T> {
  private readonly queue: { key: string | null; value: T }[] = [];
  private early: { key: string | null; value: T }[] | null = [];
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private sink: StreamSink<T> | null = null;
  private sinkReady = false;
  private done = false;

  constructor(
    /** Runs once, when the consumer stops or the server ends the stream. */
    private readonly onClose: (() => void) | null = null,
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
    if (!this.accepts(value)) return;
    if (this.sinkReady) {
      this.sinkReady = false;
      this.sink!.value(value);
      return;
    }
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

  /**
   * Push mode, instead of next(): values are handed to `sink` one at a time, each once the sink
   * called `ready()` after the previous one (and the first at once), with the same replacement
   * of stale values meanwhile. No promise is made per value.
   */
  attach(sink: StreamSink<T>): void {
    this.sink = sink;
    this.ready();
  }

  /** The attached sink is ready for the next value. */
  ready(): void {
    const sink = this.sink;
    if (!sink) return;
    const head = this.queue.shift();
    if (head) {
      sink.value(head.value);
      return;
    }
    if (this.done) {
      this.sink = null;
      sink.end();
      return;
    }
    this.sinkReady = true;
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
    if (this.sinkReady) {
      const sink = this.sink!;
      this.sinkReady = false;
      this.sink = null;
      sink.end();
    }
    this.ended();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Whether a value is news to this subscriber; by default the constructor's `accept`, or yes. */
  protected accepts(value: T): boolean {
    return this.accept === null || this.accept(value);
  }

  /** Runs once when the stream ends; by default the constructor's `onClose`. */
  protected ended(): void {
    this.onClose?.();
  }
}
