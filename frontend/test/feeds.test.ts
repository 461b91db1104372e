import { describe, expect, it } from 'vitest';
import { scaleTo1024, toFrame1024 } from '../src/lib/coords';
import { buildFeeds, LOW_RES_SIZE, lowResCandidate } from '../src/lib/feeds';
import { candidateChips, defaultCandidate, normalizeBox, promptsPayload } from '../src/lib/prompts';

describe('coordinate scaling', () => {
  it('scales by 1024 / max(H, W)', () => {
    expect(scaleTo1024(480, 640)).toBe(1.6);
    expect(scaleTo1024(1200, 300)).toBeCloseTo(1024 / 1200);
    expect(toFrame1024(320, 240, 480, 640)).toEqual([512, 384]);
    expect(() => scaleTo1024(0, 10)).toThrow();
  });
});

describe('decoder feeds (DESIGN.md contract)', () => {
  it('points only: scaled coords plus one (0,0) padding point labelled -1', () => {
    const f = buildFeeds({ points: [{ x: 100, y: 50, label: 1 }, { x: 10, y: 20, label: 0 }], box: null }, 480, 640, null);
    expect(f.num_points).toBe(3);
    expect(Array.from(f.point_coords)).toEqual([160, 80, 16, 32, 0, 0]);
    expect(Array.from(f.point_labels)).toEqual([1, 0, -1]);
    expect(Array.from(f.has_mask_input)).toEqual([0]);
    expect(f.mask_input.length).toBe(LOW_RES_SIZE);
    expect(f.mask_input.every((v) => v === 0)).toBe(true);
    expect(Array.from(f.orig_im_size)).toEqual([480, 640]);
  });
  it('box: corners labelled 2 and 3, no padding point', () => {
    const f = buildFeeds({ points: [{ x: 5, y: 5, label: 1 }], box: [10, 20, 300, 400] }, 1200, 300, null);
    const s = 1024 / 1200;
    expect(f.num_points).toBe(3);
    expect(Array.from(f.point_labels)).toEqual([1, 2, 3]);
    const expected = [5, 5, 10, 20, 300, 400].map((v) => Math.fround(v * s));
    expect(Array.from(f.point_coords)).toEqual(expected);
  });
  it('mask_input: previous logits with has_mask_input = 1', () => {
    const prev = new Float32Array(LOW_RES_SIZE).fill(2.5);
    const f = buildFeeds({ points: [{ x: 1, y: 1, label: 1 }], box: null }, 10, 10, prev);
    expect(Array.from(f.has_mask_input)).toEqual([1]);
    expect(f.mask_input[123]).toBe(2.5);
    expect(() => buildFeeds({ points: [{ x: 1, y: 1, label: 1 }], box: null }, 10, 10, new Float32Array(3))).toThrow();
  });
  it('refuses an empty prompt', () => {
    expect(() => buildFeeds({ points: [], box: null }, 10, 10, null)).toThrow();
  });
  it('slices one candidate out of low_res_masks 1x4x256x256', () => {
    const all = new Float32Array(4 * LOW_RES_SIZE);
    for (let c = 0; c < 4; c++) all.fill(c, c * LOW_RES_SIZE, (c + 1) * LOW_RES_SIZE);
    const two = lowResCandidate(all, 2);
    expect(two.length).toBe(LOW_RES_SIZE);
    expect(two[0]).toBe(2);
    expect(two[LOW_RES_SIZE - 1]).toBe(2);
  });
});

describe('prompt helpers', () => {
  const iou = [0.5, 0.7, 0.95, 0.8];
  it('one point or a box alone -> best multimask candidate 1..3', () => {
    expect(defaultCandidate({ points: [{ x: 1, y: 1, label: 1 }], box: null }, iou)).toBe(2);
    expect(defaultCandidate({ points: [], box: [0, 0, 5, 5] }, [0.99, 0.9, 0.1, 0.2])).toBe(1);
  });
  it('several prompts -> index 0 (single-mask token)', () => {
    const two = [{ x: 1, y: 1, label: 1 as const }, { x: 2, y: 2, label: 0 as const }];
    expect(defaultCandidate({ points: two, box: null }, iou)).toBe(0);
    expect(defaultCandidate({ points: two.slice(0, 1), box: [0, 0, 5, 5] }, iou)).toBe(0);
  });
  it('the auto chip (output 0) stays offered after 1, 2 or 3 was picked for several prompts', () => {
    const two = { points: [{ x: 1, y: 1, label: 1 as const }, { x: 2, y: 2, label: 0 as const }], box: null };
    for (const chosen of [0, 1, 2, 3]) expect(candidateChips(two, chosen), `chosen ${chosen}`).toEqual([0, 1, 2, 3]);
    const pointAndBox = { points: two.points.slice(0, 1), box: [0, 0, 5, 5] as [number, number, number, number] };
    expect(candidateChips(pointAndBox, 2)).toEqual([0, 1, 2, 3]);
  });
  it('one point or a box alone: the three candidates (and output 0 only while it is shown)', () => {
    const one = { points: [{ x: 1, y: 1, label: 1 as const }], box: null };
    expect(candidateChips(one, 2)).toEqual([1, 2, 3]);
    expect(candidateChips({ points: [], box: [0, 0, 5, 5] }, 1)).toEqual([1, 2, 3]);
    expect(candidateChips(one, 0)).toEqual([0, 1, 2, 3]); // e.g. a proposal opened for editing
  });
  it('normalizes drag corners and builds the API payload', () => {
    expect(normalizeBox(30, 40, 10, 5)).toEqual([10, 5, 30, 40]);
    expect(promptsPayload({ points: [{ x: 1.234567, y: 2, label: 0 }], box: [1, 2, 3, 4] })).toEqual({
      point_coords: [[1.23, 2]], point_labels: [0], box: [1, 2, 3, 4],
    });
  });
});
