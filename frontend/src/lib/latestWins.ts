/**
 * A one-slot "latest prompt wins" queue: while a decode runs, at most one more waits; a
 * newer request replaces the waiting one, which is rejected with SupersededError. Shared by
 * the in-browser decoder (DecoderBridge) and the server round trip (ServerDecoder), so both
 * coalesce a burst of clicks the same way: the mask shown is always the newest prompt's and
 * no stale decode is run.
 */

/** A decode that was skipped because a newer prompt replaced it before it ran. */
export class SupersededError extends Error {
  constructor() {
    super('superseded by a newer prompt');
    this.name = 'SupersededError';
  }
}

/** A request waiting in the slot, with the callbacks of the promise its caller holds. */
export interface Waiting<T, R> {
  job: T;
  resolve: (r: R) => void;
  reject: (e: Error) => void;
}

export class LatestWinsSlot<T, R> {
  private waiting: Waiting<T, R> | null = null;

  /** Puts `job` in the slot; the job waiting there before is rejected with SupersededError.
   * The returned promise settles when the owner runs the job (see `take`). */
  offer(job: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting?.reject(new SupersededError());
      this.waiting = { job, resolve, reject };
    });
  }

  /** True when a job waits. */
  get hasWaiting(): boolean {
    return this.waiting !== null;
  }

  /** Removes and returns the waiting job (null when none); the owner runs it and settles it. */
  take(): Waiting<T, R> | null {
    const w = this.waiting;
    this.waiting = null;
    return w;
  }

  /** Rejects the waiting job, if any, with `err` (the owner failed or was shut down). */
  fail(err: Error): void {
    this.take()?.reject(err);
  }

  /** Runs the waiting job with `run` and settles its promise with the outcome (a throw in
   * `run` rejects it too); `done` runs after either way (the owner marks itself idle there
   * and pumps again). Returns false, doing nothing, when no job waits. */
  runNext(run: (job: T) => Promise<R>, done: () => void): boolean {
    const w = this.take();
    if (!w) return false;
    let running: Promise<R>;
    try {
      running = run(w.job);
    } catch (e) {
      running = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    running.then(w.resolve, w.reject).finally(done);
    return true;
  }
}
