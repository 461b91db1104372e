import { describe, expect, it } from 'vitest';
import { bestMatchingCandidate, coverage, focusAfterRemoval, maskIoU, moveFocus, parseThreshold, tabLeavesProposals } from '../src/lib/proposals';

const m = (...v: number[]): Uint8Array => Uint8Array.from(v);

describe('maskIoU', () => {
  it('is intersection over union', () => {
    expect(maskIoU(m(1, 1, 0, 0), m(0, 1, 1, 0))).toBeCloseTo(1 / 3);
    expect(maskIoU(m(1, 0), m(1, 0))).toBe(1);
    expect(maskIoU(m(0, 0), m(0, 0))).toBe(0);
  });
  it('refuses masks of different sizes', () => {
    expect(() => maskIoU(m(1), m(1, 0))).toThrow(/differ in size/);
  });
});

describe('bestMatchingCandidate', () => {
  it('picks the candidate closest to the proposal', () => {
    // 4 candidates of 4 pixels each; the proposal equals candidate 2.
    const masks = m(1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0);
    expect(bestMatchingCandidate(masks, 4, m(0, 1, 1, 0))).toEqual({ index: 2, iou: 1 });
    expect(bestMatchingCandidate(masks, 4, m(0, 0, 0, 0)).index).toBe(0);
  });
});

describe('focus', () => {
  it('moves forward and back with wrap-around', () => {
    expect(moveFocus([5, 7, 9], null, 1)).toBe(5);
    expect(moveFocus([5, 7, 9], null, -1)).toBe(9);
    expect(moveFocus([5, 7, 9], 9, 1)).toBe(5);
    expect(moveFocus([5, 7, 9], 5, -1)).toBe(9);
    expect(moveFocus([5, 7, 9], 42, 1)).toBe(5);
    expect(moveFocus([], 1, 1)).toBeNull();
  });
  it('lets Tab leave the proposals for the controls at either end, or when there are none', () => {
    expect(tabLeavesProposals([], null, 1)).toBe(true);
    expect(tabLeavesProposals([], null, -1)).toBe(true);
    expect(tabLeavesProposals([5, 7, 9], 5, 1)).toBe(false);
    expect(tabLeavesProposals([5, 7, 9], 9, 1)).toBe(true);
    expect(tabLeavesProposals([5, 7, 9], 9, -1)).toBe(false);
    expect(tabLeavesProposals([5, 7, 9], 5, -1)).toBe(true);
    expect(tabLeavesProposals([5], 5, 1)).toBe(true);
    expect(tabLeavesProposals([5, 7, 9], null, 1)).toBe(false);
  });
  it('goes to the next one after a removal, else the previous', () => {
    expect(focusAfterRemoval([5, 7, 9], 7)).toBe(9);
    expect(focusAfterRemoval([5, 7, 9], 9)).toBe(7);
    expect(focusAfterRemoval([5], 5)).toBeNull();
  });
});

describe('coverage', () => {
  it('ors the masks of the right size', () => {
    expect(Array.from(coverage([m(1, 0, 0), m(0, 0, 1), m(1, 1)], 3))).toEqual([1, 0, 1]);
  });
});

describe('parseThreshold', () => {
  it('takes a predicted IoU in [0, 1], bounds included', () => {
    expect(parseThreshold('0.9')).toEqual({ ok: true, value: 0.9 });
    expect(parseThreshold(' 1 ')).toEqual({ ok: true, value: 1 });
    expect(parseThreshold('0')).toEqual({ ok: true, value: 0 });
  });
  it('refuses anything else with a message that says the range', () => {
    for (const text of ['5', '-0.1', '1.01', '', 'abc', 'NaN', 'Infinity']) {
      const r = parseThreshold(text);
      expect(r.ok, text).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/between 0 and 1/);
    }
    const five = parseThreshold('5');
    expect(!five.ok && five.error).toContain('not 5');
  });
});
