// A task the daemon runs soon after start and then every interval: one pass at a time (a pass that
// runs long is joined, never doubled), an unref'd timer, and a close that waits for the pass in flight.
export abstract class PeriodicTask<T> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<T[]> | undefined;
  protected stopped = false;

  protected abstract pass(): Promise<T[]>;

  /** Errors of a pass run by the timer (the caller's onError, and any counting). */
  protected abstract failed(err: unknown): void;

  /**
   * Checks now (soon after start), then every `everyMs`. With `after`: once it resolves (the daemon
   * passes the moment its API serves: a first pass guards nothing that is served, so it does not
   * compete with the start-up for the CPU); never if it rejects or the task is closed first.
   */
  protected startEvery(everyMs: number, after?: PromiseLike<unknown>): this {
    const tick = () => void this.check().catch((err: unknown) => this.failed(err));
    const begin = () => {
      if (this.stopped) return;
      this.timer = setInterval(tick, everyMs);
      this.timer.unref();
      setImmediate(tick);
    };
    if (after) Promise.resolve(after).then(begin, () => undefined);
    else begin();
    return this;
  }

  /** One pass (one at a time): what it did. */
  check(): Promise<T[]> {
    if (this.stopped) return Promise.resolve([]);
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Stops the timer and waits for a pass in flight. */
  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }
}
