import { describe, expect, it } from 'vitest';
import { fp16ToFloat32 } from '../src/lib/fp16';
import { LruCache } from '../src/lib/lru';
import { hexToRgba, maskToRgba, thresholdMasks } from '../src/lib/maskImage';

describe('mask -> pixels', () => {
  it('thresholds logits strictly above 0, per candidate', () => {
    const logits = Float32Array.from([1, 0, -1, 0.1, /* c1 */ -5, -5, 3, 0]);
    const { masks, areas } = thresholdMasks(logits, 2, 2);
    expect(Array.from(masks)).toEqual([1, 0, 0, 1, 0, 0, 1, 0]);
    expect(areas).toEqual([2, 1]);
    expect(() => thresholdMasks(new Float32Array(5), 2, 2)).toThrow();
  });
  it('paints RGBA where the mask is set, transparent elsewhere (ImageData layout)', () => {
    const rgba = maskToRgba(Uint8Array.from([1, 0]), [10, 20, 30, 128]);
    expect(Array.from(rgba)).toEqual([10, 20, 30, 128, 0, 0, 0, 0]);
    expect(hexToRgba('#ff8000', 0.5)).toEqual([255, 128, 0, 128]);
  });
  it('reuses the output buffer when it fits', () => {
    const out = new Uint8ClampedArray(8);
    expect(maskToRgba(Uint8Array.from([0, 1]), [1, 2, 3, 4], out)).toBe(out);
  });
});

describe('fp16 embedding bytes', () => {
  it('converts little-endian halves to float32', () => {
    // 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800, 65504 = 0x7bff, smallest subnormal = 0x0001
    const u16 = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0000, 0x7c00]);
    const f = fp16ToFloat32(u16.buffer);
    expect(Array.from(f)).toEqual([1, -2, 0.5, 65504, Math.fround(2 ** -24), 0, Infinity]);
    expect(() => fp16ToFloat32(new ArrayBuffer(3))).toThrow();
  });
});

describe('LRU', () => {
  it('evicts the least recently used', () => {
    const c = new LruCache<number, string>(2);
    c.set(1, 'a');
    c.set(2, 'b');
    c.get(1);
    expect(c.set(3, 'c')).toEqual([2]);
    expect(c.keys()).toEqual([1, 3]);
  });
});
