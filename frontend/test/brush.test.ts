import { describe, expect, it } from 'vitest';
import {
  ERASED, MAX_RADIUS, MIN_RADIUS, PAINTED, UNTOUCHED, applyStroke, buildLayer, composeMask, imageRadius, layerCounts,
  nextRadius, stampSegment, strokeMode, undoTarget, type Stroke,
} from '../src/lib/brush';

const W = 20;
const H = 10;
const at = (m: Uint8Array, x: number, y: number): number => m[y * W + x]!;
const stroke = (mode: 'paint' | 'erase', radius: number, points: [number, number][], stepsAt = 1): Stroke => ({ mode, radius, points, stepsAt });

describe('stampSegment', () => {
  it('a dot of radius r covers the pixel centres within r (a disc)', () => {
    const m = new Uint8Array(W * H);
    stampSegment(m, W, H, 10, 5, 10, 5, 2, PAINTED);
    expect(at(m, 10, 5)).toBe(PAINTED);
    expect(at(m, 12, 5)).toBe(PAINTED); // distance 2
    expect(at(m, 13, 5)).toBe(UNTOUCHED);
    expect(at(m, 11, 6)).toBe(PAINTED); // sqrt 2
    expect(at(m, 12, 7)).toBe(UNTOUCHED); // sqrt 8 > 2: round, not square
    expect(m.reduce((a, v) => a + v, 0)).toBe(13); // the 13 lattice points of a radius-2 disc
  });

  it('a segment is a capsule: covered along it, round caps past its ends', () => {
    const m = new Uint8Array(W * H);
    stampSegment(m, W, H, 4, 5, 14, 5, 1.5, PAINTED);
    for (let x = 4; x <= 14; x++) {
      expect(at(m, x, 4)).toBe(PAINTED);
      expect(at(m, x, 6)).toBe(PAINTED);
      expect(at(m, x, 3)).toBe(UNTOUCHED);
    }
    expect(at(m, 3, 5)).toBe(PAINTED); // the cap
    expect(at(m, 2, 5)).toBe(UNTOUCHED);
    expect(at(m, 3, 4)).toBe(PAINTED); // sqrt 2 from the end point (4, 5), within 1.5
    expect(at(m, 2, 4)).toBe(UNTOUCHED); // sqrt 5: a round cap, not a square one
  });

  it('is clipped to the layer', () => {
    const m = new Uint8Array(W * H);
    stampSegment(m, W, H, -5, -5, 0, 0, 3, ERASED);
    expect(at(m, 0, 0)).toBe(ERASED);
    expect(m.length).toBe(W * H);
  });
});

describe('applyStroke and buildLayer', () => {
  it('a diagonal drag leaves no gaps between its points', () => {
    const m = new Uint8Array(W * H);
    applyStroke(m, W, H, stroke('paint', 0.5, [[1, 1], [8, 8]]));
    for (let i = 1; i <= 8; i++) expect(at(m, i, i)).toBe(PAINTED);
  });

  it('stamping a drag point by point gives the same layer as the whole stroke', () => {
    const s = stroke('paint', 2, [[2, 2], [6, 3], [12, 7], [17, 2]]);
    const whole = buildLayer([s], W, H);
    const step = new Uint8Array(W * H);
    for (let i = 1; i <= s.points.length; i++) applyStroke(step, W, H, { ...s, points: s.points.slice(0, i) }, i - 1);
    expect(Array.from(step)).toEqual(Array.from(whole));
  });

  it('a later stroke wins on the pixels both cover', () => {
    const layer = buildLayer([stroke('paint', 3, [[5, 5]]), stroke('erase', 1, [[5, 5]])], W, H);
    expect(at(layer, 5, 5)).toBe(ERASED);
    expect(at(layer, 7, 5)).toBe(PAINTED);
    const again = buildLayer([stroke('erase', 1, [[5, 5]]), stroke('paint', 3, [[5, 5]])], W, H);
    expect(at(again, 5, 5)).toBe(PAINTED);
  });
});

describe('composeMask', () => {
  it('final = (model ∪ painted) \\ erased', () => {
    const model = new Uint8Array(W * H);
    for (let x = 0; x < 10; x++) model[5 * W + x] = 1; // a row of 10
    const layer = new Uint8Array(W * H);
    layer[5 * W + 15] = PAINTED; // outside the model mask
    layer[5 * W + 2] = ERASED; // inside it
    layer[5 * W + 3] = PAINTED; // inside: stays
    layer[0] = ERASED; // outside: stays out
    const { mask, area } = composeMask(model, layer);
    expect(at(mask, 15, 5)).toBe(1);
    expect(at(mask, 2, 5)).toBe(0);
    expect(at(mask, 3, 5)).toBe(1);
    expect(at(mask, 0, 0)).toBe(0);
    expect(area).toBe(10);
    expect(model[5 * W + 2]).toBe(1); // the model mask is not changed
  });

  it('without a base (or a base of another size) only the painted pixels', () => {
    const layer = new Uint8Array(W * H);
    layer[7] = PAINTED;
    expect(composeMask(null, layer).area).toBe(1);
    expect(composeMask(new Uint8Array(3).fill(1), layer).area).toBe(1);
  });

  it('counts painted and erased pixels', () => {
    const layer = buildLayer([stroke('paint', 2, [[5, 5]]), stroke('erase', 0.5, [[15, 5]])], W, H);
    expect(layerCounts(layer)).toEqual({ painted: 13, erased: 1 });
  });
});

describe('undoTarget', () => {
  it('undoes prompts and strokes in the order they were made', () => {
    // click (1 step), stroke, click (2 steps), stroke
    const s1 = stroke('paint', 1, [[1, 1]], 1);
    const s2 = stroke('erase', 1, [[2, 2]], 2);
    expect(undoTarget([s1, s2], 2)).toBe('stroke');
    expect(undoTarget([s1], 2)).toBe('step');
    expect(undoTarget([s1], 1)).toBe('stroke');
    expect(undoTarget([], 1)).toBe('step');
    expect(undoTarget([], 0)).toBe('none');
  });

  it('strokes on a saved mask (no prompt steps) are undone one by one', () => {
    expect(undoTarget([stroke('paint', 1, [[1, 1]], 0)], 0)).toBe('stroke');
  });
});

describe('radius and mode', () => {
  it('[ / ] change the radius within bounds, at least 1 px a step', () => {
    expect(nextRadius(12, 1)).toBeGreaterThan(12);
    expect(nextRadius(12, -1)).toBeLessThan(12);
    expect(nextRadius(1, 1)).toBe(2);
    expect(nextRadius(MIN_RADIUS, -1)).toBe(MIN_RADIUS);
    expect(nextRadius(MAX_RADIUS, 1)).toBe(MAX_RADIUS);
  });

  it('the screen radius is divided by the zoom, never below half a pixel', () => {
    expect(imageRadius(12, 4)).toBe(3);
    expect(imageRadius(12, 0.5)).toBe(24);
    expect(imageRadius(1, 32)).toBe(0.5);
  });

  it('right button or Shift erases', () => {
    expect(strokeMode(0, false)).toBe('paint');
    expect(strokeMode(2, false)).toBe('erase');
    expect(strokeMode(0, true)).toBe('erase');
  });
});
