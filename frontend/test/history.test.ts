import { describe, expect, it } from 'vitest';
import { navigationTarget, NavHistory } from '../src/lib/history';

describe('NavHistory', () => {
  it('goes back the way the page came, last in first out', () => {
    const h = new NavHistory();
    h.push(3);
    h.push(3); // the same image twice in a row (e.g. opened again after a failure) is kept once
    h.push(7);
    expect(h.size).toBe(2);
    expect(h.peek()).toBe(7);
    expect(h.pop()).toBe(7);
    expect(h.pop()).toBe(3);
    expect(h.pop()).toBeNull();
  });
  it('keeps only the last `limit` images', () => {
    const h = new NavHistory(2);
    for (const id of [1, 2, 3]) h.push(id);
    expect([h.pop(), h.pop(), h.pop()]).toEqual([3, 2, null]);
  });
});

describe('navigationTarget', () => {
  const queue = { prev_id: 4, next_id: 9, neighbour_order: 'queue' };
  const project = { prev_id: 4, next_id: 9, neighbour_order: 'project' };
  it('N follows next_id in either order', () => {
    expect(navigationTarget('next', queue, 2)).toEqual({ id: 9, fromHistory: false });
    expect(navigationTarget('next', project, 2)).toEqual({ id: 9, fromHistory: false });
    expect(navigationTarget('next', { ...queue, next_id: null }, 2)).toBeNull();
  });
  it('P on a queue goes back in the history first, then to the queue\'s previous image', () => {
    expect(navigationTarget('prev', queue, 2)).toEqual({ id: 2, fromHistory: true });
    expect(navigationTarget('prev', queue, null)).toEqual({ id: 4, fromHistory: false });
    expect(navigationTarget('prev', { ...queue, prev_id: null }, null)).toBeNull();
  });
  it('P in the project order ignores the history (managers, reviewers)', () => {
    expect(navigationTarget('prev', project, 2)).toEqual({ id: 4, fromHistory: false });
    expect(navigationTarget('prev', { prev_id: 4, next_id: 9 }, 2)).toEqual({ id: 4, fromHistory: false });
    expect(navigationTarget('prev', null, 2)).toBeNull();
  });
});
