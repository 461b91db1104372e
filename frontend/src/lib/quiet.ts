/**
 * Background work of the open image (re-checking what was shown from the prefetch, taking
 * the lease, prefetching the next image) run at a quiet moment, so that it never competes
 * with a click's decode for the CPU: on a 2-core machine that also runs the server, a
 * request answered during a decode made that decode ~2x slower (bench/browser_decoder.py).
 */

export interface QuietJob {
  run: () => void;
  /** Runs this long after it was added when no decode has started meanwhile. */
  idleMs: number;
}

type Timer = ReturnType<typeof setTimeout>;

export class QuietQueue {
  private readonly jobs = new Map<QuietJob, Timer | null>();
  private busy = 0;

  /** @param afterMs how long after the last decode ended the waiting jobs run. */
  constructor(private readonly afterMs: number) {}

  /** Queues a job; it runs once, `idleMs` from now, or `afterMs` after the decodes that come first. */
  add(job: QuietJob): void {
    this.jobs.set(job, null);
    if (!this.busy) this.arm(job, job.idleMs);
  }

  /** A decode started: every waiting job waits for it. */
  busyStart(): void {
    this.busy++;
    for (const [job, timer] of this.jobs) {
      if (timer !== null) clearTimeout(timer);
      this.jobs.set(job, null);
    }
  }

  /** A decode ended (its mask is painted, or it failed). */
  busyEnd(): void {
    this.busy = Math.max(0, this.busy - 1);
    if (this.busy) return;
    for (const job of this.jobs.keys()) this.arm(job, this.afterMs);
  }

  /** Drops every waiting job (the image was left). */
  clear(): void {
    for (const timer of this.jobs.values()) if (timer !== null) clearTimeout(timer);
    this.jobs.clear();
  }

  get size(): number {
    return this.jobs.size;
  }

  private arm(job: QuietJob, ms: number): void {
    const old = this.jobs.get(job);
    if (old) clearTimeout(old);
    this.jobs.set(job, setTimeout(() => {
      this.jobs.delete(job);
      job.run();
    }, ms));
  }
}
