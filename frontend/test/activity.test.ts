import { describe, expect, it } from 'vitest';
import { ActiveTimer, IDLE_GAP_MS } from '../src/lib/activity';

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('active time with idle gaps removed', () => {
  it('counts time between inputs and drops every gap over 30 s entirely', () => {
    const c = clock();
    const timer = new ActiveTimer(c.now);
    timer.start(); // first prompt
    c.advance(4_000); timer.touch(); // 4 s
    c.advance(IDLE_GAP_MS); timer.touch(); // exactly 30 s: still work
    c.advance(IDLE_GAP_MS + 1); timer.touch(); // 30.001 s: away, not counted at all
    c.advance(2_000); // the save is an input too
    expect(timer.ms()).toBe(4_000 + IDLE_GAP_MS + 2_000);
  });

  it('does not count before start, while paused (hidden tab), or after reset', () => {
    const c = clock();
    const timer = new ActiveTimer(c.now);
    c.advance(10_000); timer.touch();
    expect(timer.ms()).toBe(0);
    timer.start();
    c.advance(3_000); timer.pause(); // tab hidden after 3 s
    c.advance(20_000); timer.touch(); // input while hidden: ignored
    timer.start(); // visible again
    c.advance(1_000);
    expect(timer.ms()).toBe(4_000);
    timer.reset();
    expect(timer.ms()).toBe(0);
    expect(timer.running).toBe(false);
  });

  it('a long idle wait before the save is removed too', () => {
    const c = clock();
    const timer = new ActiveTimer(c.now);
    timer.start();
    c.advance(5_000); timer.touch();
    c.advance(120_000); // lunch, then Enter
    expect(timer.ms()).toBe(5_000);
  });
});
