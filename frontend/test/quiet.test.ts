import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { QuietQueue } from '../src/lib/quiet';

describe('QuietQueue: background work waits for a quiet moment', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs a job after its idle delay when no decode comes', () => {
    const q = new QuietQueue(200);
    const run = vi.fn();
    q.add({ run, idleMs: 500 });
    vi.advanceTimersByTime(499);
    expect(run).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(run).toHaveBeenCalledTimes(1);
    expect(q.size).toBe(0);
    vi.advanceTimersByTime(5_000);
    expect(run).toHaveBeenCalledTimes(1); // once
  });

  it('holds jobs while decodes run and runs them afterMs after the last one ends', () => {
    const q = new QuietQueue(200);
    const early = vi.fn();
    const late = vi.fn();
    q.add({ run: early, idleMs: 300 });
    q.add({ run: late, idleMs: 1500 });
    vi.advanceTimersByTime(100);
    q.busyStart(); // the first click
    vi.advanceTimersByTime(2_000); // a slow decode: nothing runs meanwhile
    expect(early).not.toHaveBeenCalled();
    q.busyStart(); // a second one queued behind it
    q.busyEnd();
    vi.advanceTimersByTime(1_000);
    expect(early).not.toHaveBeenCalled(); // one still runs
    q.busyEnd();
    vi.advanceTimersByTime(199);
    expect(early).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(early).toHaveBeenCalledTimes(1);
    expect(late).toHaveBeenCalledTimes(1); // after a mask, both go
  });

  it('a job added while a decode runs waits for it', () => {
    const q = new QuietQueue(200);
    const run = vi.fn();
    q.busyStart();
    q.add({ run, idleMs: 0 });
    vi.advanceTimersByTime(1_000);
    expect(run).not.toHaveBeenCalled();
    q.busyEnd();
    vi.advanceTimersByTime(200);
    expect(run).toHaveBeenCalledTimes(1);
  });

  it('clear drops the waiting jobs (the image was left)', () => {
    const q = new QuietQueue(200);
    const run = vi.fn();
    q.add({ run, idleMs: 100 });
    q.clear();
    vi.advanceTimersByTime(1_000);
    q.busyStart();
    q.busyEnd();
    vi.advanceTimersByTime(1_000);
    expect(run).not.toHaveBeenCalled();
  });
});
