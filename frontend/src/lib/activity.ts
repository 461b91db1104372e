/**
 * Active time on one mask (the `active_ms` of a save): from the first prompt to the save,
 * counting the time between consecutive user inputs (pointer, keys, wheel) and removing
 * every gap longer than IDLE_GAP_MS entirely (the annotator was away, not working). A
 * hidden tab pauses it. Pure: the clock is injected, so it is unit-tested.
 */

/** Gaps between inputs longer than this are idle time, not work (issue 5: 30 s). */
export const IDLE_GAP_MS = 30_000;

export class ActiveTimer {
  private acc = 0;
  /** Time of the last input while running; null when stopped or paused. */
  private last: number | null = null;

  constructor(
    private readonly now: () => number = () => performance.now(),
    private readonly idleGapMs: number = IDLE_GAP_MS,
  ) {}

  get running(): boolean {
    return this.last !== null;
  }

  /** Starts (or resumes) counting at this instant; no-op while running. */
  start(): void {
    if (this.last === null) this.last = this.now();
  }

  /** A user input: the time since the previous one counts, unless it was an idle gap. */
  touch(): void {
    if (this.last === null) return;
    const t = this.now();
    const gap = t - this.last;
    if (gap > 0 && gap <= this.idleGapMs) this.acc += gap;
    if (t > this.last) this.last = t;
  }

  /** Stops counting (tab hidden) until start(); time up to now counts unless idle. */
  pause(): void {
    this.touch();
    this.last = null;
  }

  reset(): void {
    this.acc = 0;
    this.last = null;
  }

  /** Active milliseconds so far (the save itself counts as an input). */
  ms(): number {
    this.touch();
    return Math.round(this.acc);
  }
}
