import { describe, expect, it } from 'vitest';
import type { DecodeResult } from '../src/decoder/protocol';
import { chosenMask, currentPrompts, initialState, isReady, saveBlocker, shownStep, Store, type Step } from '../src/store';

function result(h: number, w: number, areas: number[]): DecodeResult {
  const masks = new Uint8Array(4 * h * w);
  areas.forEach((a, c) => masks.fill(1, c * h * w, c * h * w + a));
  return {
    masks, areas, iou_predictions: Float32Array.from([0.5, 0.6, 0.7, 0.8]), low_res_masks: new Float32Array(4 * 65536),
    height: h, width: w, runMs: 0, totalMs: 0,
  };
}

describe('store', () => {
  it('notifies subscribers synchronously with the previous state', () => {
    const store = new Store();
    const seen: [number, number][] = [];
    store.subscribe((s, prev) => seen.push([s.steps.length, prev.steps.length]));
    store.set({ steps: [{ prompts: { points: [], box: [0, 0, 1, 1] }, result: null, chosen: 0 }] });
    expect(seen).toEqual([[0, 0], [1, 0]]);
  });

  it('shows the newest decoded step while a newer prompt is still decoding', () => {
    const decoded: Step = { prompts: { points: [{ x: 1, y: 1, label: 1 }], box: null }, result: result(2, 3, [1, 2, 3, 4]), chosen: 3 };
    const pending: Step = { prompts: { points: [{ x: 1, y: 1, label: 1 }, { x: 2, y: 0, label: 0 }], box: null }, result: null, chosen: 0 };
    const s = { ...initialState, steps: [decoded, pending] };
    expect(shownStep(s)).toBe(decoded);
    expect(currentPrompts(s).points.length).toBe(2);
    const m = chosenMask(s)!;
    expect(m.index).toBe(3);
    expect(m.area).toBe(4);
    expect(m.iou).toBeCloseTo(0.8);
    expect(Array.from(m.mask)).toEqual([1, 1, 1, 1, 0, 0]); // candidate 3's H x W slice
  });

  it('is ready only with the decoder, the embedding and an image', () => {
    const ready = { phase: 'ready' as const, detail: '' };
    expect(isReady({ ...initialState, decoder: ready, embedding: ready })).toBe(false);
    const image = { id: 1 } as never;
    expect(isReady({ ...initialState, decoder: ready, embedding: ready, image })).toBe(true);
    expect(isReady({ ...initialState, decoder: ready, embedding: { phase: 'pending', detail: '' }, image })).toBe(false);
  });

  it('says why Enter cannot save: no prompt, a decode pending, or an empty mask (not "click the object first" after a click)', () => {
    const click = { points: [{ x: 1, y: 1, label: 1 as const }], box: null };
    expect(saveBlocker(initialState)).toBe('Nothing to save: click the object first.');
    expect(saveBlocker({ ...initialState, steps: [{ prompts: click, result: null, chosen: 0 }] })).toBe('Wait for the mask to update.');
    const empty = saveBlocker({ ...initialState, steps: [{ prompts: click, result: result(2, 3, [0, 0, 0, 0]), chosen: 1 }] });
    expect(empty).toMatch(/^The mask is empty/);
    expect(empty).not.toMatch(/click the object first/);
    expect(saveBlocker({ ...initialState, steps: [{ prompts: click, result: result(2, 3, [1, 2, 3, 4]), chosen: 1 }] })).toBeNull();
  });
});
